"""Offline analysis: captures in, events and a summary out (the engine behind `netwatch scan`).

Reads each capture through the C fast path (framing and flow-head filtering), hands the
candidate packets to the shared pipeline and streams the resulting events to a sink, so memory
does not grow with the size of the input. One bad file never stops the others.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, BinaryIO

from netwatch._fastpath import FlowFilter
from netwatch.capture.errors import CaptureError, CaptureWarning, NotACaptureError
from netwatch.capture.files import iter_capture_paths, not_a_regular_file, open_capture
from netwatch.decode.linktypes import linktype_name
from netwatch.parallel.merge import absorb_devices, add_counters
from netwatch.pipeline import Pipeline

EventSink = Callable[[dict[str, Any]], None]
ProgressHook = Callable[[str, int], None]  # (file name, bytes read so far in it)


@dataclass(slots=True)
class FileReport:
    """What happened to one input."""

    path: str
    frames: int = 0
    admitted: int = 0
    bytes_read: int = 0
    format: str | None = None
    warnings: list[CaptureWarning] = field(default_factory=list)
    error: str | None = None  # the input could not be read at all
    skipped: str | None = None  # found while walking a directory, not a capture
    note: str | None = None  # why it was skipped, worth telling the user (not an error)
    nothing_analysed: bool = False  # frames were read, but none of a link type netwatch decodes


@dataclass(slots=True)
class ScanSummary:
    """Totals for the whole run, for the table footer and the exit status."""

    files: list[FileReport] = field(default_factory=list)
    frames: int = 0
    bytes_read: int = 0
    admitted: int = 0
    seconds: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    filter_stats: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C: the totals cover the input read until then

    @property
    def alerts(self) -> int:
        return int(self.counters.get("alerts", 0))

    @property
    def errors(self) -> list[FileReport]:
        return [report for report in self.files if report.error]

    @property
    def warnings(self) -> list[CaptureWarning]:
        return [warning for report in self.files for warning in report.warnings]


class Interruption:
    """Ctrl-C (SIGINT) during a scan: finish the packet in hand, then report what was analysed.

    While a packet is being analysed the handler only sets `requested`, so no device or flow is
    left half-updated; while the scan waits for input (a pipe from tcpdump can stay silent for
    long) it raises KeyboardInterrupt to end the wait. A second Ctrl-C is not softened.
    """

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.waiting or self.requested:
            self.requested = True
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def installed(self) -> Iterator[Interruption]:
        """This handler for SIGINT inside the block (main thread only), the previous one after it."""
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def new_flow_filter(size: int = 0) -> FlowFilter:
    """The C classifier: first packets of every flow, DNS/DHCP, fragments and SYNs pass; bulk is dropped.

    `size` (bytes of an uncompressed input, 0 if unknown) sizes the flow table: a file of under
    1 MiB cannot hold 262,144 flows, and a small table is much cheaper to set up per file
    (0.6 ms against 0.001 ms), which adds up over thousands of small files. A quarter of the
    file size keeps the table far from full, so no flow is evicted that the full table would keep.
    """
    if 0 < size < _FULL_TABLE_BYTES:
        return FlowFilter(max_flows=max(_MIN_FLOWS, size // 4))
    return FlowFilter()


_FULL_TABLE_BYTES = 1 << 20
_MIN_FLOWS = 4096


def scan_paths(
    paths: Sequence[str],
    pipeline: Pipeline,
    sink: EventSink,
    *,
    flow_filter: FlowFilter | None = None,
    progress: ProgressHook | None = None,
    continuous: bool = False,
    interruption: Interruption | None = None,
) -> ScanSummary:
    """Analyse every capture named in `paths` (files, directories, '-' for stdin).

    Every file is a capture of its own: it is analysed with fresh flow state (a new pipeline and
    classifier), so a later file whose flows reuse an earlier file's addresses and ports neither
    loses nor borrows names, and the result equals the union of per-file scans. The per-file
    device inventories are merged into `pipeline.inventory`. With `continuous`, the files are
    slices of one capture (rotated files, in the order given) and flow state carries over.
    A caller-supplied `flow_filter` is used for every file. With an installed `interruption`,
    Ctrl-C ends the scan early but normally: what was read so far is flushed and summarised
    (`summary.interrupted`).
    """
    started = time.perf_counter()
    summary = ScanSummary()
    shared_filter = flow_filter if flow_filter is not None else new_flow_filter() if continuous else None
    for path, explicit in iter_capture_paths(paths):
        file_pipeline = pipeline if continuous else pipeline.fresh()
        file_filter = shared_filter or new_flow_filter(_plain_size(path))
        report = scan_file(path, explicit, file_pipeline, sink, file_filter, progress, flush=not continuous,
                           interruption=interruption)
        summary.files.append(report)
        if not continuous:
            merge_file_result(summary, pipeline, file_pipeline.inventory.devices(), file_pipeline.counters(),
                              file_filter.stats())
        if interruption is not None and interruption.requested:
            summary.interrupted = True
            break
    if continuous:
        for event in pipeline.flush():
            sink(event)
        summary.counters = pipeline.counters()
        if shared_filter is not None:
            summary.filter_stats = dict(shared_filter.stats())
    summary.frames = sum(report.frames for report in summary.files)
    summary.admitted = sum(report.admitted for report in summary.files)
    summary.bytes_read = sum(report.bytes_read for report in summary.files)
    summary.seconds = time.perf_counter() - started
    return summary


def merge_file_result(summary: ScanSummary, pipeline: Pipeline, devices: list, counters: dict[str, Any],
                      filter_stats: dict[str, int]) -> None:
    """Fold one file's devices and counters into the run's (in input order)."""
    absorb_devices(pipeline.inventory, devices)
    add_counters(summary.counters, counters)
    summary.counters["devices"] = len(pipeline.inventory)
    add_counters(summary.filter_stats, filter_stats)


def scan_file(path: str, explicit: bool, pipeline: Pipeline, sink: EventSink, flow_filter: FlowFilter,
              progress: ProgressHook | None = None, *, flush: bool = True,
              fileobj: BinaryIO | None = None, interruption: Interruption | None = None) -> FileReport:
    """Analyse one capture with the given pipeline; `flush` settles its waiting connections at the end."""
    report = FileReport(path=path)
    decoded = pipeline.decoder.counters
    segments_before, undecoded_before = decoded.segments, dict(decoded.undecoded_linktypes)
    _scan_one(path, explicit, report, pipeline, sink, flow_filter, progress, fileobj,
              interruption if interruption is not None else Interruption())
    _report_undecoded(report, decoded.segments - segments_before, {
        linktype: count - undecoded_before.get(linktype, 0)
        for linktype, count in decoded.undecoded_linktypes.items() if count > undecoded_before.get(linktype, 0)})
    if flush:
        for event in pipeline.flush():
            sink(event)
    return report


def _report_undecoded(report: FileReport, segments: int, undecoded: dict[int, int]) -> None:
    """Frames of link types netwatch cannot decode are a warning naming the link type, never silent;
    a file of which nothing at all could be analysed is flagged (`nothing_analysed`)."""
    for linktype, count in sorted(undecoded.items()):
        packets = f"{count:,} packet{'s' if count != 1 else ''}"
        message = f"{packets} of link type {linktype_name(linktype)} not decoded"
        report.warnings.append(CaptureWarning(report.path, report.bytes_read, message))
    report.nothing_analysed = bool(undecoded) and segments == 0


def _plain_size(path: str) -> int:
    """Size of an uncompressed file (0 for standard input and gzip, whose content size is unknown)."""
    if path == "-" or path.endswith(".gz"):
        return 0
    return input_size(path)


def _scan_one(path: str, explicit: bool, report: FileReport, pipeline: Pipeline, sink: EventSink,
              flow_filter: FlowFilter, progress: ProgressHook | None, fileobj: BinaryIO | None,
              interruption: Interruption) -> None:
    if not explicit and fileobj is None:  # a file object (an fsspec URL) is already open
        kind = not_a_regular_file(path)
        if kind is not None:  # a FIFO would block the walk forever, a device may never end
            report.skipped = report.note = f"skipped, {kind} is not a capture file"
            return
    try:
        capture = open_capture(path, flow_filter=flow_filter, fileobj=fileobj)
    except NotACaptureError as exc:
        if explicit:
            report.error = str(exc)
        else:
            report.skipped = "not a pcap or pcapng file"
        return
    except (CaptureError, OSError) as exc:
        report.error = _describe_os_error(path, exc)
        return
    pipeline.capture_file = "-" if path == "-" else path
    pipeline.steer(flow_filter)
    report.format = capture.format
    process = pipeline.process
    next_progress = 0
    count = 0
    try:
        with capture:
            packets = iter(capture)
            while not interruption.requested:
                interruption.waiting = True  # Ctrl-C may now end a blocked read
                try:
                    pkt = next(packets)
                except StopIteration:
                    break
                finally:
                    interruption.waiting = False
                for event in process(pkt):
                    sink(event)
                count += 1
                if progress is not None and count >= next_progress:
                    progress(path, capture.bytes_read)
                    next_progress = count + 4096
    except KeyboardInterrupt:  # Interruption.handle ending a blocked read: stop here, keep the rest
        if not interruption.requested:
            raise  # no Interruption installed: the default handler's Ctrl-C
    except OSError as exc:  # a read error mid-file: keep what was analysed
        report.warnings.append(CaptureWarning(path, capture.bytes_read, f"read error: {exc}"))
    finally:
        report.frames = capture.frames
        report.admitted = getattr(capture, "admitted", 0) or 0
        report.bytes_read = capture.bytes_read
        report.warnings.extend(capture.warnings)
        if progress is not None:
            progress(path, capture.bytes_read)


def _describe_os_error(path: str, exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{path}: {exc.strerror}"
    text = str(exc)
    return text if text.startswith(path) else f"{path}: {text}"


def input_size(path: str) -> int:
    """Bytes on disk, for the progress bar (0 when unknown, e.g. stdin)."""
    try:
        return os.path.getsize(path) if path != "-" else 0
    except OSError:
        return 0
