"""`netwatch scan -j N` and `netwatch scan --cluster`: tasks out to workers, results merged in input order.

Three ways to run the same task list, all merged by `ResultMerger`, so they give the same
findings and the same device inventory as a serial scan:

- in this process through `scan_paths` (a small input is not worth starting processes for),
- worker processes on this machine (`concurrent.futures`, forked, or started from a forkserver
  when the client runs threads); a worker that dies has its tasks retried once in a new pool;
  the largest tasks start first,
- a Dask distributed cluster (`--cluster tcp://host:8786`): tasks are Dask futures with one
  retry; a worker that dies mid-task has the task rescheduled by the scheduler. Dask is
  imported only here.

A task that fails twice is reported by name as an input error: never silently skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from netwatch.outputs.ecs import event_id_of
from netwatch.parallel.tasks import DEFAULT_CHUNK_BYTES, DEFAULT_OVERLAP_BYTES, Task, plan_tasks
from netwatch.parallel.worker import Settings, TaskResult, init_process, run_remote, run_task, template_for
from netwatch.pipeline import Pipeline
from netwatch.scan import (
    EventSink,
    FileReport,
    Interruption,
    ProgressHook,
    ScanSummary,
    merge_file_result,
    scan_paths,
)

# Below this much input, starting worker processes costs more than it saves (~0.3 s each).
DEFAULT_MIN_PARALLEL_BYTES = 32 << 20
FileDone = Callable[[TaskResult, int, int], None]  # (result, tasks done, tasks in all)


class ClusterError(Exception):
    """The Dask cluster cannot be used (Dask missing, scheduler unreachable)."""


@dataclass(slots=True)
class ParallelOptions:
    jobs: int = 0  # 0: one worker per core
    cluster: str | None = None  # Dask scheduler address
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    overlap_bytes: int = DEFAULT_OVERLAP_BYTES
    min_parallel_bytes: int = DEFAULT_MIN_PARALLEL_BYTES


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def scan_parallel(inputs: Sequence[str], pipeline: Pipeline, sink: EventSink, settings: Settings,
                  options: ParallelOptions, *, on_file: FileDone | None = None, progress: ProgressHook | None = None,
                  interruption: Interruption | None = None) -> ScanSummary:
    """Analyse the inputs as tasks on workers; merge devices into `pipeline.inventory`, events into `sink`.

    Input too small to be worth worker processes is scanned here, as `scan_paths` does. Ctrl-C (an
    installed `interruption`) stops waiting for the tasks still running and reports what was merged.
    """
    started = time.perf_counter()
    summary = ScanSummary()
    jobs = options.jobs or default_jobs()
    tasks = plan_tasks(inputs, chunk_bytes=0)
    total = sum(task.size for task in tasks)
    worth_it = options.cluster is not None or (
        jobs > 1 and total >= options.min_parallel_bytes
        and (len(tasks) > 1 or any(task.size > options.chunk_bytes for task in tasks)))
    if worth_it and options.chunk_bytes:
        tasks = plan_tasks(inputs, chunk_bytes=options.chunk_bytes, overlap_bytes=options.overlap_bytes)
    if not worth_it:
        return scan_paths(inputs, pipeline, sink, progress=progress, interruption=interruption)
    merger = ResultMerger(pipeline, sink, summary, len(tasks), on_file)
    stop = interruption or Interruption()
    if options.cluster is not None:
        _run_on_cluster(options.cluster, tasks, settings, merger, stop)
    else:
        _run_in_processes(tasks, settings, min(jobs, len(tasks)), merger, stop)
    summary.interrupted = stop.requested
    summary.frames = sum(report.frames for report in summary.files)
    summary.admitted = sum(report.admitted for report in summary.files)
    summary.bytes_read = sum(report.bytes_read for report in summary.files)
    summary.seconds = time.perf_counter() - started
    return summary


class ResultMerger:
    """Folds task results, arriving in any order, into one summary exactly as a serial scan would.

    Events of a whole file go out as soon as its result arrives (the order of lines in jsonl and
    csv may differ from a serial run); devices, counters and file reports are merged in task
    order. The chunks of a split file are merged in order too: a chunk's frame numbers (and so
    its event ids) are shifted by the frames of the chunks before it, and once a chunk stops at
    damage the rest of the file is dropped, as a serial scan stops reading there.
    """

    def __init__(self, pipeline: Pipeline, sink: EventSink, summary: ScanSummary, total: int,
                 on_file: FileDone | None = None) -> None:
        self._pipeline = pipeline
        self._sink = sink
        self._summary = summary
        self._total = total
        self._on_file = on_file
        self._waiting: dict[int, TaskResult] = {}
        self._next = 0
        self._done = 0
        self._frames_before: dict[str, int] = {}
        self._split_reports: dict[str, FileReport] = {}
        self._stopped: set[str] = set()

    def add(self, result: TaskResult) -> None:
        self._done += 1
        if result.task.chunk is None:
            for event in result.events:
                self._sink(event)
        self._waiting[result.task.index] = result
        while self._next in self._waiting:
            self._merge(self._waiting.pop(self._next))
            self._next += 1
        if self._on_file is not None:
            self._on_file(result, self._done, self._total)

    def fail(self, task: Task, message: str) -> None:
        self.add(TaskResult(task, FileReport(task.path, error=message)))

    def _merge(self, result: TaskResult) -> None:
        task, report = result.task, result.report
        if task.chunk is None:
            self._summary.files.append(report)
        else:
            if task.path in self._stopped:
                return
            report = self._merge_chunk(result)
        if report.error is None and not report.skipped:
            merge_file_result(self._summary, self._pipeline, result.devices, result.counters, result.filter_stats)

    def _merge_chunk(self, result: TaskResult) -> FileReport:
        task, part = result.task, result.report
        assert task.chunk is not None
        whole = self._split_reports.get(task.path)
        if whole is None:
            whole = self._split_reports[task.path] = FileReport(task.path, format=part.format)
            self._summary.files.append(whole)
        base = self._frames_before.get(task.path, 0)
        for event, ts in zip(result.events, result.event_times, strict=True):
            event["netwatch"]["capture"]["frame"] += base
            event["event"]["id"] = event_id_of(event, ts)
            self._sink(event)
        self._frames_before[task.path] = base + part.frames
        whole.frames += part.frames
        whole.admitted += part.admitted
        whole.bytes_read += part.bytes_read
        whole.warnings.extend(part.warnings)
        if part.error:
            whole.error = part.error
        if part.error or result.stopped:
            self._stopped.add(task.path)
        return part


# --------------------------------------------------------------------------- worker processes

_MAX_ATTEMPTS = 2
_POLL_SECONDS = 0.2  # how often the client looks for Ctrl-C while waiting for workers


def _run_in_processes(tasks: list[Task], settings: Settings, jobs: int, merger: ResultMerger,
                      stop: Interruption) -> None:
    """A process pool; if a worker dies the pool breaks: its unfinished tasks get one more try."""
    import multiprocessing

    local = [task for task in tasks if task.path == "-"]  # standard input stays with this process
    queue = [task for task in tasks if task.path != "-"]
    attempts = dict.fromkeys((task.index for task in queue), 0)
    for task in local:
        merger.add(run_task(task, template_for(settings)))
    # fork is the cheapest start (no re-import), and safe while this process has one thread; with
    # forwarders running (threads), forkserver starts workers from a clean single-threaded server.
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    while queue:
        for task in queue:
            attempts[task.index] += 1
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=init_process,
                                   initargs=(settings,))
        futures: dict[Future[TaskResult], Task] = {pool.submit(run_remote, settings, t): t
                                                   for t in sorted(queue, key=_largest_first)}
        queue = []
        try:
            pending = set(futures)
            while pending and not stop.requested:
                done, pending = wait(pending, timeout=_POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    task = futures[future]
                    try:
                        merger.add(future.result())
                    except BrokenProcessPool:
                        queue.append(task)
                    except Exception as exc:  # a bug in the worker: report it with the file
                        _retry_or_fail(task, attempts, queue, merger, f"{type(exc).__name__}: {exc}")
        except BaseException:
            _stop_pool(pool)
            raise
        if stop.requested:
            _stop_pool(pool)
            return
        pool.shutdown(wait=True)
        retry, queue = queue, []
        for task in sorted(retry, key=lambda t: t.index):
            _retry_or_fail(task, attempts, queue, merger, "the worker process analysing it died")


def _largest_first(task: Task) -> tuple[int, int]:
    """Large tasks start first, so the last ones to finish are short (less idle time at the end)."""
    return -task.size, task.index


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers (they ignore Ctrl-C; the client decides)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor has no public way
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _retry_or_fail(task: Task, attempts: dict[int, int], queue: list[Task], merger: ResultMerger,
                   why: str) -> None:
    if attempts[task.index] < _MAX_ATTEMPTS:
        queue.append(task)
    else:
        merger.fail(task, f"{task.label}: failed twice ({why})")


# --------------------------------------------------------------------------- Dask cluster


def _run_on_cluster(address: str, tasks: list[Task], settings: Settings, merger: ResultMerger,
                    stop: Interruption) -> None:
    try:
        from distributed import Client, wait
    except ImportError as exc:
        raise ClusterError("--cluster needs Dask: pip install 'netwatch[cluster]'") from exc
    if any(task.path == "-" for task in tasks):
        raise ClusterError("standard input cannot be scanned on a cluster: give files or URLs")
    try:
        client = Client(address, timeout="15s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    run_id = os.urandom(4).hex()
    try:
        futures = {
            client.submit(run_remote, settings, task, key=f"netwatch-scan-{run_id}-{task.index}", retries=1,
                          pure=False, priority=task.size): task
            for task in tasks
        }
        pending = set(futures)
        while pending and not stop.requested:
            try:
                done, pending = wait(list(pending), timeout=_POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                continue
            for future in done:
                task = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # KilledWorker, or the task raised on both tries
                    merger.fail(task, f"{task.label}: failed twice on the cluster ({type(exc).__name__}: {exc})")
                    continue
                merger.add(result)
            pending = set(pending)
        if pending:
            client.cancel(list(pending))
    finally:
        client.close()


def describe_result(result: TaskResult, done: int, total: int) -> str:
    """One progress line per finished task."""
    report = result.report
    if report.error:
        state = f"FAILED: {report.error}"
    elif report.skipped:
        state = f"skipped ({report.skipped})"
    else:
        alerts = int(result.counters.get("alerts", 0))
        state = f"{report.frames:,} packets, {alerts} alert(s), {result.seconds:.2f} s"
    return f"netwatch: [{done}/{total}] {result.task.label}: {state}"
