#!/usr/bin/env python3
"""`netwatch scan -j 2` against `-j 1`, and a 2-worker Dask cluster against `-j 2`, on an archive.

    python benchmarks/bench_parallel.py                      # builds benchmarks/out/archive/ on first use
    python benchmarks/bench_parallel.py --runs 5 --json      # more runs, machine-readable result
    python benchmarks/bench_parallel.py --no-cluster         # without Dask

The archive is ~20 captures of ~50 MB (benchmarks/gen_capture.py): half bulk traffic (long TCP
flows, few candidates), half small flows (the nDPI corpus repeated: DNS, handshakes, many
candidates), as a rotated archive of a mixed network would be. The same capture of each kind is
copied under every name, so a re-run builds the same archive.

Every mode runs the real CLI in a fresh process (`scan -q --format jsonl -o FILE`), wall time by a
monotonic clock; the outputs of all modes are checked to hold the same events. Then one
instrumented run per parallel mode (in this process, through netwatch.parallel.run) says where
the time goes: planning, the workers' own analysis time (sum over tasks), the client's merging,
and the rest (process or cluster start-up, scheduling, moving results).

Figures reported: speedup = t(-j 1) / t(-j 2); overhead of -j 2 = t(-j 2) / (worker time / 2) - 1,
the time beyond the analysis work split evenly over 2 workers; cluster / -j 2 = t(cluster) /
t(-j 2) - 1. On a machine shared with other work the speedup is capped by the cores other
processes leave free; the overhead figure is the one that depends on netwatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_archive(directory: Path, files: int, size: str) -> list[Path]:
    """`files` captures alternating bulk and small-flow traffic, ~`size` each (kept for re-runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [directory / f"day-{index:02d}-{'bulk' if index % 2 == 0 else 'small'}.pcap" for index in range(files)]
    if all(path.exists() for path in names):
        return names
    templates = directory / "templates"
    templates.mkdir(exist_ok=True)
    bulk, small = templates / "bulk.pcap", templates / "small.pcap"
    generate = [sys.executable, str(REPO / "benchmarks" / "gen_capture.py")]
    if not bulk.exists():
        subprocess.run([*generate, "-o", str(bulk), "--size", size, "--packets", "50k", "--planted", "300"],
                       check=True)
    if not small.exists():
        # one copy of the nDPI corpus is ~1.3 MB: repeat it up to the target size
        repeat = max(1, round(_bytes(size) / 1.34e6))
        subprocess.run([*generate, "--small-flows", "-o", str(small), "--repeat", str(repeat)], check=True)
    for index, path in enumerate(names):
        shutil.copyfile(bulk if index % 2 == 0 else small, path)
    return names


def _bytes(text: str) -> float:
    units = {"K": 1e3, "M": 1e6, "G": 1e9}
    return float(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else float(text)


def run_cli(args: list[str], output: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "-q", "--format", "jsonl", "-o",
                           str(output), *args], cwd=REPO, capture_output=True)
    seconds = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"netwatch failed ({proc.returncode}): {proc.stderr.decode()}")
    return seconds


@contextmanager
def dask_cluster(workers: int):
    """A scheduler and `workers` single-threaded workers on loopback, torn down after."""
    work = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    scheduler_file = work / "scheduler.json"
    processes = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(scheduler_file)], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(workers):
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--no-dashboard", "--local-directory", str(work)], cwd=REPO, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in processes:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def breakdown(archive: Path, jobs: int, cluster: str | None) -> dict[str, float]:
    """One instrumented run: where the time of a parallel scan goes."""
    from netwatch.parallel import run as runner
    from netwatch.parallel.worker import Settings
    from netwatch.pipeline import Pipeline
    from netwatch.signatures import load_signature_set

    pipeline = Pipeline(load_signature_set())
    merge_seconds = 0.0
    task_seconds = 0.0
    original_add = runner.ResultMerger.add

    def timed_add(self, result):  # type: ignore[no-untyped-def]
        nonlocal merge_seconds, task_seconds
        started = time.perf_counter()
        original_add(self, result)
        merge_seconds += time.perf_counter() - started
        task_seconds += result.seconds

    original_plan = runner.plan_tasks
    plan_seconds = 0.0

    def timed_plan(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal plan_seconds
        started = time.perf_counter()
        try:
            return original_plan(*args, **kwargs)
        finally:
            plan_seconds += time.perf_counter() - started

    runner.ResultMerger.add = timed_add  # type: ignore[method-assign]
    runner.plan_tasks = timed_plan
    try:
        started = time.perf_counter()
        runner.scan_parallel([str(archive)], pipeline, lambda event: None, Settings.of((), None, None, False),
                             runner.ParallelOptions(jobs=jobs, cluster=cluster, min_parallel_bytes=0))
        wall = time.perf_counter() - started
    finally:
        runner.ResultMerger.add = original_add  # type: ignore[method-assign]
        runner.plan_tasks = original_plan
    workers = 2
    return {
        "wall_s": round(wall, 3),
        "plan_s": round(plan_seconds, 3),
        "worker_analysis_s": round(task_seconds, 3),
        "client_merge_s": round(merge_seconds, 3),
        "other_s": round(wall - plan_seconds - merge_seconds - task_seconds / workers, 3),
        "overhead_vs_even_split": round(wall / (task_seconds / workers) - 1, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archive", type=Path, default=REPO / "benchmarks" / "out" / "archive")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", default="50M", help="size of each capture (default 50M)")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (median reported)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Dask cluster runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    files = build_archive(args.archive, args.files, args.size)
    total_mb = sum(path.stat().st_size for path in files) / 1e6
    modes: dict[str, list[str]] = {"-j 1": ["-j", "1"], "-j 2": ["-j", "2"]}
    results: dict[str, dict] = {}
    outputs = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    with dask_cluster(2) if not args.no_cluster else _nothing() as address:
        if address:
            modes["cluster (2 workers)"] = ["--cluster", address]
        for name, extra in modes.items():
            times = [run_cli([*extra, str(args.archive)], outputs / f"{len(results)}.jsonl") for _ in range(args.runs)]
            results[name] = {"median_s": round(statistics.median(times), 3),
                             "runs_s": [round(t, 3) for t in times]}
        reference = sorted((outputs / "0.jsonl").read_text().splitlines())
        for index, name in enumerate(modes):
            same = sorted((outputs / f"{index}.jsonl").read_text().splitlines()) == reference
            results[name]["same_events_as_serial"] = same
        results["-j 2"]["where_time_goes"] = breakdown(args.archive, 2, None)
        if address:
            results["cluster (2 workers)"]["where_time_goes"] = breakdown(args.archive, 2, address)
    shutil.rmtree(outputs, ignore_errors=True)

    serial, parallel = results["-j 1"]["median_s"], results["-j 2"]["median_s"]
    summary = {
        "archive": {"files": len(files), "total_mb": round(total_mb, 1)},
        "cores": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "modes": results,
        "speedup_j2_vs_j1": round(serial / parallel, 3),
        "overhead_j2": results["-j 2"]["where_time_goes"]["overhead_vs_even_split"],
    }
    if "cluster (2 workers)" in results:
        summary["cluster_vs_j2"] = round(results["cluster (2 workers)"]["median_s"] / parallel - 1, 3)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"archive: {len(files)} captures, {total_mb:,.0f} MB; {os.cpu_count()} cores; "
          f"load average at the end {summary['load_average_at_end']}")
    for name, result in results.items():
        print(f"  {name:<20} median {result['median_s']:6.2f} s  runs {result['runs_s']}  "
              f"same events as -j 1: {result['same_events_as_serial']}")
        if "where_time_goes" in result:
            print(f"  {'':<20} {result['where_time_goes']}")
    print(f"speedup -j 2 vs -j 1: {summary['speedup_j2_vs_j1']:.2f}x;  overhead of -j 2 over an even split of "
          f"the analysis: {100 * summary['overhead_j2']:.1f} %")
    if "cluster_vs_j2" in summary:
        print(f"cluster (2 workers) vs -j 2: {100 * summary['cluster_vs_j2']:+.1f} %")


@contextmanager
def _nothing():
    yield None


if __name__ == "__main__":
    main()
