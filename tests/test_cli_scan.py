"""End-to-end tests of `netwatch scan` on the bundled samples, through the real console entry point."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "pcaps"


EVIDENCE_KINDS = {"dns_query", "tls_sni", "quic_sni", "http_host", "dhcp_hostname", "resolved_ip",
                  "encrypted_dns", "ech", "ip_match"}


def run_scan(*args: str, stdin: bytes | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "netwatch.cli", "scan", *args],
        input=stdin, capture_output=True, cwd=cwd, timeout=120,
    )


def jsonl(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


def truth(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


@pytest.fixture(scope="module")
def office_events() -> list[dict]:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--all")
    assert proc.returncode == 1, proc.stderr.decode()
    return jsonl(proc)


@pytest.mark.parametrize("sample", ["office-lan", "mixed-links"])
def test_every_planted_banned_name_is_reported_for_the_right_device(sample: str) -> None:
    expected = truth(sample)
    capture = next(SAMPLES.glob(f"{sample}.pcap*"))
    proc = run_scan(str(capture.relative_to(REPO)), "--format", "jsonl")
    assert proc.returncode == expected["expected_exit_status"], proc.stderr.decode()
    alerts = [e for e in jsonl(proc) if e["event"]["kind"] == "alert"]
    seen = {(e["netwatch"]["evidence"], e["netwatch"]["name"], e["source"]["ip"], e["netwatch"]["app"])
            for e in alerts}
    for obs in expected["observations"]:
        if not obs["banned"] or obs["evidence"] not in EVIDENCE_KINDS:
            continue  # e.g. the fragmented DNS answer that makes a later resolved_ip possible
        key = (obs["evidence"], obs["name"], obs["source_ip"], obs["app"])
        assert key in seen, f"{sample}: missing {key}; got {sorted(seen)}"
    # and nothing that was planted clean raised an alert
    clean = {(o["evidence"], o["name"]) for o in expected["observations"] if not o["banned"] and o["name"]}
    assert not {(e, n) for e, n, _, _ in seen} & clean


def test_devices_carry_dhcp_names_and_macs(office_events: list[dict]) -> None:
    expected = truth("office-lan")["devices"]
    by_device = {}
    for event in office_events:
        if event["event"]["kind"] == "alert":
            by_device.setdefault(event["netwatch"]["device"]["id"], set()).add(event["netwatch"]["app"])
            if event["netwatch"]["device"]["id"] in expected:
                assert event["host"]["hostname"] == expected[event["netwatch"]["device"]["id"]]["hostname"]
    for mac, device in expected.items():
        assert set(device["apps"]) <= by_device.get(mac, set()), (mac, device["apps"], by_device.get(mac))


def test_event_contract_fields(office_events: list[dict]) -> None:
    """The fixed contract of docs/events.md: these fields exist on every event."""
    assert office_events
    ids = set()
    for event in office_events:
        assert event["@timestamp"].endswith("Z") and "T" in event["@timestamp"]
        assert event["event"]["kind"] in ("alert", "event")
        assert event["event"]["dataset"].startswith("netwatch.")
        ids.add(event["event"]["id"])
        nw = event["netwatch"]
        for key in ("evidence", "name", "app", "app_name", "confidence", "signature", "ech"):
            assert key in nw
        assert nw["evidence"] in EVIDENCE_KINDS
        assert "ip" in event["source"] and "mac" in event["source"]
        assert event["network"]["transport"] in ("tcp", "udp")
        assert event["rule"]["version"]
        assert event["observer"]["product"] == "netwatch"
        if nw["evidence"] == "dns_query":
            assert event["dns"]["question"]["name"] == nw["name"]
        if nw["evidence"] in ("tls_sni", "quic_sni"):
            assert event["tls"]["client"]["server_name"] == nw["name"]
        if nw["evidence"] == "http_host":
            assert event["url"]["domain"] == nw["name"]
    assert len(ids) == len(office_events), "event.id must be unique"


def test_event_ids_are_stable_across_runs(office_events: list[dict]) -> None:
    again = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--all"))
    assert [e["event"]["id"] for e in again] == [e["event"]["id"] for e in office_events]


def test_blind_spots_and_weaker_evidence_are_reported(office_events: list[dict]) -> None:
    kinds = {(e["event"]["dataset"], e["netwatch"]["evidence"]) for e in office_events}
    assert ("netwatch.blind_spot", "encrypted_dns") in kinds
    assert ("netwatch.blind_spot", "ech") in kinds
    resolved = [e for e in office_events if e["netwatch"]["evidence"] == "resolved_ip"]
    assert resolved and all(e["netwatch"]["resolved_from"] for e in resolved)
    # One tier below the name it came from.
    assert {e["netwatch"]["confidence"] for e in resolved} <= {"medium", "low"}
    ech = [e for e in office_events if e["netwatch"]["evidence"] == "ech"]
    assert all(e["netwatch"]["ech"] for e in ech)


def test_all_emits_unmatched_names_as_observations(office_events: list[dict]) -> None:
    plain = {e["netwatch"]["name"] for e in office_events if e["event"]["dataset"] == "netwatch.observation"}
    assert "www.example.com" in plain
    assert "www.wikipedia.org" in plain
    without_all = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl"))
    assert not [e for e in without_all if e["event"]["dataset"] == "netwatch.observation"]


def test_low_tier_vendor_contact_is_an_event_not_an_alert(office_events: list[dict]) -> None:
    video = [e for e in office_events if e["netwatch"]["name"] == "v.qq.com"]
    assert video
    assert {e["event"]["kind"] for e in video} == {"event"}
    assert {e["netwatch"]["confidence"] for e in video} == {"low"}


def test_min_confidence_changes_what_alerts() -> None:
    strict = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--min-confidence", "high"))
    assert {e["netwatch"]["confidence"] for e in strict if e["event"]["kind"] == "alert"} == {"high"}
    loose = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--min-confidence", "low"))
    assert "low" in {e["netwatch"]["confidence"] for e in loose if e["event"]["kind"] == "alert"}


def test_table_output_summarises_devices_and_totals() -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "table")
    assert proc.returncode == 1
    text = proc.stdout.decode()
    for expected in ("alice-laptop", "bob-iphone", "ALERT", "Alipay", "WeChat Pay", "Totals:", "246 packets",
                     "encrypted DNS via dns.google"):
        assert expected in text, expected


def test_csv_output_has_header_and_one_row_per_event(office_events: list[dict]) -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert len(rows) == len(office_events)
    assert rows[0]["event.id"] == office_events[0]["event"]["id"]
    assert {"netwatch.app", "source.mac", "netwatch.evidence"} <= set(rows[0])


def test_clean_capture_exits_zero() -> None:
    proc = run_scan("pcaps/clean.pcap", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr.decode()
    assert not [e for e in jsonl(proc) if e["event"]["kind"] == "alert"]


def test_not_a_capture_is_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    proc = run_scan(str(bogus), "--format", "jsonl")
    assert proc.returncode == 2
    assert f"netwatch: {bogus}: not a pcap or pcapng file" in proc.stderr.decode()


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    proc = run_scan(str(tmp_path / "nope.pcap"), "--format", "jsonl")
    assert proc.returncode == 2
    assert "nope.pcap" in proc.stderr.decode()


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(b"\x00" * 64)
    proc = run_scan(str(bogus), "pcaps/office-lan.pcap", "--format", "jsonl")
    assert proc.returncode == 1  # findings in the good file still drive the status
    assert "not a pcap or pcapng file" in proc.stderr.decode()
    assert any(e["event"]["kind"] == "alert" for e in jsonl(proc))


def test_truncated_capture_is_analysed_up_to_the_damage_with_a_warning() -> None:
    info = truth("truncated")
    proc = run_scan("pcaps/truncated.pcap", "--format", "jsonl")
    assert proc.returncode == info["expected_exit_status"]
    stderr = proc.stderr.decode()
    assert "warning" in stderr and "truncated.pcap" in stderr
    assert str(info["truncated_record_offset"]) in stderr
    assert "Traceback" not in stderr
    assert jsonl(proc)


def test_stdin_and_gzip_inputs(tmp_path: Path) -> None:
    raw = (SAMPLES / "office-lan.pcap").read_bytes()
    reference = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl"))
    via_stdin = jsonl(run_scan("-", "--format", "jsonl", stdin=raw))
    gz = tmp_path / "office.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    via_gzip = jsonl(run_scan(str(gz), "--format", "jsonl"))
    names = sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in reference)
    assert sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in via_stdin) == names
    assert sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in via_gzip) == names


def test_directories_are_walked_and_output_file_written(tmp_path: Path) -> None:
    folder = tmp_path / "caps" / "deeper"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLES / "office-lan.pcap", folder / "a.pcap")
    (tmp_path / "caps" / "README.txt").write_text("not a capture, skipped while walking")
    out = tmp_path / "out.jsonl"
    proc = run_scan(str(tmp_path / "caps"), "--format", "jsonl", "-o", str(out))
    assert proc.returncode == 1, proc.stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events and all(e["netwatch"]["capture"]["file"].endswith("a.pcap") for e in events)


def test_signature_overlay_and_bad_signature_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yaml").write_text("app:\n  id: [unclosed\n")
    proc = run_scan("pcaps/office-lan.pcap", "--signatures", str(bad))
    assert proc.returncode == 2
    assert "broken.yaml:" in proc.stderr.decode()


def test_usage_error_is_exit_2() -> None:
    proc = run_scan("--format", "xml", "pcaps/clean.pcap")
    assert proc.returncode == 2
