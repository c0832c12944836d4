"""TLS ClientHello parser against real captures from nDPI's test corpus, checked with tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from netwatch.protocols.common import Status
from netwatch.protocols.tls import parse_client_hello_stream
from tests.conftest import SHARED_PCAPS

scapy_all = pytest.importorskip("scapy.all")
pytest.importorskip("scapy.contrib.gtp")  # binds UDP 2152: GTP-U tunnelled flows decode too

PCAPS = SHARED_PCAPS

FlowKey = tuple[str, int, str, int]


def _pcap(name: str) -> Path:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def tcp_stream_heads(path: Path) -> dict[FlowKey, bytes]:
    """Each TCP direction's payload from its first byte, in sequence order, up to the first gap."""
    flows: dict[FlowKey, dict] = {}
    for packet in scapy_all.rdpcap(str(path)):
        if scapy_all.TCP not in packet:
            continue
        tcp = packet[scapy_all.TCP]
        ip = tcp.underlayer  # the innermost IP header, inside any tunnel
        flow = flows.setdefault((ip.src, tcp.sport, ip.dst, tcp.dport), {"isn": None, "segments": {}})
        if tcp.flags & 0x02:  # SYN: data starts at ISN + 1
            flow["isn"] = (tcp.seq + 1) & 0xFFFFFFFF
            continue
        payload = bytes(tcp.payload)
        if payload:
            flow["segments"].setdefault(tcp.seq, payload)
    heads = {}
    for key, flow in flows.items():
        segments = flow["segments"]
        if not segments:
            continue
        base = flow["isn"] if flow["isn"] is not None else min(segments)
        stream = bytearray()
        for seq in sorted(segments, key=lambda s: (s - base) & 0xFFFFFFFF):
            offset = (seq - base) & 0xFFFFFFFF
            if offset > len(stream):
                break  # a hole: a lost segment
            stream += segments[seq][len(stream) - offset :]
        heads[key] = bytes(stream)
    return heads


def tshark_snis(path: Path) -> set[str]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tls.handshake.type==1", "-T", "fields", "-e",
         "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return {line.strip() for line in out.splitlines() if line.strip()}


def hellos(path: Path):
    return {key: parse_client_hello_stream(data) for key, data in tcp_stream_heads(path).items()}


@pytest.mark.parametrize(
    ("name", "expected_sni"),
    [
        ("tls_2_reasms.pcapng", "i.instagram.com"),
        ("tls_2_reasms_b.pcapng", "video.fmct2-3.fna.fbcdn.net"),
        ("tls_ech.pcapng", "performance.radar.cloudflare.com"),
    ],
)
def test_reassembled_hellos_match_tshark(name, expected_sni):
    path = _pcap(name)
    results = hellos(path)
    ok = [h for h in results.values() if h.status is Status.OK]
    assert [h.sni for h in ok] == [expected_sni]
    # Every other direction is the server's: NOT_MINE, never an error.
    assert all(h.status is Status.NOT_MINE for h in results.values() if h.status is not Status.OK)
    assert {h.sni for h in ok} == tshark_snis(path)


def test_ech_capture_sets_ech():
    results = hellos(_pcap("tls_ech.pcapng"))
    (hello,) = [h for h in results.values() if h.status is Status.OK]
    assert hello.ech is True
    assert 0xFE0D in hello.extensions
    assert hello.alpn == ("h2", "http/1.1")


def test_huge_hello_without_sni():
    path = _pcap("tls_with_huge_ch.pcapng")
    results = hellos(path)
    (hello,) = [h for h in results.values() if h.status is Status.OK]
    assert hello.sni is None and tshark_snis(path) == set()
    assert hello.extensions == (45, 13, 35, 10, 51, 43, 11, 16, 65281, 23, 21)  # tshark's list
    assert hello.alpn == ("h2", "http/1.1")


def test_missing_fragment_gives_partial_hello_with_sni():
    """The capture lost a segment of a 1.5 KB hello: tshark shows nothing, we report NEED_MORE
    with the SNI that arrived in the first segment."""
    results = hellos(_pcap("tls_missing_ch_frag.pcap"))
    client = [h for h in results.values() if h.status is not Status.NOT_MINE]
    (hello,) = client
    assert hello.status is Status.NEED_MORE
    assert hello.sni == "r1---sn-5f5nxgvh5o-hjul.googlevideo.com"
    assert hello.needed == 1505


def test_invalid_reads_capture():
    """Two malformed hellos (tshark flags both): one without compression methods, one, inside a
    GTP-U tunnel, whose ALPN lengths lie after a good SNI. INVALID keeps the SNI parsed before
    the fault, as tshark shows it."""
    path = _pcap("tls_invalid_reads.pcap")
    results = hellos(path)
    invalid = sorted((h for h in results.values() if h.status is Status.INVALID), key=lambda h: h.sni or "")
    assert [h.sni for h in invalid] == [None, "e.crashlytics.com"]
    assert invalid[1].extensions == (0, 23, 35, 13, 16)  # ALPN (16) is where it breaks
    assert all(h.status is Status.NOT_MINE for h in results.values() if h not in invalid)
    assert {h.sni for h in invalid if h.sni} == tshark_snis(path)
