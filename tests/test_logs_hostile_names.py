"""Names with control characters in JSON logs: printable in every output, and the same name a capture gives.

Suricata writes a query name's odd bytes as JSON `\\u001b` escapes, which decode to real control
characters; printed as they are, a crafted DNS query would drive the terminal of whoever reads
`netwatch logs --format table` (colours, window title, cursor moves).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "evil\x1b[31mred\x1b]0;title\x07\x1b[0m.alipay.com"  # Alipay by its suffix
HOSTILE_SNI = "a\nb\u202e.alipay.com"  # a newline and a right-to-left override


def _eve(event_type: str, body: dict, dport: int, proto: str) -> str:
    return json.dumps({"timestamp": "2026-11-28T10:00:01.250000+0000", "event_type": event_type,
                       "src_ip": "10.2.0.5", "src_port": 40000, "dest_ip": "10.2.0.1", "dest_port": dport,
                       "proto": proto, event_type: body}) + "\n"


def _netwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", *args], cwd=REPO, capture_output=True,
                          timeout=120)


@pytest.fixture
def eve_log(tmp_path: Path) -> Path:
    path = tmp_path / "eve.json"
    path.write_text(_eve("dns", {"version": 2, "type": "query", "id": 1, "rrname": HOSTILE, "rrtype": "A"}, 53, "UDP")
                    + _eve("tls", {"sni": HOSTILE_SNI, "version": "TLS 1.3"}, 443, "TCP"))
    return path


def test_table_output_holds_no_control_characters(eve_log: Path) -> None:
    done = _netwatch("logs", str(eve_log), "--format", "table", "--all")
    assert done.returncode == 1, done.stderr
    text = done.stdout.decode()
    assert "Alipay" in text
    assert not [c for c in text if (ord(c) < 0x20 and c != "\n") or ord(c) == 0x7F or c == "\u202e"], text


def test_log_names_match_what_a_capture_gives(eve_log: Path, tmp_path: Path) -> None:
    scapy = pytest.importorskip("scapy.all", reason="scapy builds the capture (pip install scapy)")
    capture = tmp_path / "same.pcap"
    scapy.wrpcap(str(capture), [scapy.Ether(src="02:00:00:00:00:05") / scapy.IP(src="10.2.0.5", dst="10.2.0.1")
                                / scapy.UDP(sport=40000, dport=53)
                                / scapy.DNS(rd=1, qd=scapy.DNSQR(qname=HOSTILE.encode()))])
    scanned = _netwatch("scan", str(capture), "--format", "jsonl", "-q")
    read = _netwatch("logs", str(eve_log), "--format", "jsonl", "-q")
    assert scanned.returncode == 1 and read.returncode == 1, (scanned.stderr, read.stderr)
    from_capture = {json.loads(line)["netwatch"]["name"] for line in scanned.stdout.splitlines()}
    from_log = [json.loads(line)["netwatch"]["name"] for line in read.stdout.splitlines()]
    assert from_capture == {"evil\\027[31mred\\027]0\\;title\\007\\027[0m.alipay.com"}
    assert from_log[0] in from_capture
    assert all(name.isprintable() for name in from_log)
