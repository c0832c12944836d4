"""Names with bytes that are not hostname characters are still matched, and no output lets them escape."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

scapy_all = pytest.importorskip("scapy.all")
from scapy.all import DNS, DNSQR, IP, TCP, UDP, Ether, Raw, wrpcap  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

HOSTILE_LABELS = [
    b"a\nb",  # a forged second line
    b"x\r\n<13>Jan  1 00:00:00 host forged: hi",
    b'q"uote',
    b"semi;colon\\back",
    b"=cmd|' /C calc'!A0",  # spreadsheet formula
    b"nul\x00byte",
    b"\xff\xfe\xc3\xa9",  # not UTF-8
]


def hostile_capture(path: Path) -> None:
    packets = []
    for i, label in enumerate(HOSTILE_LABELS):
        qname = label + b".mobilegw.alipay.com."
        packets.append(
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="192.0.2.50", dst="192.0.2.1")
            / UDP(sport=40000 + i, dport=53)
            / DNS(id=i, rd=1, qd=DNSQR(qname=qname))
        )
    # An HTTP Host header with a control byte and a formula start.
    request = b"GET / HTTP/1.1\r\nHost: -2+3\x07.dl.wps.cn\r\nUser-Agent: x\r\n\r\n"
    packets.append(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="192.0.2.50", dst="203.0.113.9")
        / TCP(sport=41000, dport=80, flags="PA", seq=1000)
        / Raw(request)
    )
    for t, pkt in enumerate(packets):
        pkt.time = 1767603600 + t
    wrpcap(str(path), packets)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    hostile_capture(path)
    return path


def scan(capture: Path, fmt: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", str(capture), "--format", fmt],
                          capture_output=True, cwd=REPO, timeout=60)


def test_hostile_dns_names_still_match_and_stay_one_json_line_each(capture: Path) -> None:
    proc = scan(capture, "jsonl")
    assert proc.returncode == 1, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    events = [json.loads(line) for line in lines]
    dns_events = [e for e in events if e["netwatch"]["evidence"] == "dns_query"]
    assert len(dns_events) == len(HOSTILE_LABELS), "every hostile query is one event on one line"
    for event in dns_events:
        assert event["netwatch"]["app"] == "alipay"
        name = event["netwatch"]["name"]
        assert name.endswith(".mobilegw.alipay.com")
        assert all(0x20 <= ord(ch) < 0x7F for ch in name), name
    names = {e["netwatch"]["name"] for e in dns_events}
    assert "a\\010b.mobilegw.alipay.com" in names
    assert "nul\\000byte.mobilegw.alipay.com" in names


def test_hostile_http_host_is_escaped(capture: Path) -> None:
    events = [json.loads(line) for line in scan(capture, "jsonl").stdout.decode().splitlines()]
    http = [e for e in events if e["netwatch"]["evidence"] == "http_host"]
    assert len(http) == 1 and http[0]["netwatch"]["app"] == "wps_office"
    assert "\x07" not in http[0]["netwatch"]["name"]


def test_csv_rows_stay_rows_and_formulas_are_defused(capture: Path) -> None:
    text = scan(capture, "csv").stdout.decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(HOSTILE_LABELS) + 1
    for row in rows:
        for value in row.values():
            assert "\n" not in value and "\r" not in value
            assert not value.startswith(("=", "+", "-", "@"))
    assert any(r["netwatch.name"].startswith("'=cmd") for r in rows)
    assert any(r["netwatch.name"].startswith("'-2+3") for r in rows)


def test_table_has_no_raw_control_characters(capture: Path) -> None:
    text = scan(capture, "table").stdout.decode()
    assert "Alipay" in text
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in text)
