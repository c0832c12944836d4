"""QUIC Initial decryption against real captures from nDPI's test corpus, checked with tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from netwatch.protocols.common import Status
from netwatch.protocols.quic import QuicInitialAssembler, looks_like_initial, parse_initial_datagram
from tests.conftest import SHARED_PCAPS

scapy_all = pytest.importorskip("scapy.all")

PCAPS = SHARED_PCAPS


def _pcap(name: str) -> Path:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


def udp_datagrams(path: Path):
    """(client key, payload, ts) of every UDP datagram, IP fragments reassembled."""
    packets = scapy_all.defragment(scapy_all.rdpcap(str(path)))
    for packet in packets:
        if scapy_all.UDP not in packet:
            continue
        udp = packet[scapy_all.UDP]
        ip = udp.underlayer
        yield (ip.src, udp.sport, ip.dst, udp.dport), bytes(udp.payload), float(packet.time)


def tshark_quic_snis(path: Path) -> set[str]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "quic", "-T", "fields", "-e", "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return {name for line in out.splitlines() for name in line.strip().split(",") if name}


def assembled(path: Path):
    assembler = QuicInitialAssembler()
    results = []
    for key, payload, ts in udp_datagrams(path):
        hello = assembler.add(key, payload, ts)
        if hello is not None:
            results.append((key, hello))
    return assembler, results


@pytest.mark.parametrize(
    ("name", "version", "sni", "alpn"),
    [
        ("quic-29.pcap", 0xFF00001D, "localhost", ("h3-29",)),
        ("quic-v2.pcapng", 0x6B3343CF, "test", ("h3",)),
    ],
)
def test_single_packet_hellos_match_tshark(name, version, sni, alpn):
    path = _pcap(name)
    _assembler, results = assembled(path)
    assert [(h.status, h.sni, h.alpn) for _key, h in results] == [(Status.OK, sni, alpn)]
    assert {h.sni for _key, h in results} == tshark_quic_snis(path)
    versions = {p.version for _k, d, _t in udp_datagrams(path) for p in parse_initial_datagram(d)}
    assert version in versions


def test_quic29_retry_then_server_chosen_dcid():
    """quic-29.pcap: Initial, Retry, Initial with token to the Retry's SCID, then the client's
    Initial to the server's chosen DCID (keys still from the post-Retry DCID). Once the hello is
    out the connection is done and later packets cost nothing."""
    assembler, results = assembled(_pcap("quic-29.pcap"))
    assert len(results) == 1
    assert assembler.stats.ignored_done >= 3


def test_clienthello_split_over_two_initials():
    path = _pcap("quic_frags_ch_in_multiple_packets.pcapng")
    datagrams = [(k, d, t) for k, d, t in udp_datagrams(path)]
    crypto = [p.crypto for p in parse_initial_datagram(datagrams[0][1]) + parse_initial_datagram(datagrams[1][1])]
    assert [[(off, len(data)) for off, data in c] for c in crypto] == [[(0, 1182)], [(1182, 396)]]  # tshark
    _assembler, results = assembled(path)
    ((_key, hello),) = results
    assert hello.status is Status.OK
    assert hello.sni is None and tshark_quic_snis(path) == set()
    assert hello.alpn[:2] == ("h3-34", "hq-34") and len(hello.alpn) == 18
    # Reversed arrival gives the same hello.
    reverse = QuicInitialAssembler()
    assert reverse.add(datagrams[1][0], datagrams[1][1], 0.0) is None
    assert reverse.add(datagrams[0][0], datagrams[0][1], 0.0) == hello


@pytest.mark.parametrize("name", ["quic.pcap", "youtube_quic.pcap"])
def test_google_quic_is_not_ietf_quic(name):
    """Google QUIC (Q0xx versions) carries no IETF Initial: nothing to decrypt, nothing raised."""
    path = _pcap(name)
    assert not any(looks_like_initial(d) for _k, d, _t in udp_datagrams(path))
    _assembler, results = assembled(path)
    assert results == [] and tshark_quic_snis(path) == set()


def test_fuzzed_overflow_capture_does_not_crash():
    path = _pcap("quic-fuzz-overflow.pcapng")
    datagrams = list(udp_datagrams(path))
    for _key, payload, _ts in datagrams:
        assert parse_initial_datagram(payload) == []
    _assembler, results = assembled(path)
    assert results == []
