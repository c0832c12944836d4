"""The sensor under stress and misuse: floods, signals, a killed parent, two sensors, bad start-up.

Every test runs the real `netwatch sensor` (capture workers, SQLite, signals) on a veth pair or
a loopback inside network namespaces it creates itself (see test_sensor_system.py); traffic is
crafted with struct and replayed with tcpreplay inside the client namespace.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sensor_system import (
    CLIENT_IP,
    CLIENT_MAC,
    NET,
    REPO,
    SERVER_IP,
    SERVER_MAC,
    NetnsPair,
    SensorProc,
    _ip_checksum,
    _metrics,
    _run,
    netns_available,
    testnet,  # noqa: F401 - the fixture, passed on as `veth`
)

pytestmark = pytest.mark.system


@pytest.fixture
def veth(testnet: NetnsPair) -> NetnsPair:  # noqa: F811
    """The client/server namespace pair of test_sensor_system.py (it creates and removes them)."""
    return testnet


SENSOR_CODE = "from netwatch.sensor.cli import sensor; sensor()"
STOP_BOUND_S = 10.0  # the unit allows 30 s (TimeoutStopSec); the sensor must be well inside it


def _udp_frame(src_mac: str, src_ip: str, payload: bytes, sport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                               socket.inet_aton(src_ip), socket.inet_aton(SERVER_IP)))
    struct.pack_into("!H", ip, 10, _ip_checksum(bytes(ip)))
    return (bytes.fromhex(SERVER_MAC.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
            + bytes(ip) + udp)


def _dns_query(rng: random.Random, names: list[str]) -> bytes:
    questions = b"".join(b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
                         + b"\x00\x00\x01\x00\x01" for name in names)
    return struct.pack("!6H", rng.getrandbits(16), 0x0100, len(names), 0, 0, 0) + questions


def _write_pcap(path: Path, frames: list[bytes]) -> None:
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, frame in enumerate(frames):
            fh.write(struct.pack("<IIII", 1767600000 + n // 1000, n % 1000, len(frame), len(frame)) + frame)


def write_banned_dns_flood(path: Path, packets: int, seed: int = 3) -> None:
    """Queries of 56 random subdomains of alipay.com each (a full 1500-byte frame): every question
    is a detection, so one packet costs the worker milliseconds and one batch seconds."""
    rng = random.Random(seed)
    frames = []
    for _ in range(packets):
        names = [f"{rng.getrandbits(32):08x}.alipay.com" for _ in range(56)]
        frames.append(_udp_frame(CLIENT_MAC, CLIENT_IP, _dns_query(rng, names), rng.randrange(1024, 65536)))
    _write_pcap(path, frames)


def write_mac_flood(path: Path, macs: int, seed: int = 5) -> None:
    """One DNS query from each of `macs` random locally administered MACs: a new device each."""
    rng = random.Random(seed)
    frames = []
    for i in range(macs):
        mac = ":".join(f"{b:02x}" for b in bytes([0x02, 0x14]) + i.to_bytes(4, "big"))
        src = f"{NET}.{20 + i % 200}"
        frames.append(_udp_frame(mac, src, _dns_query(rng, [f"h{rng.getrandbits(24):06x}.example.net"]),
                                 rng.randrange(1024, 65536)))
    _write_pcap(path, frames)


def _need_tcpreplay() -> None:
    if not shutil.which("tcpreplay"):
        pytest.skip("tcpreplay is not installed (Debian package tcpreplay)")


def _free_port() -> int:
    return random.Random(secrets.randbits(32)).randrange(20000, 60000)


# -- SIGTERM under a flood; files the sensor creates -----------------------------------------------

def test_sigterm_stops_a_worker_busy_with_a_dns_flood(veth: NetnsPair, tmp_path: Path) -> None:
    """A crafted flood keeps the worker seconds deep in one batch: SIGTERM must still end the
    sensor well within the unit's 30 s, keeping what was already detected. Also: started with
    umask 022 outside systemd, nothing it creates is world-readable."""
    _need_tcpreplay()
    flood = tmp_path / "dns-flood.pcap"
    write_banned_dns_flood(flood, 1500)
    config = tmp_path / "sensor.toml"
    config.write_text("reminder_interval = 3600\n")
    old_umask = os.umask(0o022)
    try:
        sensor = SensorProc(veth, tmp_path, config)
    finally:
        os.umask(old_umask)
    veth.popen(veth.client_ns, ["tcpreplay", "-i", veth.client_if, "--pps", "3000", "--loop", "0",
                                      str(flood)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert sensor.wait_events(lambda e: e["netwatch"].get("app") == "alipay", 1, timeout=30), "flood not seen"
    time.sleep(3)  # the ring fills: the worker now holds seconds of work in hand

    created = [sensor.db, sensor.db.with_name("netwatch.db-wal"), sensor.db.with_name("netwatch.db.lock"),
               sensor.out, *sorted((tmp_path / "evidence").glob("*.pcap"))]
    modes = {str(p): stat.S_IMODE(p.stat().st_mode) if p.exists() else None for p in created}

    started = time.monotonic()
    sensor.proc.send_signal(signal.SIGTERM)
    code = sensor.proc.wait(timeout=120)
    took = time.monotonic() - started
    print(f"SIGTERM to exit under the DNS flood: {took:.1f} s")
    assert code == 0 and took < STOP_BOUND_S, (code, took)
    assert any(r.get("msg") == "sensor stopped" for r in sensor.logs())
    first = [e for e in sensor.events() if e["netwatch"].get("aggregation", {}).get("reason") == "first_contact"]
    assert [e["netwatch"]["app"] for e in first] == ["alipay"]
    with sqlite3.connect(sensor.db) as db:
        [(counts,)] = db.execute("SELECT counts FROM contacts WHERE device_id = ? AND app = 'alipay'",
                                 (CLIENT_MAC,)).fetchall()
    assert json.loads(counts)["dns_query"] >= 56  # at least the first query's questions were kept
    assert len(modes) >= 5 and all(m is not None and m & 0o007 == 0 for m in modes.values()), modes


# -- one sensor per database; workers die with their parent -----------------------------------------

def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _running(pid: int) -> bool:
    """Exists and is not a zombie (an orphan's zombie waits for a reaper, it holds nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _packet_sockets(net: NetnsPair) -> int:
    """AF_PACKET sockets open in the sensor's namespace (capture handles)."""
    text = _run(net.exec(net.server_ns, ["cat", "/proc/net/packet"])).stdout
    return len(text.splitlines()) - 1


def test_one_sensor_per_database_and_workers_die_with_their_parent(veth: NetnsPair, tmp_path: Path) -> None:
    config = tmp_path / "sensor.toml"
    config.write_text("workers = 2\n")
    sensor = SensorProc(veth, tmp_path, config)

    # a second sensor on the same database refuses before capturing, naming the first one's pid
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    second = subprocess.run(veth.exec(veth.server_ns, [
        sys.executable, "-c", SENSOR_CODE, "-i", veth.server_if, "--db", str(sensor.db), "-o", ""]),
        capture_output=True, text=True, timeout=60, env=env)
    assert second.returncode == 2, second.stderr
    assert f"in use by another netwatch sensor (pid {sensor.proc.pid})" in second.stderr
    assert "Traceback" not in second.stderr and "worker ready" not in second.stderr

    family = _descendants(sensor.proc.pid)  # the two workers and multiprocessing's resource tracker
    workers = {r["pid"] for r in sensor.logs() if r.get("msg") == "worker ready"}
    assert len(workers) == 2 and workers < family, (workers, family)
    assert _packet_sockets(veth) == 2

    os.kill(sensor.proc.pid, signal.SIGKILL)  # what an OOM kill or a crash looks like
    sensor.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_running(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in family if _running(p)}
    assert not survivors, f"processes outlived the killed sensor: {survivors}"
    assert _packet_sockets(veth) == 0

    # a restarted sensor takes the database (the kernel released the lock) and is alone on the link
    restarted = SensorProc(veth, tmp_path, config)
    assert _packet_sockets(veth) == 2
    assert restarted.stop() == 0


# -- bounded parent state -----------------------------------------------------------------------

def test_parent_state_and_database_stay_within_max_devices(veth: NetnsPair, tmp_path: Path) -> None:
    _need_tcpreplay()
    flood = tmp_path / "mac-flood.pcap"
    macs, cap = 1000, 300
    write_mac_flood(flood, macs)
    port = _free_port()
    config = tmp_path / "sensor.toml"
    config.write_text(f"max_devices = {cap}\nmetrics_port = {port}\n")
    sensor = SensorProc(veth, tmp_path, config)
    # slower than the worker's cap per one-second report, so the parent hears of every device
    _run(veth.exec(veth.client_ns, ["tcpreplay", "-i", veth.client_if, "--pps", "250", str(flood)]))
    sensor.wait_log(lambda r: r.get("msg") == "capture statistics" and r.get("candidates", 0) >= macs, 30,
                    "the worker did not see the whole flood")
    deadline = time.monotonic() + 10
    while True:
        text = _metrics(veth, port)
        evicted = float(re.search(r"^netwatch_devices_evicted_total (\S+)$", text, re.M).group(1))
        if evicted >= macs - cap or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    remembered = float(re.search(r"^netwatch_devices (\S+)$", text, re.M).group(1))
    assert evicted > 0 and remembered == cap, text
    assert sensor.stop() == 0
    with sqlite3.connect(sensor.db) as db:
        [(rows,)] = db.execute("SELECT count(*) FROM devices").fetchall()
        [(newest,)] = db.execute("SELECT max(id) FROM devices").fetchall()
    assert rows <= cap
    assert newest == "02:14:00:00:03:e7"  # the last MAC of the flood (index 999) is among those kept


# -- start-up errors: clear, exit 2, before any worker ----------------------------------------------

@pytest.fixture
def bare_ns() -> Iterator[str]:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    ns = f"nwtest-{secrets.token_hex(3)}-b"
    _run(["ip", "netns", "add", ns])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _sensor_in(ns: str, args: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["ip", "netns", "exec", ns, *(prefix or []), sys.executable, "-c", SENSOR_CODE, *args],
                          capture_output=True, text=True, timeout=60, env=env)


def _start_error(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "worker" not in run.stderr, run.stderr
    [line] = [json.loads(x) for x in run.stderr.splitlines() if '"level":"error"' in x]
    assert line["msg"] == "cannot start"
    return line["error"]


def test_start_up_errors_come_before_workers(bare_ns: str, tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "state" / "n.db"), "-o", ""]
    assert _start_error(_sensor_in(bare_ns, ["-i", "nwnosuch0", *db])) == "cannot capture on nwnosuch0: no such device"

    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed (Debian package util-linux)")
    unprivileged = _sensor_in(bare_ns, ["-i", "lo", *db], prefix=["setpriv", "--bounding-set=-net_raw,-net_admin"])
    assert _start_error(unprivileged) == (
        "cannot capture on lo: permission denied: run as root or give the binary cap_net_raw,cap_net_admin "
        "(docs/sensor.md)")

    port = _free_port()
    holder = subprocess.Popen(["ip", "netns", "exec", bare_ns, sys.executable, "-c",
                               f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        busy = _sensor_in(bare_ns, ["-i", "lo", "--metrics-port", str(port), *db])
    finally:
        holder.kill()
        holder.wait()
    assert _start_error(busy) == f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"

    real = tmp_path / "real.db"
    link = tmp_path / "link.db"
    link.symlink_to(real)
    error = _start_error(_sensor_in(bare_ns, ["-i", "lo", "--db", str(link), "-o", ""]))
    assert error.startswith(f"{link}: is a symbolic link") and not real.exists()

    blocker = tmp_path / "file"
    blocker.write_text("")
    error = _start_error(_sensor_in(bare_ns, ["-i", "lo", *db, "--forward", "file:///dev/null",
                                              "--forward-state-dir", str(blocker / "q")]))
    assert error.startswith("cannot open the forwarder queues") and str(blocker) in error
