"""Running one task: what a worker process (local or on a Dask cluster) does with it.

A task is analysed with a pipeline of its own (fresh flow state, its own device inventory) and
comes back as a compact `TaskResult`: the findings as ECS events, the per-device summaries, the
counters, the file report. No packet leaves the worker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from netwatch.capture.errors import CaptureError, CaptureWarning, NotACaptureError
from netwatch.capture.files import open_capture
from netwatch.detect.devices import Device
from netwatch.parallel.tasks import KIND_CAPTURE, PCAP_HEADER_BYTES, Chunk, Task, is_url, open_input
from netwatch.pipeline import Pipeline, default_observer
from netwatch.scan import FileReport, new_flow_filter, scan_file

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Settings:
    """How to build the pipeline, as plain data a worker process can receive."""

    overlays: tuple[str, ...] = ()
    policy: str | None = None
    min_confidence: str | None = None
    emit_all: bool = False
    observer: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, overlays: tuple[Path, ...] | tuple[str, ...], policy: str | None, min_confidence: str | None,
           emit_all: bool, observer: dict[str, Any] | None = None) -> Settings:
        return cls(tuple(str(p) for p in overlays), policy, min_confidence, emit_all,
                   tuple((observer or default_observer("analyzer")).items()))


_TEMPLATES: dict[Settings, Pipeline] = {}


def template_for(settings: Settings) -> Pipeline:
    """The pipeline a worker process copies for every task (signatures loaded once per process)."""
    template = _TEMPLATES.get(settings)
    if template is None:
        from netwatch.signatures import load_signature_set

        sigset = load_signature_set(overlay_dirs=[Path(p) for p in settings.overlays], policy=settings.policy)
        template = Pipeline(sigset, min_confidence=settings.min_confidence, emit_all=settings.emit_all,
                            observer=dict(settings.observer))
        _TEMPLATES[settings] = template
    return template


@dataclass(slots=True)
class TaskResult:
    """What a worker sends back for one task."""

    task: Task
    report: FileReport
    events: list[dict[str, Any]] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)  # chunks: exact time of each event, for its id
    devices: list[Device] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    filter_stats: dict[str, int] = field(default_factory=dict)
    stopped: bool = False  # chunks: reading stopped at damage in the owned range
    seconds: float = 0.0


def init_process(settings: Settings) -> None:
    """Start-up of a local worker process: Ctrl-C is the client's to handle; signatures load once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    template_for(settings)


def run_remote(settings: Settings, task: Task) -> TaskResult:
    """The entry point shipped to worker processes and Dask workers."""
    return run_task(task, template_for(settings))


TaskRunner = Callable[[Task, Pipeline, "EventSink | None"], TaskResult]
RUNNERS: dict[str, TaskRunner] = {}  # task kind -> how to run it; other readers (logs) add theirs


def run_task(task: Task, template: Pipeline, sink: EventSink | None = None) -> TaskResult:
    """Run one task of any kind with a fresh copy of `template`; events go to `sink` or into the result."""
    started = time.perf_counter()
    runner = RUNNERS.get(task.kind)
    if runner is None:
        result = TaskResult(task, FileReport(task.path, error=f"{task.path}: no reader for {task.kind} tasks"))
    else:
        result = runner(task, template, sink)
    result.seconds = time.perf_counter() - started
    return result


def run_capture_task(task: Task, template: Pipeline, sink: EventSink | None = None) -> TaskResult:
    """A capture file, or one part of a split pcap file."""
    events: list[dict[str, Any]] = []
    if task.chunk is not None:
        result = _run_chunk(task, task.chunk, template.fresh(), events)
    else:
        pipeline = template.fresh()
        flow_filter = new_flow_filter(0 if task.path.endswith(".gz") else task.size)
        fileobj = _open_url(task) if is_url(task.path) else None
        if isinstance(fileobj, FileReport):
            result = TaskResult(task, fileobj)
        else:
            report = scan_file(task.path, task.explicit, pipeline, sink or events.append, flow_filter,
                               fileobj=fileobj)
            result = TaskResult(task, report, devices=pipeline.inventory.devices(),
                                counters=pipeline.counters(), filter_stats=dict(flow_filter.stats()))
    result.events = events
    return result


RUNNERS[KIND_CAPTURE] = run_capture_task


def _open_url(task: Task) -> BinaryIO | FileReport:
    try:
        return open_input(task.path)
    except (OSError, ValueError) as exc:
        return FileReport(task.path, error=f"{task.path}: {getattr(exc, 'strerror', None) or exc}")


# --------------------------------------------------------------------------- chunks of a large file


class _RangeReader:
    """The pcap global header followed by bytes [start, end) of the file: a capture of its own."""

    def __init__(self, fileobj: BinaryIO, header: bytes, start: int, end: int) -> None:
        self._file = fileobj
        self._header = header
        self._remaining = end - start
        fileobj.seek(start)

    def readinto(self, buffer: memoryview) -> int:
        if self._header:
            n = min(len(buffer), len(self._header))
            buffer[:n] = self._header[:n]
            self._header = self._header[n:]
            return n
        want = min(len(buffer), self._remaining)
        if want <= 0:
            return 0
        data = self._file.read(want)
        buffer[:len(data)] = data
        self._remaining -= len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(size if size >= 0 else len(self._header) + self._remaining)
        with memoryview(buffer) as view:
            n = self.readinto(view)
        return bytes(buffer[:n])

    def close(self) -> None:
        self._file.close()


class _ChunkTap:
    """Watches a chunk's detector: exact time of each finding; contacts counted only when owned.

    Findings made while reading the warm-up belong to the previous chunk: they update flow state
    (and the device's addresses and names) but are not counted in this chunk's inventory.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        detector = pipeline.detector
        inventory = detector.inventory
        self._observe = detector.observe
        self._record = inventory.record_contact
        detector.observe = self._observe_timed  # type: ignore[method-assign]
        inventory.record_contact = self._record_if_owned  # type: ignore[method-assign]
        self.owned = False
        self.times: list[float] = []

    def _observe_timed(self, obs: Any) -> list:
        found = self._observe(obs)
        self.times.extend([obs.ts] * len(found))
        return found

    def _record_if_owned(self, device: Device, **contact: Any) -> Any:
        return self._record(device, **contact) if self.owned else None

    def take(self) -> list[float]:
        times, self.times = self.times, []
        return times


def _run_chunk(task: Task, chunk: Chunk, pipeline: Pipeline, events: list[dict[str, Any]]) -> TaskResult:
    """Warm-up [warm_start, start) without reporting, then the owned records [start, end).

    Frame numbers and event ids in the result count from the chunk's first owned record; the
    merger shifts them once the chunks before this one have been counted.
    """
    report = FileReport(task.path)
    flow_filter = new_flow_filter()
    tap = _ChunkTap(pipeline)
    times: list[float] = []
    warm_frames = 0
    result = TaskResult(task, report)
    try:
        if chunk.start > chunk.warm_start:
            warm_frames, _ = _read_range(task, chunk, chunk.warm_start, chunk.start, pipeline, flow_filter, tap,
                                         0, None, None)
        before = pipeline.counters()
        tap.owned = True
        frames, capture = _read_range(task, chunk, chunk.start, chunk.end, pipeline, flow_filter, tap,
                                      warm_frames, events, times)
        if chunk.last:
            flushed = pipeline.flush()
            flush_times = tap.take()
            if len(flushed) == len(flush_times):
                events.extend(flushed)
                times.extend(flush_times)
    except (CaptureError, NotACaptureError, OSError) as exc:
        report.error = f"{task.path}: {getattr(exc, 'strerror', None) or exc}"
        return result
    report.format = "pcap"
    report.frames = frames
    report.admitted = capture.admitted
    report.bytes_read = chunk.end - chunk.start + (PCAP_HEADER_BYTES if chunk.number == 0 else 0)
    report.warnings = [_file_warning(task.path, chunk, w) for w in capture.warnings]
    result.stopped = any("corrupt record" in w.message or "truncated" in w.message for w in report.warnings)
    for event in events:
        event["netwatch"]["capture"]["frame"] -= warm_frames
    result.event_times = times
    result.devices = pipeline.inventory.devices()
    result.counters = _difference(pipeline.counters(), before)
    result.filter_stats = dict(flow_filter.stats())
    return result


def _read_range(task: Task, chunk: Chunk, start: int, end: int, pipeline: Pipeline, flow_filter: Any,
                tap: _ChunkTap, frame_offset: int, events: list[dict[str, Any]] | None,
                times: list[float] | None) -> tuple[int, Any]:
    """Analyse records [start, end) as frames frame_offset+1...; keep events only when `events` is given."""
    reader = _RangeReader(open_input(task.path), chunk.header, start, end)
    capture = open_capture(task.path, flow_filter=flow_filter, fileobj=reader)  # type: ignore[arg-type]
    pipeline.capture_file = task.path
    process = pipeline.process
    with capture:
        for pkt in capture:
            found = process(pkt._replace(frame=pkt.frame + frame_offset) if frame_offset else pkt)
            found_times = tap.take()
            if events is not None and times is not None and found and len(found) == len(found_times):
                events.extend(found)
                times.extend(found_times)
    return capture.frames, capture


def _file_warning(path: str, chunk: Chunk, warning: CaptureWarning) -> CaptureWarning:
    """A warning about the chunk's stream, with offsets of the file."""
    shift = chunk.start - PCAP_HEADER_BYTES
    offset = warning.offset + shift
    message = warning.message.replace(f"offset {warning.offset}", f"offset {offset}")
    return CaptureWarning(path, offset, message)


def _difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Counters of the owned part: the totals after it minus the totals of the warm-up."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, dict):
            old = old or {}
            out[key] = {k: v - old.get(k, 0) for k, v in value.items() if v - old.get(k, 0)}
        elif isinstance(value, int) and isinstance(old, int):
            out[key] = value - old
        else:
            out[key] = value
    return out
