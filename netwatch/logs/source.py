"""Log files on disk: finding them (directories, rotated names), opening them (gzip) and reading
them as lines in large chunks, with the byte offset after each chunk (for `--follow` resume)."""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Iterator
from typing import IO

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # a longer "line" is damage: its first bytes are kept as a sample, the rest dropped
GZIP_MAGIC = b"\x1f\x8b"

# dns.log.1, dns.log.2.gz, querylog.3, eve.json.1: numbered rotations (higher = older);
# Zeek's archive names (dns.2026-11-28-10-00-00.log.gz) and dated copies sort by their text.
_NUMBERED = re.compile(r"^(?P<base>.*?)\.(?P<n>\d{1,4})(?:\.gz)?$")
_ZEEK_LOG = re.compile(r"^(?P<path>[a-z_]+)\.")


def rotation_key(path: str) -> tuple:
    """Sort key that puts rotated files before the live one, oldest first, and Zeek logs in join order."""
    from netwatch.logs.zeek import LOG_PATHS

    directory, name = os.path.split(path)
    plain = name[:-3] if name.endswith(".gz") else name
    zeek = _ZEEK_LOG.match(plain)
    family_rank = LOG_PATHS.index(zeek["path"]) if zeek and zeek["path"] in LOG_PATHS else len(LOG_PATHS)
    base = plain.split(".", 1)[0]
    numbered = _NUMBERED.match(name)
    if numbered and not name.endswith((".log", ".json")):
        return (directory, family_rank, base, 0, -int(numbered["n"]), name)
    live = 1 if plain.count(".") <= 1 else 0
    return (directory, family_rank, base, live, 0, name)


def iter_log_paths(inputs: list[str] | tuple[str, ...]) -> Iterator[tuple[str, bool]]:
    """(path, named explicitly) for every file under the inputs; directories are walked.

    A walk yields regular files only: opening a FIFO found in a log directory would block forever,
    and a broken symbolic link (a `current` link whose target rotated away) is no log to report.
    """
    for item in inputs:
        if item == "-" or not os.path.isdir(item):
            yield item, True
            continue
        found = []
        for root, dirs, files in os.walk(item):
            dirs.sort()
            found.extend(path for path in (os.path.join(root, f) for f in files if not f.startswith("."))
                         if os.path.isfile(path))
        for path in sorted(found, key=rotation_key):
            yield path, False


def open_log(path: str) -> IO[bytes]:
    """A binary stream of the file's text; gzip is recognised by its magic bytes, not the name."""
    raw: IO[bytes] = open(path, "rb") if path != "-" else os.fdopen(os.dup(0), "rb")  # noqa: SIM115
    if path == "-":
        raw = io.BufferedReader(raw)  # type: ignore[arg-type]
    try:
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    except OSError:
        head = b""
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def read_chunks(stream: IO[bytes], *, final: bool = True) -> Iterator[tuple[list[str], int]]:
    """(complete lines, bytes of the stream they span) in chunks of about a megabyte.

    Lines end at b"\\n"; a "\\r" before it (Windows logs) is dropped. A last line without its
    newline is given at the end when `final` (a finished file); `--follow` leaves it for later,
    as the writer may still be writing it. A line longer than MAX_LINE_BYTES is damage: its first
    bytes are given as the line (the reader counts it as unreadable) and the rest is skipped, so
    memory stays bounded whatever the input.
    """
    rest = b""
    dropped = -1  # >= 0 while skipping the rest of an over-long line: the bytes skipped so far
    # read1: what is there now (up to a chunk), so lines from a pipe are handled as they come.
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(CHUNK_BYTES)
        if not data:
            break
        if dropped >= 0:
            end = data.find(b"\n")
            if end < 0:
                dropped += len(data)
                continue
            yield [], dropped + end + 1
            dropped = -1
            data = data[end + 1:]
            if not data:
                continue
        if rest:
            data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE_BYTES:
                yield [decode(data[:200]) + " ..."], 0
                dropped, rest = len(data), b""
            else:
                rest = data
            continue
        rest = data[cut + 1:]
        text = decode(data[:cut])
        if "\r" in text:
            text = text.replace("\r", "")
        yield text.split("\n"), cut + 1
    if final:
        if dropped >= 0:
            yield [], dropped
        elif rest:
            yield [decode(rest).replace("\r", "")], len(rest)
