"""Decoder fast path: for every frame it gives exactly what the general path gives (Segment and counters).

The fast path (Decoder._fast) takes the common shapes: Ethernet with at most one 802.1Q tag, Linux cooked
v1/v2 or raw IP, then IPv4 without options/fragmentation or IPv6 without extension headers, then TCP or
UDP. Frames are built with scapy, randomly, including shapes the fast path must hand on (options,
extension headers, fragments, tunnel ports, QinQ, snap-length cuts, Ethernet padding, length fields 0).
"""

from __future__ import annotations

import itertools
import random
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

from netwatch.capture.files import open_capture
from netwatch.decode import linktypes as lt
from netwatch.decode.decoder import Decoder
from netwatch.model import RawPacket

LINKS = ["ether", "ether_vlan", "ether_qinq", "sll", "sll_other", "sll2", "sll2_long_addr", "raw", "raw12", "ip_link"]
# Shapes the fast path must hand to the general path (or, for cut and padding, decode the same way).
ODDITIES = [
    "ip_options",  # IPv4 options / IPv6 hop-by-hop header
    "first_fragment",  # IPv4 MF / IPv6 atomic fragment header
    "later_fragment",  # IPv4 fragment offset > 0
    "ip_length_zero",  # TSO captures, jumbograms
    "ip_length_short",  # total length shorter than the headers
    "cut",  # snap length
    "padding",  # Ethernet padding / trailing bytes beyond the IP length
    "tunnel_port",  # UDP to VXLAN / GTP-U / Geneve with a real inner frame
    "udp_length_long",
    "udp_length_short",
    "tcp_offset_short",  # data offset below 5
    "tcp_offset_long",  # data offset beyond the segment
    "wrong_ip_version",  # the version nibble disagrees with the link layer
]
TUNNEL_PAYLOADS = {
    4789: bytes.fromhex("0800000000000100"),  # VXLAN, I flag, VNI 1, then an Ethernet frame
    6081: bytes.fromhex("0000655800000100"),  # Geneve version 0, no options, Ethernet payload
}
_INNER_ETHERNET = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=53) / b"inner")
_INNER_IP = _INNER_ETHERNET[14:]


def _address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


def build_frame(link: str, version: int, tcp: bool, oddities: frozenset[str], rnd) -> tuple[int, bytes]:
    """One frame of the given shape; `rnd` (random.Random or a hypothesis-backed stand-in) picks the values."""
    payload = rnd.randbytes(rnd.randrange(0, 48))
    if tcp:
        transport = TCP(
            sport=rnd.randrange(0x10000),
            dport=rnd.randrange(0x10000),
            seq=rnd.randrange(1 << 32),
            ack=rnd.randrange(1 << 32),
            flags=rnd.randrange(0x200),
        )
        if rnd.random() < 0.5:
            transport.options = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
        if "tcp_offset_short" in oddities:
            transport.dataofs = rnd.randrange(5)
        elif "tcp_offset_long" in oddities:
            transport.dataofs = 15
    else:
        dport = rnd.randrange(0x10000)
        if "tunnel_port" in oddities:
            dport = rnd.choice([4789, 2152, 6081])
            if dport == 2152:  # GTPv1-U G-PDU (3GPP TS 29.281) carrying an IP packet
                payload = struct.pack("!BBHI", 0x30, 0xFF, len(_INNER_IP), 1) + _INNER_IP
            else:
                payload = TUNNEL_PAYLOADS[dport] + _INNER_ETHERNET
        transport = UDP(sport=rnd.randrange(0x10000), dport=dport)
        if "udp_length_long" in oddities:
            transport.len = 8 + len(payload) + rnd.randrange(1, 9)
        elif "udp_length_short" in oddities:
            transport.len = rnd.randrange(0, 8 + len(payload))
    if version == 4:
        ip = IP(
            src=_address(socket.AF_INET, rnd.randbytes(4)),
            dst=_address(socket.AF_INET, rnd.randbytes(4)),
            id=rnd.randrange(0x10000),
            flags=rnd.choice(["", "DF"]),
        )
        if "ip_options" in oddities:
            ip.options = [IPOption_RR()]
        if "first_fragment" in oddities:
            ip.flags = "MF"
        if "later_fragment" in oddities:
            ip.frag = rnd.randrange(1, 64)
        if "ip_length_zero" in oddities:
            ip.len = 0
        elif "ip_length_short" in oddities:
            ip.len = rnd.randrange(1, 20)
        inner = ip / transport / payload
    else:
        ip6 = IPv6(
            src=_address(socket.AF_INET6, rnd.randbytes(16)),
            dst=_address(socket.AF_INET6, rnd.randbytes(16)),
            fl=rnd.randrange(1 << 20),
        )
        if "ip_length_zero" in oddities:
            ip6.plen = 0
        elif "ip_length_short" in oddities:
            ip6.plen = rnd.randrange(1, 8)
        layer = ip6
        if "ip_options" in oddities:
            layer = layer / IPv6ExtHdrHopByHop()
        if "first_fragment" in oddities or "later_fragment" in oddities:
            layer = layer / IPv6ExtHdrFragment(m=0, offset=0, id=7)  # atomic: decoded, not held
        inner = layer / transport / payload
    data = bytes(inner)
    if "wrong_ip_version" in oddities:
        data = bytes([(10 - version) << 4 | (data[0] & 0x0F)]) + data[1:]
    ethertype = 0x0800 if version == 4 else 0x86DD
    mac = rnd.randbytes(12)
    if link in ("ether", "ether_vlan", "ether_qinq"):
        header = mac + struct.pack("!H", ethertype)
        if link == "ether_vlan":  # priority and DEI bits at random: they must not leak into the VLAN id
            header = mac + struct.pack("!HHH", 0x8100, rnd.randrange(0x10000), ethertype)
        elif link == "ether_qinq":
            header = bytes(Ether(dst=mac[:6].hex(":"), src=mac[6:].hex(":")) / Dot1AD(vlan=5) / Dot1Q(vlan=6))
            header = header[:-2] + struct.pack("!H", ethertype)
        linktype = lt.LINKTYPE_ETHERNET
    elif link in ("sll", "sll_other"):
        hatype = 1 if link == "sll" else 772  # ARPHRD_ETHER; ARPHRD_LOOPBACK
        header = bytes(CookedLinux(lladdrtype=hatype, lladdrlen=6, src=mac[:6] + b"\0\0", proto=ethertype))
        linktype = lt.LINKTYPE_LINUX_SLL
    elif link in ("sll2", "sll2_long_addr"):
        length = 6 if link == "sll2" else 8
        header = bytes(CookedLinuxV2(proto=ethertype, lladdrtype=1, lladdrlen=length, src=mac[:8]))
        linktype = lt.LINKTYPE_LINUX_SLL2
    else:
        header = b""
        linktype = {"raw": lt.LINKTYPE_RAW, "raw12": lt.LINKTYPE_DLT_RAW_12}.get(link)
        if linktype is None:
            linktype = lt.LINKTYPE_IPV4 if version == 4 else lt.LINKTYPE_IPV6
    frame = header + data
    if "cut" in oddities:
        frame = frame[: rnd.randrange(len(frame) + 1)]
    if "padding" in oddities:
        frame += rnd.randbytes(rnd.randrange(1, 24))
    return linktype, frame


def _assert_same(linktype: int, frame: bytes, label: object) -> None:
    pkt = RawPacket(11, 1234.5, linktype, frame)
    fast, general = Decoder(), Decoder(fast_path=False)
    assert fast.decode(pkt) == general.decode(pkt), label
    assert fast.counters == general.counters, label


SHAPES = [
    (link, version, tcp)
    for link in LINKS
    for version in (4, 6)
    for tcp in (True, False)
]


def test_every_shape_and_oddity_decodes_the_same_on_both_paths():
    """The whole grid, deterministically: each shape plain, with each oddity, and with each pair of them."""
    rnd = random.Random(13)
    singles = [frozenset([oddity]) for oddity in ODDITIES]
    combos = [frozenset(), *singles, *(frozenset(pair) for pair in itertools.combinations(ODDITIES, 2))]
    for link, version, tcp in SHAPES:
        for oddities in combos:
            for _ in range(2 if oddities else 6):
                linktype, frame = build_frame(link, version, tcp, oddities, rnd)
                _assert_same(linktype, frame, (link, version, tcp, sorted(oddities), frame.hex()))


class _DrawnRandom:
    """random.Random's few methods used by build_frame, answered by hypothesis (so it can shrink)."""

    def __init__(self, data) -> None:
        self._data = data

    def randrange(self, start: int, stop: int | None = None) -> int:
        if stop is None:
            start, stop = 0, start
        return self._data.draw(st.integers(start, stop - 1))

    def randbytes(self, size: int) -> bytes:
        return self._data.draw(st.binary(min_size=size, max_size=size))

    def random(self) -> float:
        return self._data.draw(st.sampled_from([0.25, 0.75]))

    def choice(self, items):
        return self._data.draw(st.sampled_from(items))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.sampled_from(SHAPES),
    oddities=st.frozensets(st.sampled_from(ODDITIES), max_size=3),
    data=st.data(),
)
def test_fast_and_general_paths_agree_on_random_frames(shape, oddities, data):
    link, version, tcp = shape
    linktype, frame = build_frame(link, version, tcp, oddities, _DrawnRandom(data))
    _assert_same(linktype, frame, (shape, sorted(oddities)))


def test_plain_common_shapes_take_the_fast_path():
    """Guards the point of the fast path: the shapes it exists for must not fall back to the slow one."""
    rnd = random.Random(5)
    for link, version, tcp in SHAPES:
        if link == "ether_qinq":
            continue
        for oddities in (frozenset(), frozenset(["padding"])):
            linktype, frame = build_frame(link, version, tcp, oddities, rnd)
            if tcp or linktype != lt.LINKTYPE_ETHERNET or oddities:  # UDP padding is cut by the IP length
                seg = Decoder()._fast(RawPacket(1, 0.0, linktype, frame))
                assert seg is not None, (link, version, tcp, sorted(oddities))
                assert seg == Decoder(fast_path=False).decode(RawPacket(1, 0.0, linktype, frame))


def test_fast_path_fields_of_a_tagged_ipv6_tcp_frame():
    packet = (
        Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
        / Dot1Q(vlan=42)
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / TCP(sport=50000, dport=443, seq=123456, flags="PA")
        / b"\x16\x03\x01"
    )
    decoder = Decoder()
    seg = decoder._fast(RawPacket(9, 1.5, lt.LINKTYPE_ETHERNET, bytes(packet)))
    assert (seg.transport, seg.src_ip, seg.dst_ip, seg.src_port, seg.dst_port) == (
        "tcp", "2001:db8::1", "2001:db8::2", 50000, 443,
    )
    assert (seg.src_mac, seg.dst_mac, seg.vlan, seg.ip_version) == ("02:00:00:00:00:0a", "02:00:00:00:00:0b", (42,), 6)
    assert (seg.payload, seg.tcp_seq, seg.tcp_flags, seg.frame, seg.ts) == (b"\x16\x03\x01", 123456, 0x18, 9, 1.5)


def test_snaplen_cut_udp_is_counted_once_by_the_fast_path():
    data = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / (b"q" * 40))[:-10]
    decoder = Decoder()
    seg = decoder._fast(RawPacket(1, 0.0, lt.LINKTYPE_ETHERNET, data))
    assert seg.payload == b"q" * 30
    assert decoder.counters.truncated == 1


def test_address_caches_stay_bounded_and_correct_past_their_size():
    """More distinct hosts than the caches hold: every frame still gets its own addresses."""
    template = bytearray(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53) / b"x"))
    fast, general = Decoder(), Decoder(fast_path=False)
    for host in range(5000):
        template[26:30] = struct.pack("!I", 0x0A000000 + host)  # IPv4 source address
        template[6:12] = struct.pack("!HI", 0x0200, host)  # Ethernet source address
        pkt = RawPacket(host, 0.0, lt.LINKTYPE_ETHERNET, bytes(template))
        seg = fast.decode(pkt)
        assert seg == general.decode(pkt)
        assert seg.src_ip == socket.inet_ntop(socket.AF_INET, bytes(template[26:30]))
    for cache in (fast._ipv4_text, fast._mac_pair_text):
        assert 0 < len(cache) <= 4096


def test_real_captures_decode_the_same_on_both_paths(ndpi_dir):
    """Every frame of every nDPI capture, through one fast and one general decoder (reassembly state too)."""
    checked = 0
    for path in sorted(ndpi_dir.glob("*.pcap*")):
        fast, general = Decoder(), Decoder(fast_path=False)
        with open_capture(path) as capture:
            for pkt in capture:
                assert fast.decode(pkt) == general.decode(pkt), (path.name, pkt.frame)
                checked += 1
        assert fast.counters == general.counters, path.name
    assert checked > 1000


@pytest.mark.parametrize("linktype", [lt.LINKTYPE_ETHERNET, lt.LINKTYPE_LINUX_SLL, lt.LINKTYPE_LINUX_SLL2, 101])
def test_every_truncation_agrees(linktype):
    inner = IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1, dport=80, options=[("MSS", 1460)]) / b"GET /"
    packet = {
        lt.LINKTYPE_ETHERNET: Ether() / Dot1Q(vlan=3) / inner,
        lt.LINKTYPE_LINUX_SLL: CookedLinux(lladdrtype=1, lladdrlen=6) / inner,
        lt.LINKTYPE_LINUX_SLL2: CookedLinuxV2(proto=0x800, lladdrtype=1, lladdrlen=6) / inner,
        101: inner,
    }[linktype]
    data = bytes(packet)
    fast, general = Decoder(), Decoder(fast_path=False)
    for cut in range(len(data) + 1):
        pkt = RawPacket(cut, 0.0, linktype, data[:cut])
        assert fast.decode(pkt) == general.decode(pkt), cut
    assert fast.counters == general.counters
