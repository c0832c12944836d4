"""Sensor building blocks without capture: config, SQLite state, aggregation, evidence pcaps, health."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netwatch.sensor.alerts import REASON_FIRST, REASON_REMINDER, AlertAggregator, annotate, event_key
from netwatch.sensor.cli import check_health, parse_since
from netwatch.sensor.config import ConfigError, SensorConfig, build_config, load_config_file, option_names
from netwatch.sensor.evidence import EvidenceRing
from netwatch.sensor.state import Contact, DeviceRecord, StateDB, StateError

REPO = Path(__file__).resolve().parents[1]


def alert_event(device: str = "02:13:00:00:00:10", app: str = "alipay", name: str = "openapi.alipay.com",
                evidence: str = "dns_query", confidence: str = "high") -> dict:
    return {
        "@timestamp": "2026-01-05T09:00:03.250000Z",
        "event": {"kind": "alert", "dataset": "netwatch.detection"},
        "netwatch": {"evidence": evidence, "name": name, "app": app, "app_name": "Alipay",
                     "confidence": confidence, "signature": f"{app}:suffix:alipay.com",
                     "device": {"id": device, "hostname": None, "vendor": None}},
        "source": {"ip": "10.213.0.10", "mac": device.upper().replace(":", "-")},
    }


# -- config ---------------------------------------------------------------------------------------

def test_config_file_sets_every_option_and_cli_wins(tmp_path: Path) -> None:
    conf = tmp_path / "sensor.toml"
    conf.write_text(
        'interfaces = ["eth1", "eth2"]\nworkers = 2\nbpf = "udp or tcp"\nreminder-interval = 60\n'
        'promisc = false\nsignatures = "/etc/netwatch/overlay"\nmetrics_port = 9110\n'
        '[sensor]\ndb = "/tmp/x.db"\n')
    cfg = build_config(conf, {"workers": 3, "interfaces": (), "bpf": None})
    assert cfg.interfaces == ["eth1", "eth2"]
    assert cfg.workers == 3  # CLI beats file
    assert cfg.bpf == "udp or tcp"
    assert cfg.reminder_interval == 60.0 and isinstance(cfg.reminder_interval, float)
    assert cfg.promisc is False
    assert cfg.signatures == ["/etc/netwatch/overlay"]
    assert cfg.metrics_port == 9110
    assert cfg.db == "/tmp/x.db"


def test_every_option_is_a_cli_option() -> None:
    from netwatch.sensor.cli import sensor

    cli_names = {p.name for p in sensor.params}
    missing = set(option_names()) - cli_names
    assert not missing, f"options settable only in the file: {missing}"


@pytest.mark.parametrize(("text", "message"), [
    ("workers = 'two'", "workers: expected an integer"),
    ("colour = 'red'", "unknown option 'colour'"),
    ("interfaces = [1]", "interfaces: expected a list of strings"),
    ("promisc = 1", "promisc: expected true or false"),
    ("workers = ", "sensor.toml"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "sensor.toml"
    conf.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config_file(conf)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="no interface"):
        build_config(None, {})
    with pytest.raises(ConfigError, match="PACKET_FANOUT"):
        build_config(None, {"interfaces": ("any",), "workers": 2})
    assert SensorConfig(interfaces=["eth0"]).reminder_interval == 3600.0


# -- state database -------------------------------------------------------------------------------

def test_state_roundtrip_wal_and_concurrent_reader(tmp_path: Path) -> None:
    db_path = tmp_path / "state" / "netwatch.db"
    db = StateDB(db_path)
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    dev = DeviceRecord(id="02:13:00:00:00:10", first_seen=100.0, last_seen=100.0)
    dev.merge({"mac": "02:13:00:00:00:10", "ips": ["10.213.0.10"], "hostname": "alice", "last_seen": 150.0})
    contact = Contact("02:13:00:00:00:10", "alipay", 100.0, 100.0, app_name="Alipay")
    contact.add(120.0, "dns_query", "openapi.alipay.com", "high")
    contact.add(130.0, "tls_sni", "openapi.alipay.com", "medium")
    db.write_batch([dev], [contact], [(120.0, dev.id, "alipay", REASON_FIRST, {"message": "x"})])
    reader = StateDB(db_path, readonly=True)  # a second connection, as `netwatch devices` uses
    [row] = reader.devices()
    assert row["macs"] == ["02:13:00:00:00:10"] and row["ips"] == ["10.213.0.10"]
    assert row["hostname"] == "alice" and row["last_seen"] == 150.0
    app = row["apps"]["alipay"]
    assert app["counts"] == {"dns_query": 1, "tls_sni": 1}
    assert app["confidence"] == "high" and app["names"] == ["openapi.alipay.com"]
    assert reader.devices(app="wechat_pay") == []
    assert reader.devices(since=200.0) == []
    assert len(reader.devices(since=125.0, min_confidence="high")) == 1
    assert reader.alert_history()[0]["reason"] == REASON_FIRST
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM devices")
    reader.close()
    db.close()
    again = StateDB(db_path)
    assert again.load_contacts()[("02:13:00:00:00:10", "alipay")].counts == {"dns_query": 1, "tls_sni": 1}


def test_retention_prunes_old_rows_only(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "n.db")
    now = 10 * 86400.0
    old = Contact("old", "alipay", 0.0, 1.0)
    new = Contact("new", "alipay", now - 10, now - 10)
    db.write_batch([DeviceRecord("old", 0.0, 1.0), DeviceRecord("new", now - 10, now - 10)], [old, new],
                   [(1.0, "old", "alipay", REASON_FIRST, {}), (now - 10, "new", "alipay", REASON_FIRST, {})])
    assert db.prune(retention_days=5, now=now) == 3
    assert [d["id"] for d in db.devices(only_flagged=False)] == ["new"]
    assert db.prune(retention_days=0, now=now) == 0


def test_unwritable_database_raises_state_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a path below a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StateError, match="file"):
            StateDB(blocker / "netwatch.db")
    else:
        tmp_path.chmod(0o500)
        with pytest.raises(StateError):
            StateDB(tmp_path / "sub" / "netwatch.db")
    with pytest.raises(StateError, match="no such database"):
        StateDB(tmp_path / "missing.db", readonly=True)


# -- aggregation ----------------------------------------------------------------------------------

def test_first_contact_then_repeats_then_reminder() -> None:
    agg = AlertAggregator(reminder_interval=3600)
    first = agg.offer(alert_event(), 1000.0)
    assert first.reason == REASON_FIRST
    for i in range(50):
        assert agg.offer(alert_event(evidence="tls_sni"), 1001.0 + i).reason is None
    assert agg.repeats == 50
    reminder = agg.offer(alert_event(), 1000.0 + 3600)
    assert reminder.reason == REASON_REMINDER
    assert reminder.contact.counts == {"dns_query": 2, "tls_sni": 50}
    assert reminder.contact.alerts == 2
    assert agg.offer(alert_event(), 1000.0 + 3601).reason is None
    # another device, another app: each its own first contact
    assert agg.offer(alert_event(device="02:13:00:00:00:11"), 5000.0).reason == REASON_FIRST
    assert agg.offer(alert_event(app="wechat_pay"), 5000.0).reason == REASON_FIRST
    out = annotate(alert_event(), REASON_REMINDER, reminder.contact)
    assert out["netwatch"]["aggregation"]["count"] == 53  # 1 + 50 repeats + reminder + 1 more
    assert out["netwatch"]["app"] == "alipay"


def test_aggregation_survives_restart_through_contacts() -> None:
    agg = AlertAggregator(reminder_interval=3600)
    agg.offer(alert_event(), 1000.0)
    restored = AlertAggregator(dict(agg.contacts), reminder_interval=3600)
    assert restored.offer(alert_event(), 1500.0).reason is None
    assert restored.offer(alert_event(), 4600.0).reason == REASON_REMINDER


def test_events_without_app_pass_through() -> None:
    blind = {"netwatch": {"evidence": "ech", "app": None, "device": {"id": "x"}}}
    assert event_key(blind) is None
    assert AlertAggregator().offer(blind, 1.0).reason == "passthrough"


# -- evidence pcap --------------------------------------------------------------------------------

def _read_pcap(path: Path) -> tuple[int, list[tuple[int, int, bytes]]]:
    raw = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", raw, 0)
    assert magic == 0xA1B2C3D4
    out, off = [], 24
    while off < len(raw):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", raw, off)
        out.append((sec, usec, raw[off + 16: off + 16 + incl]))
        off += 16 + incl
    return linktype, out


def test_evidence_ring_rotates_and_bounds_files(tmp_path: Path) -> None:
    ring = EvidenceRing(tmp_path / "ev", max_bytes=4096, max_files=3)
    frame = b"\x02" * 12 + b"\x08\x00" + b"E" * 986  # 1000-byte Ethernet-ish frame
    path, first = ring.write([(1700000000.25, 1, frame)])
    assert first == 1
    for i in range(20):
        ring.write([(1700000001.0 + i, 1, frame)])
    p2, _ = ring.write([(1700000100.0, 101, b"\x45" + b"\x00" * 39)])  # other link type: new file
    ring.close()
    files = sorted((tmp_path / "ev").glob("evidence-*.pcap"))
    assert len(files) == 3
    linktype, packets = _read_pcap(p2)
    assert linktype == 101 and len(packets) == 1
    linktype, packets = _read_pcap(files[0])
    assert linktype == 1 and packets[0][2] == frame
    assert path is not None


@pytest.mark.system
def test_evidence_pcap_opens_in_tshark(tmp_path: Path) -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed (Debian package tshark)")
    from scapy.all import DNS, DNSQR, IP, UDP, Ether

    pkt = bytes(Ether(src="02:13:00:00:00:10") / IP(src="10.213.0.10", dst="10.213.0.2") / UDP(sport=5353 + 1,
                dport=53) / DNS(qd=DNSQR(qname="openapi.alipay.com")))
    ring = EvidenceRing(tmp_path, max_files=2)
    path, _ = ring.write([(1700000000.5, 1, pkt)])
    ring.close()
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "dns.qry.name", "-e", "eth.src"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["openapi.alipay.com", "02:13:00:00:00:10"]


# -- health and CLI helpers -----------------------------------------------------------------------

def test_health_reports_missing_stale_and_fresh_heartbeat(tmp_path: Path) -> None:
    db_path = tmp_path / "n.db"
    ok, report = check_health(str(db_path))
    assert not ok and "cannot read" in report["problem"]
    db = StateDB(db_path)
    ok, report = check_health(str(db_path))
    assert not ok and "no heartbeat" in report["problem"]
    beat = {"state": "running", "pid": os.getpid(), "ts": 1000.0, "workers": 1, "interfaces": ["veth0"],
            "workers_alive": 1, "stats_interval": 30, "totals": {"kernel_dropped": 0, "frames": 5}}
    db.set_meta("heartbeat", beat)
    ok, report = check_health(str(db_path), now=1010.0)
    assert ok, report
    ok, report = check_health(str(db_path), now=1000.0 + 3600)
    assert not ok and "old" in report["problem"]
    db.set_meta("heartbeat", {**beat, "workers_alive": 0})
    ok, report = check_health(str(db_path), now=1010.0)
    assert not ok and "workers alive" in report["problem"]
    db.set_meta("heartbeat", {**beat, "state": "stopped"})
    assert not check_health(str(db_path), now=1010.0)[0]


def test_health_command_exit_codes(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "n.db")
    db.set_meta("heartbeat", {"state": "running", "pid": os.getpid(), "ts": time.time(), "workers": 1,
                              "interfaces": ["x"], "workers_alive": 1, "stats_interval": 30, "totals": {}})
    code = "from netwatch.sensor.cli import health; health()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code, "--db", str(tmp_path / "n.db")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["healthy"] is True
    run = subprocess.run([sys.executable, "-c", code, "--db", str(tmp_path / "none.db")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 1 and json.loads(run.stdout)["healthy"] is False


def test_parse_since() -> None:
    assert parse_since("24h", now=100000.0) == 100000.0 - 86400
    assert parse_since("2026-01-05T00:00:00Z") == parse_since("2026-01-05")
