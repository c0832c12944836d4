"""Offline analysis: captures in, events and a summary out (the engine behind `netwatch scan`).

Reads each capture through the C fast path (framing and flow-head filtering), hands the
candidate packets to the shared pipeline and streams the resulting events to a sink, so memory
does not grow with the size of the input. One bad file never stops the others.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netwatch._fastpath import FlowFilter
from netwatch.capture.errors import CaptureError, CaptureWarning, NotACaptureError
from netwatch.capture.files import iter_capture_paths, open_capture
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

    @property
    def alerts(self) -> int:
        return int(self.counters.get("alerts", 0))

    @property
    def errors(self) -> list[FileReport]:
        return [report for report in self.files if report.error]

    @property
    def warnings(self) -> list[CaptureWarning]:
        return [warning for report in self.files for warning in report.warnings]


def new_flow_filter() -> FlowFilter:
    """The C classifier: first packets of every flow, DNS/DHCP, fragments and SYNs pass; bulk is dropped."""
    return FlowFilter()


def scan_paths(
    paths: Sequence[str],
    pipeline: Pipeline,
    sink: EventSink,
    *,
    flow_filter: FlowFilter | None = None,
    progress: ProgressHook | None = None,
) -> ScanSummary:
    """Analyse every capture named in `paths` (files, directories, '-' for stdin)."""
    started = time.perf_counter()
    summary = ScanSummary()
    flow_filter = flow_filter if flow_filter is not None else new_flow_filter()
    for path, explicit in iter_capture_paths(paths):
        report = FileReport(path=path)
        summary.files.append(report)
        _scan_one(path, explicit, report, pipeline, sink, flow_filter, progress)
        summary.frames += report.frames
        summary.admitted += report.admitted
        summary.bytes_read += report.bytes_read
    for event in pipeline.flush():
        sink(event)
    summary.seconds = time.perf_counter() - started
    summary.counters = pipeline.counters()
    summary.filter_stats = dict(flow_filter.stats())
    return summary


def _scan_one(path: str, explicit: bool, report: FileReport, pipeline: Pipeline, sink: EventSink,
              flow_filter: FlowFilter, progress: ProgressHook | None) -> None:
    try:
        capture = open_capture(path, flow_filter=flow_filter)
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
    report.format = capture.format
    process = pipeline.process
    next_progress = 0
    try:
        with capture:
            for count, pkt in enumerate(capture, 1):
                for event in process(pkt):
                    sink(event)
                if progress is not None and count >= next_progress:
                    progress(path, capture.bytes_read)
                    next_progress = count + 4096
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
