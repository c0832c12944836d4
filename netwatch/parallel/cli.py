"""How `netwatch scan` picks serial, worker processes or a Dask cluster (called from netwatch.cli)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from netwatch.pipeline import Pipeline
from netwatch.scan import EventSink, Interruption, ProgressHook, ScanSummary, scan_paths


def run_scan(inputs: Sequence[str], pipeline: Pipeline, sink: EventSink, *, progress: ProgressHook | None,
             interruption: Interruption, continuous: bool, quiet: bool, parallel: dict[str, Any],
             recipe: tuple[Any, str | None, str | None, bool]) -> ScanSummary:
    """Serial when asked (-j 1) or when the files are one capture (--continuous), else tasks on workers."""
    jobs, cluster = parallel["jobs"], parallel["cluster"]
    if continuous and cluster:
        click.echo("netwatch: --continuous reads the files as one capture, in order: it cannot run on a cluster",
                   err=True)
        sys.exit(2)
    if continuous or (jobs == 1 and cluster is None):
        return scan_paths(inputs, pipeline, sink, progress=progress, continuous=continuous,
                          interruption=interruption)

    from netwatch.parallel.run import ClusterError, ParallelOptions, describe_result, scan_parallel
    from netwatch.parallel.worker import Settings, TaskResult

    overlays, policy, min_confidence, emit_all = recipe
    settings = Settings.of(overlays, policy, min_confidence, emit_all, pipeline.observer)
    options = ParallelOptions(jobs=jobs, cluster=cluster, chunk_bytes=parallel["chunk_size"],
                              overlap_bytes=parallel["chunk_overlap"],
                              min_parallel_bytes=parallel["min_parallel_size"])

    def on_file(result: TaskResult, done: int, total: int) -> None:
        if cluster is not None and not quiet:
            click.echo(describe_result(result, done, total), err=True)
        elif progress is not None:
            progress(result.task.label, result.task.size)

    try:
        return scan_parallel(inputs, pipeline, sink, settings, options, on_file=on_file, progress=progress,
                             interruption=interruption)
    except ClusterError as exc:
        click.echo(f"netwatch: {exc}", err=True)
        sys.exit(2)
