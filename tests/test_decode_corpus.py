"""Real captures (nDPI test corpus): every frame decodes without exception, 5-tuples agree with tshark,
and TCP stream heads rebuild ClientHellos that span several segments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.utils import RawPcapReader

from netwatch.decode.decoder import Decoder
from netwatch.decode.tcpstream import StreamHeads
from netwatch.model import RawPacket
from tests.conftest import SHARED_PCAPS

CORPUS = SHARED_PCAPS
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="nDPI corpus not present")
CAPTURES = sorted(CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []


def read_frames(path: Path) -> list[RawPacket]:
    """All frames with their link type (pcap: file header; pcapng: per interface)."""
    reader = RawPcapReader(str(path))
    file_linktype = getattr(reader, "linktype", None)
    frames = []
    try:
        for number, (data, meta) in enumerate(reader, 1):
            linktype = getattr(meta, "linktype", None)
            if linktype is None:
                linktype = file_linktype
            ts = (
                meta.sec + meta.usec / 1e6
                if hasattr(meta, "sec")
                else ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            )
            frames.append(RawPacket(number, ts, linktype, data))
    finally:
        reader.close()
    return frames


def decode_all(path: Path) -> tuple[dict[int, tuple], Decoder]:
    decoder = Decoder()
    tuples = {}
    for frame in read_frames(path):
        seg = decoder.decode(frame)
        if seg is not None:
            tuples[frame.frame] = (seg.transport, seg.src_ip, seg.dst_ip, seg.src_port, seg.dst_port)
    return tuples, decoder


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_frame_decodes_without_internal_error(path):
    tuples, decoder = decode_all(path)
    counters = decoder.counters
    assert counters.frames > 0
    assert "internal_error" not in counters.malformed_by_reason
    assert counters.segments == len(tuples)


def tshark_tuples(path: Path) -> dict[int, tuple]:
    """Innermost TCP/UDP 5-tuple per frame as tshark sees it (ICMP errors quoting a packet are skipped)."""
    fields = [
        "frame.number",
        "frame.protocols",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
    ]
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=l"]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    result = {}
    for line in output.splitlines():
        number, protocols, ip_src, ip_dst, ip6_src, ip6_dst, tcp_src, tcp_dst, udp_src, udp_dst = line.split("|")
        chain = protocols.split(":")
        if not (tcp_src or udp_src) or "icmp" in chain or "icmpv6" in chain:
            continue
        inner_v6 = [p for p in chain if p in ("ip", "ipv6")][-1] == "ipv6"
        src, dst = (ip6_src, ip6_dst) if inner_v6 else (ip_src, ip_dst)
        if tcp_src:
            result[int(number)] = ("tcp", src, dst, int(tcp_src), int(tcp_dst))
        else:
            result[int(number)] = ("udp", src, dst, int(udp_src), int(udp_dst))
    return result


TSHARK_FILES = [
    "6in4tunnel.pcap",  # IPv6 in IPv4, ICMPv6 errors
    "badpackets.pcap",  # first fragments cut by the snap length
    "dlt_ppp.pcap",  # PPP link type
    "dns_fragmented.pcap",  # IPv4 reassembly
    "http_ipv6.pcap",
    "quic-v2.pcapng",  # Linux cooked capture
    "quic-fuzz-overflow.pcapng",  # raw IPv4 link type, hostile
    "tls_invalid_reads.pcap",  # GTP-U tunnel
    "iphone.pcap",
]


@pytest.mark.system
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (Debian package tshark)")
@pytest.mark.parametrize("name", TSHARK_FILES)
def test_five_tuples_match_tshark(name):
    path = CORPUS / name
    ours, _ = decode_all(path)
    theirs = tshark_tuples(path)
    assert ours == theirs


# (file, frame completing the ClientHello, handshake length): from
# `tshark -Y tls.handshake.type==1 -T fields -e frame.number -e tls.handshake.length`
CLIENT_HELLOS = [
    ("tls_with_huge_ch.pcapng", 27, 11414),  # spread over 9 TCP segments
    ("tls_2_reasms.pcapng", 2, 395),
    ("tls_2_reasms_b.pcapng", 3, 410),
]


@pytest.mark.parametrize(("name", "frame", "length"), CLIENT_HELLOS)
def test_stream_heads_rebuild_client_hellos_like_tshark(name, frame, length):
    decoder, heads = Decoder(), StreamHeads()
    hellos = []
    for raw in read_frames(CORPUS / name):
        seg = decoder.decode(raw)
        if seg is None or seg.transport != "tcp":
            continue
        head = heads.add(seg)
        if head is None or len(head.data) < 9 or head.data[0] != 0x16 or head.data[5] != 1:
            continue
        handshake_len = int.from_bytes(head.data[6:9], "big")
        if len(head.data) >= 9 + handshake_len:  # whole handshake message present (may span records)
            hellos.append((head.last_frame, handshake_len))
            heads.finish(head.key)
    assert hellos == [(frame, length)]


def test_missing_segment_leaves_a_partial_head_without_error():
    decoder, heads = Decoder(), StreamHeads()
    for raw in read_frames(CORPUS / "tls_missing_ch_frag.pcap"):
        seg = decoder.decode(raw)
        if seg is not None and seg.transport == "tcp":
            heads.add(seg)
    assert heads.counters.out_of_order > 0  # bytes after the missing segment are held, never joined
