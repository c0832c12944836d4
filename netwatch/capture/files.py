"""Capture file sources: pcap and pcapng, plain or gzip, from a path or standard input.

The C extension (netwatch._fastpath) does the framing and the keep/drop decision; this
module only moves bytes: it reads with `readinto` into one reusable bytearray, hands the
filled part to `Framer.feed`, and keeps the unconsumed tail (an incomplete record) for the
next round. Memory stays bounded whatever the file size: the buffer is `chunk_size`
bytes and grows only to hold one record larger than that, never beyond
`_fastpath.MAX_RECORD_BYTES` plus a record header. Nothing is mmapped (mapped pages count
in RSS), and the input is never seeked, so pipes and standard input work.
"""

from __future__ import annotations

import os
import stat
import sys
import zlib
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Protocol

from netwatch._fastpath import MAX_RECORD_BYTES, FlowFilter, Framer
from netwatch.capture.errors import CaptureError, CaptureWarning, NotACaptureError
from netwatch.model import RawPacket

__all__ = [
    "CaptureError",
    "CaptureFile",
    "CaptureWarning",
    "FlowFilter",
    "NotACaptureError",
    "iter_capture_paths",
    "not_a_regular_file",
    "open_capture",
]

DEFAULT_CHUNK_SIZE = 4 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
# pcap magics as they appear on disk: microsecond, nanosecond, modified (Kuznetzov) pcap,
# each little- and big-endian (draft-ietf-opsawg-pcap section 4).
_PCAP_MAGICS = frozenset(
    {
        b"\xd4\xc3\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\x3c\x4d",
        b"\x34\xcd\xb2\xa1",
        b"\xa1\xb2\xcd\x34",
    }
)
_MAX_BUFFER = MAX_RECORD_BYTES + 64  # one maximal record plus its header
_READ_SIZE = 1 << 20  # compressed bytes read per gzip step


class _Stream(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class _RawStream:
    """A binary file or pipe read with readinto, counting bytes."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self._file = fileobj
        # one system call per read: a pipe delivers what it has instead of blocking for a full buffer
        self._readinto = getattr(fileobj, "readinto1", None) or fileobj.readinto
        self.bytes_read = 0
        self.problem: str | None = None

    def readinto(self, buffer: memoryview) -> int:
        n = self._readinto(buffer) or 0  # None: non-blocking source with no data yet
        self.bytes_read += n
        return n

    def read(self, size: int) -> bytes:
        data = self._file.read(size) or b""
        self.bytes_read += len(data)
        return data


class _GzipStream:
    """Streaming gzip decompression (RFC 1952, several members allowed) into caller buffers.

    zlib is driven directly rather than through gzip.GzipFile so that a truncated or
    corrupt stream delivers every byte decompressed before the damage and then reports
    the damage in `problem` instead of raising (GzipFile's buffered readinto would lose the
    last partial read). Decompressed output is produced at most `len(buffer)` bytes at a time.
    """

    def __init__(self, raw: _RawStream, head: bytes) -> None:
        self._raw = raw
        self._pending = head  # compressed bytes not yet given to zlib
        self._zlib = zlib.decompressobj(wbits=31)
        self._raw_eof = False
        self._done = False
        self.problem: str | None = None

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read

    def _next_input(self) -> bytes:
        """Compressed bytes to give zlib next; b"" once the raw stream is exhausted."""
        if self._zlib.unconsumed_tail:
            return self._zlib.unconsumed_tail
        if not self._pending and not self._raw_eof:
            self._pending = self._raw.read(_READ_SIZE)
            self._raw_eof = not self._pending
        data, self._pending = self._pending, b""
        return data

    def readinto(self, buffer: memoryview) -> int:
        while not self._done:
            if self._zlib.eof:  # end of one gzip member: another may follow
                self._pending = self._zlib.unused_data + self._pending
                self._zlib = zlib.decompressobj(wbits=31)
                if not self._pending and not self._raw_eof:
                    self._pending = self._raw.read(_READ_SIZE)
                    self._raw_eof = not self._pending
                if not self._pending.strip(b"\0"):  # end of file (tolerating zero padding)
                    self._done = True
                    return 0
            data = self._next_input()
            try:
                # with no input left this flushes what zlib still holds; at most _READ_SIZE bytes
                # at a time, so a huge record is never held twice (here and in the caller's buffer)
                out = self._zlib.decompress(data, min(len(buffer), _READ_SIZE))
            except zlib.error as exc:
                self._done = True
                self.problem = f"corrupt gzip stream: {exc}"
                return 0
            if out:
                buffer[: len(out)] = out
                return len(out)
            if not data and not self._zlib.eof:
                self._done = True
                self.problem = "truncated gzip stream: compressed data ended early"
        return 0


def _read_fully(stream: _Stream, buffer: memoryview) -> int:
    """Fill `buffer` as far as the stream allows; returns the count (short only at end of stream)."""
    filled = 0
    while filled < len(buffer):
        n = stream.readinto(buffer[filled:])
        if n == 0:
            break
        filled += n
    return filled


class CaptureFile:
    """An open capture: iterate it for the admitted RawPackets, in file order.

    `frames` counts every frame framed so far (admitted or dropped), `admitted` the
    RawPackets handed out, `warnings` the damage found while reading (reading stops at a
    corrupt record or a read error), `linktypes` the link types seen so far.
    """

    def __init__(
        self,
        name: str,
        fileobj: BinaryIO,
        stream: _RawStream | _GzipStream,
        head: bytes,
        capture_format: str,
        flow_filter: FlowFilter | None,
        chunk_size: int,
        close_file: bool,
    ) -> None:
        self.name = name
        self.format = capture_format
        self.warnings: list[CaptureWarning] = []
        self.admitted = 0  # RawPackets handed out so far
        self._file = fileobj
        self._stream = stream
        self._filter = flow_filter
        self._framer = Framer()
        self._chunk_size = max(chunk_size, len(head), 64)
        self._buffer = bytearray(self._chunk_size)
        self._buffer[: len(head)] = head
        self._filled = len(head)
        self._offset = 0  # stream offset of self._buffer[0]
        self._close_file = close_file
        self._closed = False
        self._started = False

    @property
    def frames(self) -> int:
        return self._framer.frames

    @property
    def linktypes(self) -> list[int]:
        return list(self._framer.linktypes)

    @property
    def bytes_read(self) -> int:
        """Bytes read from the source so far (compressed bytes for a gzip file)."""
        return self._stream.bytes_read

    def __iter__(self) -> Iterator[RawPacket]:
        if self._started:
            raise CaptureError(f"{self.name}: a capture can be iterated only once")
        self._started = True
        return self._packets()

    def _packets(self) -> Iterator[RawPacket]:
        framer, flow_filter = self._framer, self._filter
        at_eof = False
        while not self._closed:
            if not at_eof and self._filled < len(self._buffer):
                with memoryview(self._buffer) as view:
                    got = self._read(view[self._filled :])
                at_eof = got == 0
                self._filled += got
            with memoryview(self._buffer) as view, view[: self._filled] as data:
                consumed, _frames, packets, error = framer.feed(data, flow_filter)
            self.admitted += len(packets)
            if error is None:
                self._shift(consumed)  # before the packets are handed on: an oversized buffer is freed first
            yield from packets
            if error is not None:
                where, message = error
                self._warn(self._offset + where, f"corrupt record at offset {self._offset + where}: {message}")
                return
            if at_eof:
                if self._filled and self._stream.problem is None:
                    self._warn(
                        self._offset,
                        f"truncated capture: last record at offset {self._offset} is incomplete",
                    )
                if self._stream.problem is not None:
                    self._warn(self._offset + self._filled, self._stream.problem)
                return
            if self._filled == len(self._buffer):
                self._grow(framer.next_record_size)

    def _read(self, view: memoryview) -> int:
        """Read into view; a read error ends the file like a truncation (the stream's `problem`)."""
        try:
            return self._stream.readinto(view)
        except OSError as exc:
            self._stream.problem = f"read error: {exc.strerror or exc}"
            return 0

    def _shift(self, consumed: int) -> None:
        """Move the unconsumed tail to the front of the buffer."""
        if consumed:
            rest = self._filled - consumed
            with memoryview(self._buffer) as view:  # memmove in place: a bytearray slice would copy
                view[:rest] = view[consumed : self._filled]
            self._filled = rest
            self._offset += consumed
            if len(self._buffer) > self._chunk_size and rest <= self._chunk_size:
                self._shrink()

    def _grow(self, needed: int) -> None:
        """Make room for one record larger than the buffer (bounded by the C side's record limit)."""
        size = min(max(needed, 2 * len(self._buffer)), _MAX_BUFFER)
        if size <= len(self._buffer):  # cannot happen while the C bounds hold; stop rather than spin
            raise CaptureError(f"{self.name}: record at offset {self._offset} larger than {_MAX_BUFFER} bytes")
        self._replace_buffer(size)

    def _shrink(self) -> None:
        """Back to the normal buffer once an oversized record is consumed, so its memory is returned."""
        self._replace_buffer(max(self._chunk_size, self._filled))

    def _replace_buffer(self, size: int) -> None:
        """A new buffer of `size` bytes holding the unconsumed tail.

        Peak memory is the old buffer plus the new one; `bytearray.extend(bytes(n))` would also
        build an n-byte temporary and may copy during reallocation, about three times the record.
        """
        bigger = bytearray(size)
        with memoryview(self._buffer) as view:
            bigger[: self._filled] = view[: self._filled]
        self._buffer = bigger

    def _warn(self, offset: int, message: str) -> None:
        self.warnings.append(CaptureWarning(self.name, offset, message))

    def close(self) -> None:
        """Release the buffer and close the file (standard input is left open)."""
        if not self._closed:
            self._closed = True
            self._buffer = bytearray()
            self._filled = 0
            if self._close_file:
                self._file.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_capture(
    source: str | os.PathLike[str],
    *,
    flow_filter: FlowFilter | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    fileobj: BinaryIO | None = None,
) -> CaptureFile:
    """Open a pcap or pcapng capture, gzip-compressed or not; `-` is standard input.

    With `flow_filter` the C classifier decides which frames become RawPackets (the
    filter belongs to the caller, so it may persist across files); without one every
    frame is delivered. Raises NotACaptureError when the (decompressed) data starts with
    no capture magic, CaptureError when the source cannot be opened. `fileobj`, when given, is
    read instead of opening `source` (which then only names the input) and is closed with it.
    """
    if chunk_size < 64:
        raise ValueError("chunk_size must be at least 64 bytes")
    name = os.fspath(source)
    if fileobj is not None:
        close_file = True
    elif name == "-":
        fileobj: BinaryIO = sys.stdin.buffer
        close_file = False
    else:
        try:
            fileobj = open(name, "rb", buffering=0)  # noqa: SIM115 - owned by the CaptureFile
        except OSError as exc:
            raise CaptureError(f"{name}: {exc.strerror or exc}") from exc
        close_file = True
    try:
        raw = _RawStream(fileobj)
        stream: _RawStream | _GzipStream = raw
        head = _read_head(raw, name, 4)
        if head[:2] == _GZIP_MAGIC:
            stream = _GzipStream(raw, head)
            head = _read_head(stream, name, 4)
        if head == _PCAPNG_MAGIC:
            capture_format = "pcapng"
        elif head in _PCAP_MAGICS:
            capture_format = "pcap"
        else:
            raise NotACaptureError(name)
    except BaseException:
        if close_file:
            fileobj.close()
        raise
    return CaptureFile(name, fileobj, stream, head, capture_format, flow_filter, chunk_size, close_file)


def _read_head(stream: _Stream, name: str, size: int) -> bytes:
    head = bytearray(size)
    try:
        with memoryview(head) as view:
            got = _read_fully(stream, view)
    except OSError as exc:
        raise CaptureError(f"{name}: {exc.strerror or exc}") from exc
    return bytes(head[:got])


def iter_capture_paths(args: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """Expand the command-line arguments into capture paths.

    Yields (path, explicit): named arguments (and `-`) with explicit=True, the entries found
    by walking a directory recursively, in sorted order, with explicit=False, so that the
    caller can skip a non-capture found while walking instead of failing (see `not_a_regular_file`).
    A symbolic link to a directory is followed, but each directory is walked only once, so
    links that loop end; a directory reached a second time is yielded like a file.
    """
    walked: set[tuple[int, int]] = set()
    for arg in args:
        if arg != "-" and os.path.isdir(arg):
            yield from ((path, False) for path in _walk_sorted(arg, walked))
        else:
            yield arg, True


def _walk_sorted(directory: str, walked: set[tuple[int, int]]) -> Iterator[str]:
    """Entries under `directory` in sorted path order, descending into each directory once."""
    try:
        info = os.stat(directory)
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    walked.add((info.st_dev, info.st_ino))
    for entry in entries:
        if _is_unwalked_directory(entry, walked):
            yield from _walk_sorted(entry.path, walked)
        else:
            yield entry.path


def _is_unwalked_directory(entry: os.DirEntry[str], walked: set[tuple[int, int]]) -> bool:
    try:
        if not entry.is_dir():  # follows a symbolic link
            return False
        info = entry.stat()
    except OSError:
        return False
    return (info.st_dev, info.st_ino) not in walked


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory already walked (a symbolic link loop or a second link to it)"),
)


def not_a_regular_file(path: str) -> str | None:
    """Why a path found while walking is no capture to open (None for a regular file).

    Opening a FIFO would block until something writes to it, and a device may never end, so
    a walk reads regular files only; a capture named on the command line is opened whatever it is.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "vanished while walking"
    except OSError:
        return None  # let opening it report the error
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")
