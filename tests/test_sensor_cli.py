"""`netwatch devices` / `health` on real SQLite files, the state database's safety rules, and the
files shipped for operators (systemd unit, example config)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.sensor.alerts import AlertAggregator
from netwatch.sensor.config import SensorConfig, load_config_file, option_names
from netwatch.sensor.state import Contact, DeviceRecord, StateDB, StateError, StateRefused

REPO = Path(__file__).resolve().parents[1]
MAC = "02:13:00:00:00:10"


def run_cli(command: str, *args: str) -> subprocess.CompletedProcess:
    code = f"from netwatch.sensor.cli import {command}; {command}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def make_db(path: Path, hostname: str = "alice", name: str = "openapi.alipay.com", app: str = "alipay") -> Path:
    db = StateDB(path)
    dev = DeviceRecord(id=MAC, first_seen=1767600000.0, last_seen=1767600100.5)
    dev.merge({"mac": MAC, "ips": ["10.213.7.10"], "hostname": hostname})
    contact = Contact(MAC, app, 1767600000.0, 1767600000.0, app_name="Alipay")
    contact.add(1767600050.25, "dns_query", name, "high")
    contact.last_alert = 1767600050.25
    db.write_batch([dev], [contact], [])
    db.close()
    return path


def refused(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and run.stderr.startswith("netwatch: "), run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


# -- devices: foreign files ---------------------------------------------------------------------

def test_devices_on_files_that_are_no_sensor_database(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    refused(run_cli("devices", "--db", str(text)), str(text), "not a netwatch state database")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (a)")
    refused(run_cli("devices", "--db", str(other)), str(other), "no sensor tables")
    refused(run_cli("devices", "--db", str(tmp_path)), str(tmp_path), "is a directory")
    refused(run_cli("devices", "--db", str(tmp_path / "no.db")), "no such database")


def test_devices_opens_a_path_with_uri_characters(tmp_path: Path) -> None:
    """`#` and `?` are part of the file name, not a URI fragment or query."""
    odd = make_db(tmp_path / "site#2?mode=rw.db")
    (tmp_path / "site").write_text("decoy")  # what an unescaped URI would have opened
    run = run_cli("devices", "--db", str(odd), "--format", "jsonl")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["id"] for line in run.stdout.splitlines()] == [MAC]


def test_devices_never_writes_the_database(tmp_path: Path) -> None:
    db = make_db(tmp_path / "n.db")
    before = db.read_bytes()
    assert run_cli("devices", "--db", str(db)).returncode == 0
    assert db.read_bytes() == before


# -- devices: output formats --------------------------------------------------------------------

def test_devices_csv_guards_formula_cells(tmp_path: Path) -> None:
    db = make_db(tmp_path / "n.db", hostname='=HYPERLINK("http://evil.example","x")', name="-1+cmd.alipay.com")
    run = run_cli("devices", "--db", str(db), "--format", "csv")
    assert run.returncode == 0, run.stderr
    [row] = list(csv.DictReader(io.StringIO(run.stdout)))
    assert row["hostname"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["names"] == "'-1+cmd.alipay.com"
    assert row["device"] == MAC and row["app"] == "alipay" and row["first_seen"] == "2026-01-05T08:00:00Z"


def test_devices_jsonl_times_are_rfc3339(tmp_path: Path) -> None:
    db = make_db(tmp_path / "n.db")
    run = run_cli("devices", "--db", str(db), "--format", "jsonl")
    assert run.returncode == 0, run.stderr
    [dev] = [json.loads(line) for line in run.stdout.splitlines()]
    assert dev["first_seen"] == "2026-01-05T08:00:00.000000Z"
    assert dev["last_seen"] == "2026-01-05T08:01:40.500000Z"
    alipay = dev["apps"]["alipay"]
    assert alipay["last_seen"] == alipay["last_alert"] == "2026-01-05T08:00:50.250000Z"
    assert alipay["counts"] == {"dns_query": 1}
    # the old spelling still works and is not advertised
    assert run_cli("devices", "--db", str(db), "--format", "json").stdout == run.stdout
    help_text = run_cli("devices", "--help").stdout
    assert "table|jsonl|csv" in help_text and "json|" not in help_text


def test_devices_app_must_be_a_known_app(tmp_path: Path) -> None:
    db = make_db(tmp_path / "n.db", app="overlay_app")
    run = run_cli("devices", "--db", str(db), "--app", "alipy")
    refused(run, "unknown app 'alipy'", "alipay", "wechat_pay", "vendor:Tencent", "overlay_app")
    ok = run_cli("devices", "--db", str(db), "--app", "overlay_app", "--format", "jsonl")  # from an overlay
    assert ok.returncode == 0 and json.loads(ok.stdout)["id"] == MAC
    none = run_cli("devices", "--db", str(db), "--app", "wechat_pay")
    assert none.returncode == 0 and none.stdout.strip() == "no devices"


def test_health_formats(tmp_path: Path) -> None:
    db = make_db(tmp_path / "n.db")
    run = run_cli("health", "--db", str(db), "--format", "table")
    assert run.returncode == 1
    assert re.search(r"^healthy\s+False$", run.stdout, re.M) and re.search(r"^problem\s+no heartbeat", run.stdout,
                                                                           re.M)
    assert run_cli("health", "--db", str(db), "--format", "text").stdout == run.stdout
    assert json.loads(run_cli("health", "--db", str(db)).stdout)["healthy"] is False
    assert "table|json" in run_cli("health", "--help").stdout


# -- the state database ---------------------------------------------------------------------------

def test_state_db_refuses_a_symlink_unless_asked(tmp_path: Path) -> None:
    real, link = tmp_path / "real.db", tmp_path / "link.db"
    link.symlink_to(real)
    with pytest.raises(StateRefused, match="symbolic link"):
        StateDB(link)
    assert not real.exists()
    StateDB(link, follow_symlink=True).close()
    assert real.exists()


def test_state_db_files_are_private_even_with_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        legacy = tmp_path / "legacy.db"
        legacy.write_bytes(b"")
        legacy.chmod(0o644)  # created by an earlier version
        for path in (tmp_path / "new.db", legacy):
            db = StateDB(path)
            db.set_meta("k", 1)
            files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + ".lock")]
            assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o640" for f in files}
            db.close()
    finally:
        os.umask(old)


def test_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from netwatch.sensor.state import StateDB; "
                               f"db = StateDB({str(path)!r}); print('open', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StateRefused, match=rf"in use by another netwatch sensor \(pid {holder.pid}\)"):
            StateDB(path)
        reader = StateDB(path, readonly=True)  # readers are never locked out
        reader.close()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    StateDB(path).close()  # the lock died with its holder


def test_evicted_rows_leave_the_database_and_trim_applies_caps(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "n.db")
    devices = [DeviceRecord(f"02:00:00:00:00:{i:02x}", float(i), float(i)) for i in range(10)]
    contacts = [Contact(d.id, "alipay", d.first_seen, d.last_seen) for d in devices]
    db.write_batch(devices, contacts, [])
    db.write_batch([], [], [], forget_devices=[devices[0].id], forget_contacts=[(devices[0].id, "alipay")])
    assert len(db.load_devices()) == 9 and len(db.load_contacts()) == 9
    assert db.trim(max_devices=4, max_contacts=3) == 5 + 6
    assert list(db.load_devices()) == [d.id for d in devices[6:]]  # newest kept, least recent first
    assert [k[0] for k in db.load_contacts()] == [d.id for d in devices[7:]]
    with pytest.raises(StateError):
        StateDB(tmp_path, readonly=True)


def test_contact_table_is_an_lru() -> None:
    agg = AlertAggregator(max_contacts=3)

    def event(dev: str) -> dict:
        return {"netwatch": {"app": "alipay", "evidence": "dns_query", "device": {"id": dev}}}

    for i, dev in enumerate(("a", "b", "c")):
        agg.offer(event(dev), float(i))
    agg.offer(event("a"), 3.0)  # touched: now the most recent
    agg.offer(event("d"), 4.0)  # full: evicts the least recently used, b
    assert list(agg.contacts) == [("c", "alipay"), ("a", "alipay"), ("d", "alipay")]
    assert agg.evicted == {("b", "alipay")} and agg.evicted_total == 1
    agg.offer(event("b"), 5.0)  # back again: no longer to be deleted
    assert ("b", "alipay") not in agg.evicted and agg.evicted_total == 2


# -- configuration and shipped files --------------------------------------------------------------

def test_config_value_errors_name_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "sensor.toml"
    conf.write_text('interfaces = ["lo"]\nmax_devices = 0\n')
    refused(run_cli("sensor", "--config", str(conf)), f"{conf}: max_devices must be positive")
    refused(run_cli("sensor", "--config", str(conf), "--max-devices", "-1"), "netwatch: max_devices must be positive")


def test_example_config_covers_every_option_with_its_default(tmp_path: Path) -> None:
    example = REPO / "contrib" / "sensor.toml"
    settings = [line[2:] for line in example.read_text().splitlines() if re.match(r"# [a-z_]+ = ", line)]
    uncommented = tmp_path / "sensor.toml"
    uncommented.write_text("\n".join(settings) + "\n")
    values = load_config_file(uncommented)
    assert sorted(values) == sorted(option_names())
    defaults = SensorConfig()
    differs = {k: v for k, v in values.items() if k not in ("interfaces", "policy", "min_confidence")
               and v != getattr(defaults, k)}
    assert not differs, f"the example shows values that are not the defaults: {differs}"


def test_unit_documentation_is_installed_by_the_documented_steps() -> None:
    unit = (REPO / "contrib" / "systemd" / "netwatch-sensor.service").read_text()
    docs = (REPO / "docs" / "sensor.md").read_text()
    targets = [t for line in unit.splitlines() if line.startswith("Documentation=") for t in line.split("=", 1)[1]
               .split()]
    assert targets
    for target in targets:
        assert target.startswith("file://"), target  # no network needed to read the docs
        installed = target.removeprefix("file://")
        step = re.search(rf"^sudo install .*(docs/\S+) {re.escape(installed)}$", docs, re.M)
        assert step, f"docs/sensor.md does not install {installed}"
        assert (REPO / step.group(1)).is_file()
    assert "netwatch health" in docs and "setpriv" in docs and "contrib/sensor.toml" in docs
