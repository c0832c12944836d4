"""Tasks: the units a scan is cut into, one input file or one byte range of a large pcap file.

A task names its input by path or fsspec URL (`s3://bucket/day1/`, `file:///archive/`), so the
same task list runs in local worker processes and on a Dask cluster whose workers share the
storage. Tasks carry a `kind` so other readers (log files) can become tasks of the same runner.

Splitting a large file (classic pcap only; pcapng and compressed files are one task each):
the file is cut near every `chunk_bytes`, at a record boundary found by reading record headers
there (a chain of plausible headers, see `record_boundary`). Chunk k *owns* the records in
[start, end). Its worker first analyses the `overlap_bytes` before `start` (the warm-up): flow
heads that began there are rebuilt, so a ClientHello, a TCP stream head or a QUIC Initial that
straddles the cut is complete in chunk k, but nothing found while reading the warm-up is
reported (it belongs to chunk k-1). Findings are owned by the chunk whose record completed
them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from netwatch._fastpath import MAX_RECORD_BYTES
from netwatch.capture.files import iter_capture_paths

KIND_CAPTURE = "capture"

DEFAULT_CHUNK_BYTES = 512 << 20
DEFAULT_OVERLAP_BYTES = 16 << 20
PCAP_HEADER_BYTES = 24
_RECORD_HEADER = 16
_CHAIN = 8  # consecutive plausible record headers that make a boundary
_WINDOW = 4 << 20  # bytes read at a nominal cut to find the boundary after it
_MAX_GAP_SECONDS = 3600  # neighbouring records in the chain: at most an hour apart
_MAX_SPAN_SECONDS = 400 * 86400  # and no further than this from the file's first record
_PCAP_MAGICS = {  # classic pcap only: (byte order, sub-second units); Kuznetzov's modified pcap is not split
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records [start, end) of a classic pcap file, read after a warm-up from `warm_start`."""

    number: int  # 0-based position among the file's chunks
    count: int  # chunks of the file
    header: bytes  # the file's global header, put in front of the byte range
    warm_start: int
    start: int
    end: int

    @property
    def last(self) -> bool:
        return self.number == self.count - 1


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work for a worker."""

    index: int  # position in the run's task list: results merge in this order
    path: str  # local path, '-' for standard input, or an fsspec URL
    explicit: bool = True  # named on the command line (not found by walking a directory)
    kind: str = KIND_CAPTURE
    size: int = 0  # bytes on storage, 0 if unknown
    chunk: Chunk | None = None

    @property
    def label(self) -> str:
        if self.chunk is None:
            return self.path
        return f"{self.path} (part {self.chunk.number + 1}/{self.chunk.count})"


def is_url(path: str) -> bool:
    return "://" in path


def plan_tasks(inputs: Sequence[str], *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               overlap_bytes: int = DEFAULT_OVERLAP_BYTES) -> list[Task]:
    """The task list for a scan: every input file in order, large pcap files cut into chunks.

    `chunk_bytes` 0 never splits. Directories (local or URL) are walked recursively in sorted order.
    """
    tasks: list[Task] = []
    for path, explicit in expand_inputs(inputs):
        size = _size(path)
        chunks = split_pcap(path, size, chunk_bytes, overlap_bytes) if chunk_bytes and size > chunk_bytes else []
        if not chunks:
            tasks.append(Task(len(tasks), path, explicit, size=size))
        for chunk in chunks:
            tasks.append(Task(len(tasks), path, explicit, size=chunk.end - chunk.start, chunk=chunk))
    return tasks


def expand_inputs(inputs: Sequence[str]) -> Iterator[tuple[str, bool]]:
    """(path, explicit) for every file the inputs name; URL directories are listed through fsspec."""
    for item in inputs:
        if not is_url(item):
            yield from iter_capture_paths([item])
            continue
        fs, root = _filesystem(item)
        try:
            is_dir = fs.isdir(root)
        except OSError:
            is_dir = False
        if not is_dir:
            yield item, True
            continue
        for found in sorted(fs.find(root)):
            yield fs.unstrip_protocol(found), False


def open_input(path: str) -> BinaryIO:
    """A binary file object for a local path or an fsspec URL."""
    if is_url(path):
        fs, root = _filesystem(path)
        return fs.open(root, "rb")
    return open(path, "rb", buffering=0)


def _filesystem(url: str):  # -> (fsspec.AbstractFileSystem, str)
    import fsspec.core  # optional: only URLs need it

    return fsspec.core.url_to_fs(url)


def _size(path: str) -> int:
    try:
        if is_url(path):
            fs, root = _filesystem(path)
            return int(fs.size(root) or 0)
        return os.path.getsize(path) if path != "-" else 0
    except (OSError, ValueError, ImportError):
        return 0


# --------------------------------------------------------------------------- splitting pcap files


@dataclass(frozen=True, slots=True)
class _PcapFormat:
    order: str  # '<' or '>'
    units: int  # sub-second units per second
    header: bytes
    first_seconds: int  # time of the file's first record


def split_pcap(path: str, size: int, chunk_bytes: int, overlap_bytes: int) -> list[Chunk]:
    """Chunks of a classic pcap file, or [] when it is not one or no clean cut is found."""
    if path == "-" or path.endswith(".gz") or chunk_bytes <= 0:
        return []
    try:
        with open_input(path) as fileobj:
            head = _read_at(fileobj, 0, PCAP_HEADER_BYTES + 4)
            spec = _PCAP_MAGICS.get(head[:4])
            if spec is None or len(head) < PCAP_HEADER_BYTES + 4:
                return []
            first_seconds = struct.unpack_from(spec[0] + "I", head, PCAP_HEADER_BYTES)[0]
            head = head[:PCAP_HEADER_BYTES]
            fmt = _PcapFormat(spec[0], spec[1], head, first_seconds)
            cuts = [PCAP_HEADER_BYTES]
            for nominal in range(PCAP_HEADER_BYTES + chunk_bytes, size, chunk_bytes):
                cut = record_boundary(fileobj, fmt, max(nominal, cuts[-1] + 1), size)
                if cut is None:
                    return []
                if cut < size:
                    cuts.append(cut)
            if len(cuts) == 1:
                return []
            ends = [*cuts[1:], size]
            chunks = []
            for number, (start, end) in enumerate(zip(cuts, ends, strict=True)):
                warm = start
                if number and overlap_bytes > 0:
                    found = record_boundary(fileobj, fmt, max(PCAP_HEADER_BYTES, start - overlap_bytes), start)
                    warm = found if found is not None and found <= start else start
                chunks.append(Chunk(number, len(cuts), head, warm, start, end))
            return chunks
    except OSError:
        return []


def record_boundary(fileobj: BinaryIO, fmt: _PcapFormat, offset: int, limit: int) -> int | None:
    """The first offset at or after `offset` where a record starts, judged by its headers.

    A position counts when _CHAIN record headers follow each other there (or the chain ends
    exactly at `limit`, the end of the file or of the range): each with a captured length the
    C framer accepts and not above the original length, a sub-second field below one second, a
    time within _MAX_SPAN_SECONDS of the file's first record and within an hour of its neighbour.
    Payload bytes that pass all of that eight times in a row are not something captured traffic
    produces by chance (and a wrong cut shows: the part before it ends in a truncated record).
    """
    window = _read_at(fileobj, offset, _WINDOW)
    units = fmt.units
    unpack = struct.Struct(fmt.order + "IIII").unpack_from
    last_start = min(len(window), limit - offset) - _RECORD_HEADER
    for candidate in range(max(last_start + 1, 0)):
        pos, links, previous_ts = candidate, 0, None
        while links < _CHAIN:
            if offset + pos == limit:
                links = _CHAIN  # the chain ends exactly at the end: a valid tail
                break
            if pos + _RECORD_HEADER > len(window):
                break
            seconds, fraction, caplen, origlen = unpack(window, pos)
            if fraction >= units or caplen > MAX_RECORD_BYTES or caplen > origlen:
                break
            if abs(seconds - fmt.first_seconds) > _MAX_SPAN_SECONDS or (
                    previous_ts is not None and abs(seconds - previous_ts) > _MAX_GAP_SECONDS):
                break
            previous_ts = seconds
            pos += _RECORD_HEADER + caplen
            links += 1
            if offset + pos > limit:
                links = 0
                break
        enough = links >= _CHAIN or (links >= 2 and pos + _RECORD_HEADER > len(window))
        if enough:
            return offset + candidate
    return None


def _read_at(fileobj: BinaryIO, offset: int, size: int) -> bytes:
    fileobj.seek(offset)
    parts, remaining = [], size
    while remaining > 0:
        data = fileobj.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)
