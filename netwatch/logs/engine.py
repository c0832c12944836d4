"""Batch reading (`netwatch logs`): log files in, the pipeline's events and a summary out.

Every reader's observations go through `Pipeline.detect`, the same detector, device inventory and
ECS event builder `netwatch scan` uses, so a log and a capture of the same traffic report alike.
One unreadable file never stops the others; a line that does not parse is counted and sampled.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, TypeVar

from netwatch.logs.common import LogReader, ReadContext, read_printable
from netwatch.logs.sniff import FORMATS, sniff
from netwatch.logs.source import iter_log_paths, open_log, read_chunks
from netwatch.model import Observation
from netwatch.pipeline import Pipeline

if TYPE_CHECKING:
    from netwatch.scan import Interruption

T = TypeVar("T")

EventSink = Callable[[dict[str, Any]], None]
SNIFF_BYTES = 64 * 1024


@dataclass(slots=True)
class LogFileReport:
    """What happened to one log file."""

    path: str
    format: str | None = None
    lines: int = 0
    records: int = 0
    other: int = 0
    bad: int = 0
    untimed: int = 0
    bad_samples: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None  # could not be read at all
    skipped: str | None = None  # found in a directory, not a log netwatch reads

    def take(self, reader: LogReader) -> None:
        self.records, self.other, self.bad, self.untimed = reader.records, reader.other, reader.bad, reader.untimed
        self.bad_samples = list(reader.bad_samples)


@dataclass(slots=True)
class LogSummary:
    """Totals for the run, for the table footer, the stderr summary and the exit status."""

    files: list[LogFileReport] = field(default_factory=list)
    lines: int = 0
    records: int = 0
    bad: int = 0
    seconds: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # stopped early (Ctrl-C): the results cover what was read

    @property
    def alerts(self) -> int:
        return int(self.counters.get("alerts", 0))

    @property
    def errors(self) -> list[LogFileReport]:
        return [f for f in self.files if f.error]

    @property
    def read_files(self) -> list[LogFileReport]:
        return [f for f in self.files if not f.skipped and not f.error]


def new_context(pipeline: Pipeline) -> ReadContext:
    """Readers ask the detector whether an answer's addresses or a connection matter."""
    detector = pipeline.detector
    return ReadContext(wants_answers=functools.lru_cache(maxsize=65536)(detector.wants_answers),
                       interesting_address=detector.interesting_address)


def make_reader(fmt: str, path: str, ctx: ReadContext, default_ts: float) -> LogReader:
    reader_class = FORMATS[fmt]
    if fmt == "zeek-json":
        from netwatch.logs.zeek import LOG_PATHS, ZeekJsonReader

        prefix = os.path.basename(path).split(".", 1)[0]
        return ZeekJsonReader(ctx, default_ts, path=prefix if prefix in LOG_PATHS else "")
    return reader_class(ctx, default_ts)


def detect_format(stream: IO[bytes]) -> str | None:
    """Sniff the head of a stream without consuming it (the stream must support peek)."""
    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(stream, "peek") else b""
    text = head.decode("utf-8", "replace")
    lines = text.split("\n")
    if len(head) >= SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the cut-off last line
    return sniff(lines)


def feed(reader: LogReader, lines: list[str], first_lineno: int, pipeline: Pipeline, sink: EventSink) -> None:
    """One chunk of lines through the reader and the detector; events go to the sink."""
    observations: list[Observation] = []
    read_printable(reader, lines, first_lineno, observations)
    if observations:
        for event in pipeline.detect(observations):
            sink(event)


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """Fewer garbage collections while reading.

    Every log line makes a few short-lived objects that never form cycles; with the default
    thresholds the collector runs every few hundred lines and walks the signature set and the
    inventory each time, which cost more than the parsing (measured: 2-3x slower). Objects alive
    now (signatures, policy) are frozen out of the collector's sight, and it runs less often.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def read_logs(inputs: Sequence[str], pipeline: Pipeline, sink: EventSink, *, fmt: str | None = None,
              stop: Callable[[], bool] | None = None, interruption: Interruption | None = None) -> LogSummary:
    """Read every log named in `inputs` (files, directories, '-' for stdin).

    `stop` is asked between chunks of lines (Ctrl-C): when it says so, the run ends there and the
    summary covers what was read. With the scan's `interruption` (its Ctrl-C handler) a Ctrl-C also
    ends a wait for input: a pipe or FIFO whose writer is silent would otherwise hold the run.
    """
    if stop is None:
        stop = (lambda: interruption.requested) if interruption is not None else (lambda: False)
    with few_collections():
        return _read_logs(inputs, pipeline, sink, fmt, stop, interruption)


def _read_logs(inputs: Sequence[str], pipeline: Pipeline, sink: EventSink, fmt: str | None,
               stop: Callable[[], bool], interruption: Interruption | None) -> LogSummary:
    started = time.perf_counter()
    summary = LogSummary()
    ctx = new_context(pipeline)
    for path, explicit in iter_log_paths(list(inputs)):
        report = LogFileReport(path=path)
        summary.files.append(report)
        _read_one(path, explicit, fmt, report, ctx, pipeline, sink, stop, interruption)
        summary.lines += report.lines
        summary.records += report.records
        summary.bad += report.bad
        if stop():
            summary.interrupted = True
            break
    summary.seconds = time.perf_counter() - started
    summary.counters = pipeline.counters()
    return summary


def _read_one(path: str, explicit: bool, fmt: str | None, report: LogFileReport, ctx: ReadContext,
              pipeline: Pipeline, sink: EventSink, stop: Callable[[], bool],
              interruption: Interruption | None) -> None:
    try:
        stream = _waiting(interruption, lambda: open_log(path))  # a FIFO: until its writer opens it
    except OSError as exc:
        report.error = f"{path}: {exc.strerror or exc}"
        return
    except _Interrupted:
        return
    with stream:
        try:
            found = fmt or _waiting(interruption, lambda: detect_format(stream))
        except _Interrupted:
            return
        except (OSError, EOFError) as exc:
            report.error = f"{path}: {exc}"
            return
        if found is None and _is_empty(stream):
            return  # nothing to read (a log just rotated): not an error
        if found is None:
            if explicit:
                report.error = (f"{path}: not a log format netwatch reads (use --input-format to name it; "
                                f"known: {', '.join(FORMATS)})")
            else:
                report.skipped = "not a known log format"
            return
        report.format = found
        pipeline.capture_file = "-" if path == "-" else path
        reader = make_reader(found, path, ctx, default_ts=_mtime(path))
        lineno = 1
        try:
            chunks = read_chunks(stream)
            while (chunk := _next_chunk(chunks, interruption)) is not None:
                lines = chunk[0]
                feed(reader, lines, lineno, pipeline, sink)
                lineno += len(lines)
                if stop():
                    break
        except (OSError, EOFError) as exc:  # a truncated gzip or a read error: keep what was read
            report.error = f"{path}: read error after line {lineno - 1}: {exc}"
        report.lines = lineno - 1
        report.take(reader)


class _Interrupted(Exception):
    """Ctrl-C ended a wait for input."""


def _waiting(interruption: Interruption | None, call: Callable[[], T]) -> T:
    """`call()`, a read that may wait for a silent writer; a Ctrl-C meanwhile ends it (_Interrupted).

    The handler raises only while `waiting` is set, so no line is ever left half-processed.
    """
    if interruption is None:
        return call()
    interruption.waiting = True
    try:
        return call()
    except KeyboardInterrupt:
        raise _Interrupted from None
    finally:
        interruption.waiting = False


def _next_chunk(chunks: Iterator[tuple[list[str], int]],
                interruption: Interruption | None) -> tuple[list[str], int] | None:
    """The next chunk of lines; None at the end of the input or on a Ctrl-C while waiting for it."""
    try:
        return _waiting(interruption, lambda: next(chunks, None))
    except _Interrupted:
        return None


def _is_empty(stream: IO[bytes]) -> bool:
    return hasattr(stream, "peek") and not stream.peek(1)


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path) if path != "-" else time.time()
    except OSError:
        return 0.0
