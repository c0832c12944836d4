"""`netwatch scan --forward`: the alerts of a scan reach a real rsyslogd and a rotating file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.forward.testing import RsyslogServer
from tests.conftest import require_rsyslog_with_tls

REPO = Path(__file__).resolve().parents[1]


def scan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", *args],
                          capture_output=True, cwd=REPO, timeout=120)


def alert_ids() -> list[str]:
    proc = scan("--format", "jsonl")
    return [e["event"]["id"] for e in map(json.loads, proc.stdout.decode().splitlines())
            if e["event"]["kind"] == "alert"]


def test_scan_forwards_every_alert_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "alerts.jsonl"
    proc = scan("--format", "jsonl", "--forward", f"file://{target}", "--forward-state", str(tmp_path / "q"))
    assert proc.returncode == 1, proc.stderr.decode()
    forwarded = [json.loads(line)["event"]["id"] for line in target.read_text().splitlines()]
    assert forwarded == alert_ids()


@pytest.mark.system
def test_scan_forwards_every_alert_to_rsyslog_over_tcp(tmp_path: Path) -> None:
    require_rsyslog_with_tls()
    server = RsyslogServer(tmp_path / "rsyslog")
    server.start()
    try:
        url = server.url("tcp", "json")
        proc = scan("--format", "jsonl", "--forward", url, "--forward-state", str(tmp_path / "q"))
        assert proc.returncode == 1, proc.stderr.decode()
        expected = alert_ids()
        lines = server.wait_lines("tcp", len(expected))
    finally:
        server.stop()
    received = []
    for line in lines:
        text = line.decode()
        received.append(json.loads(text[text.index("{"):])["event"]["id"])
    assert received == expected


def test_bad_forward_url_is_a_usage_error(tmp_path: Path) -> None:
    proc = scan("--forward", "gopher://example", "--forward-state", str(tmp_path))
    assert proc.returncode == 2
    assert "gopher://example" in proc.stderr.decode()
