"""`netwatch scan --cluster`: the same tasks on a real Dask distributed cluster on loopback.

A `dask scheduler` and two `dask worker` processes (random ports, torn down after) run the
scan; the result must equal a serial scan. Inputs are read through fsspec URLs as well as
paths. A worker killed in the middle of a file has the task retried on a worker; a file whose
task dies twice is reported by name and makes the exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from captures_for_scale import SlowCapture, busy_capture, reused_tuple_pair

distributed = pytest.importorskip("distributed", reason="needs Dask: pip install 'netwatch[cluster]'")

REPO = Path(__file__).resolve().parents[1]
NDPI = REPO.parent / "shared" / "pcaps" / "ndpi"


def _dask(*args: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """A scheduler and two workers (each with a nanny that restarts it), all on 127.0.0.1."""
    yield from _start_cluster(tmp_path_factory.mktemp("dask"))


@pytest.fixture
def own_cluster(tmp_path_factory) -> Iterator[dict]:
    """A cluster for one test that kills workers."""
    yield from _start_cluster(tmp_path_factory.mktemp("dask"))


def _start_cluster(work: Path) -> Iterator[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO),
           # a task whose worker dies is retried once, then reported (KilledWorker)
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    scheduler_file = work / "scheduler.json"
    processes = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                       "--scheduler-file", str(scheduler_file), log=work / "scheduler.log", env=env)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, (work / "scheduler.log").read_text()
            time.sleep(0.2)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for number in range(2):
            processes.append(_dask("worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                   "--no-dashboard", "--name", f"w{number}", "--local-directory", str(work),
                                   log=work / f"worker{number}.log", env=env))
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield {"address": address, "processes": processes, "work": work}
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def scan(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", *args],
                          capture_output=True, cwd=REPO, timeout=timeout)


def sorted_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return sorted(proc.stdout.decode().splitlines())


def table(proc: subprocess.CompletedProcess) -> str:
    text = re.sub(r"\d[\d,]* candidates parsed", "N candidates parsed", proc.stdout.decode())
    return re.sub(r", [\d.]+ s \([\d,]+ packets/s\)", "", text)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    generated = tmp_path_factory.mktemp("generated")
    reused_tuple_pair(generated)
    busy_capture(generated / "busy.pcap", sessions=60)
    inputs = ["pcaps", str(generated)]
    if NDPI.is_dir():
        inputs.append(str(NDPI))
    return inputs


def test_cluster_gives_the_serial_result(cluster, corpus):
    serial = scan("-q", "-j", "1", "--format", "jsonl", "--all", *corpus)
    remote = scan("--cluster", cluster["address"], "--format", "jsonl", "--all", *corpus)
    assert remote.returncode == serial.returncode == 1, remote.stderr.decode()
    assert sorted_lines(remote) == sorted_lines(serial)
    progress = [line for line in remote.stderr.decode().splitlines() if line.startswith("netwatch: [")]
    files = [line for line in serial.stderr.decode().splitlines()]
    assert len(progress) >= 10 and progress[-1].startswith(f"netwatch: [{len(progress)}/{len(progress)}]")
    assert any("office-lan.pcap: 246 packets, 16 alert(s)" in line for line in progress), progress
    assert all(line in remote.stderr.decode() for line in files)  # the same warnings


def test_cluster_table(cluster, corpus):
    serial = scan("-j", "1", "--format", "table", *corpus)
    remote = scan("-q", "--cluster", cluster["address"], "--format", "table", *corpus)
    assert remote.returncode == 1, remote.stderr.decode()
    assert table(remote) == table(serial)


def test_cluster_runs_the_parts_of_a_split_file(cluster, corpus):
    busy = str(Path(corpus[1]) / "busy.pcap")
    serial = scan("-q", "-j", "1", "--format", "jsonl", "--all", busy)
    remote = scan("--cluster", cluster["address"], "--chunk-size", "40K", "--chunk-overlap", "8K",
                  "--format", "jsonl", "--all", busy)
    assert remote.returncode == serial.returncode == 1, remote.stderr.decode()
    assert sorted_lines(remote) == sorted_lines(serial)
    assert re.search(r"busy.pcap \(part (\d+)/\1\)", remote.stderr.decode())  # more than one part, all run


def test_fsspec_urls(cluster, corpus):
    generated = Path(corpus[1]).resolve()
    serial = scan("-q", "-j", "1", "--format", "jsonl", str(generated))
    remote = scan("-q", "--cluster", cluster["address"], "--format", "jsonl", f"file://{generated}")
    assert remote.returncode == serial.returncode == 1, remote.stderr.decode()
    as_paths = [line.replace(f'"file://{generated}', f'"{generated}') for line in remote.stdout.decode().splitlines()]
    assert sorted(as_paths) == sorted_lines(serial)


def test_worker_killed_mid_file_is_retried(own_cluster, tmp_path):
    cluster = own_cluster
    source, _ = busy_capture(tmp_path / "source.pcap", sessions=30)
    expected = scan("-q", "-j", "1", "--format", "jsonl", str(source))
    slow = SlowCapture(tmp_path / "capture.pcap", source.read_bytes(), kills=1)
    remote = scan("--cluster", cluster["address"], "--format", "jsonl", str(slow.path), timeout=240)
    slow.join()
    assert len(slow.readers) == 1
    assert remote.returncode == expected.returncode == 1, remote.stderr.decode()
    assert sorted(line.replace("capture.pcap", "source.pcap") for line in remote.stdout.decode().splitlines()) \
        == sorted_lines(expected)


def test_file_failing_twice_is_reported_by_name(own_cluster, tmp_path):
    cluster = own_cluster
    source, _ = busy_capture(tmp_path / "source.pcap", sessions=10)
    slow = SlowCapture(tmp_path / "doomed.pcap", source.read_bytes(), kills=2, then_serve=False)
    clean = Path("pcaps/clean.pcap")
    remote = scan("--cluster", cluster["address"], "--format", "jsonl", str(clean), str(slow.path), timeout=240)
    assert len(slow.readers) == 2
    assert remote.returncode == 2, remote.stderr.decode()
    stderr = remote.stderr.decode()
    assert f"{slow.path}: failed twice on the cluster" in stderr
    assert "KilledWorker" in stderr
    assert "clean.pcap: " in stderr  # the other file was analysed and reported
    os.unlink(slow.path)


def test_unreachable_scheduler_is_an_input_error():
    proc = scan("--cluster", "tcp://127.0.0.1:9", "pcaps/clean.pcap", timeout=120)
    assert proc.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def test_standard_input_cannot_go_to_a_cluster(cluster):
    proc = scan("--cluster", cluster["address"], "-", timeout=120)
    assert proc.returncode == 2
    assert "standard input cannot be scanned on a cluster" in proc.stderr.decode()
