"""Decoder fast path: for every frame it gives exactly what the general path gives (Segment and counters).

The fast path (Decoder._fast) takes the common shapes: Ethernet with at most one 802.1Q tag, Linux cooked
v1/v2 or raw IP, then IPv4 without options/fragmentation or IPv6 without extension headers, then TCP or
UDP. Frames are built with scapy, randomly, including shapes the fast path must hand on (options,
extension headers, fragments, tunnel ports, QinQ, snap-length cuts, Ethernet padding, length fields 0).
"""

from __future__ import annotations

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

LINKS = ["ether", "ether_vlan", "ether_qinq", "sll", "sll_other", "sll2", "raw", "raw12", "ipv4_or_ipv6"]
TUNNEL_PORTS = [4789, 2152, 6081]


def _both(pkt: RawPacket) -> tuple[Decoder, Decoder, object, object]:
    fast, general = Decoder(), Decoder(fast_path=False)
    return fast, general, fast.decode(pkt), general.decode(pkt)


def _ip_layer(draw, version: int, oddity: str):
    if version == 4:
        src = socket.inet_ntop(socket.AF_INET, draw(st.binary(min_size=4, max_size=4)))
        dst = socket.inet_ntop(socket.AF_INET, draw(st.binary(min_size=4, max_size=4)))
        layer = IP(src=src, dst=dst, id=draw(st.integers(0, 0xFFFF)), flags=draw(st.sampled_from(["", "DF"])))
        if oddity == "options":
            layer.options = [IPOption_RR()]
        elif oddity == "fragment":
            layer.flags, layer.frag = "MF", 0
        elif oddity == "length_zero":
            layer.len = 0
        return layer
    src = socket.inet_ntop(socket.AF_INET6, draw(st.binary(min_size=16, max_size=16)))
    dst = socket.inet_ntop(socket.AF_INET6, draw(st.binary(min_size=16, max_size=16)))
    layer = IPv6(src=src, dst=dst, fl=draw(st.integers(0, 0xFFFFF)))
    if oddity == "options":
        layer = layer / IPv6ExtHdrHopByHop()
    elif oddity == "fragment":
        layer = layer / IPv6ExtHdrFragment(m=0, offset=0, id=7)  # atomic fragment: decoded, not held
    elif oddity == "length_zero":
        layer.plen = 0
    return layer


@st.composite
def frames(draw) -> tuple[int, bytes, str]:
    """(linktype, frame bytes, the oddity applied or "plain")."""
    link = draw(st.sampled_from(LINKS))
    version = draw(st.sampled_from([4, 6]))
    oddity = draw(
        st.sampled_from(["plain"] * 6 + ["options", "fragment", "length_zero", "cut", "padding", "tunnel_port"])
    )
    ports = st.integers(0, 0xFFFF)
    if draw(st.booleans()):
        transport = TCP(
            sport=draw(ports),
            dport=draw(ports),
            seq=draw(st.integers(0, 0xFFFFFFFF)),
            ack=draw(st.integers(0, 0xFFFFFFFF)),
            flags=draw(st.integers(0, 0x1FF)),
        )
        if draw(st.booleans()):
            transport.options = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
    else:
        dport = draw(st.sampled_from(TUNNEL_PORTS)) if oddity == "tunnel_port" else draw(ports)
        transport = UDP(sport=draw(ports), dport=dport)
    inner = _ip_layer(draw, version, oddity) / transport / draw(st.binary(max_size=48))
    ethertype = 0x0800 if version == 4 else 0x86DD
    mac = draw(st.binary(min_size=12, max_size=12))
    macs = {"dst": mac[:6].hex(":"), "src": mac[6:].hex(":")}
    if link == "ether":
        linktype, packet = lt.LINKTYPE_ETHERNET, Ether(**macs) / inner
    elif link == "ether_vlan":
        # priority and DEI bits set at random: they must not leak into the VLAN id
        tag = Dot1Q(prio=draw(st.integers(0, 7)), id=draw(st.integers(0, 1)), vlan=draw(st.integers(0, 4095)))
        linktype, packet = lt.LINKTYPE_ETHERNET, Ether(**macs) / tag / inner
    elif link == "ether_qinq":
        linktype, packet = lt.LINKTYPE_ETHERNET, Ether(**macs) / Dot1AD(vlan=5) / Dot1Q(vlan=6) / inner
    elif link in ("sll", "sll_other"):
        lladdrtype = 1 if link == "sll" else 772  # ARPHRD_ETHER; ARPHRD_LOOPBACK
        linktype = lt.LINKTYPE_LINUX_SLL
        packet = CookedLinux(lladdrtype=lladdrtype, lladdrlen=6, src=mac[:6] + b"\0\0", proto=ethertype) / inner
    elif link == "sll2":
        linktype = lt.LINKTYPE_LINUX_SLL2
        packet = CookedLinuxV2(proto=ethertype, lladdrtype=1, lladdrlen=6, src=mac[:6] + b"\0\0") / inner
    elif link == "raw":
        linktype, packet = lt.LINKTYPE_RAW, inner
    elif link == "raw12":
        linktype, packet = lt.LINKTYPE_DLT_RAW_12, inner
    else:
        linktype, packet = (lt.LINKTYPE_IPV4 if version == 4 else lt.LINKTYPE_IPV6), inner
    data = bytes(packet)
    if oddity == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif oddity == "padding":
        data += draw(st.binary(min_size=1, max_size=24))
    return linktype, data, oddity


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.integers(1, 1 << 31), st.floats(0, 2e9, allow_nan=False))
def test_fast_and_general_paths_agree(sample, frame, ts):
    linktype, data, _oddity = sample
    pkt = RawPacket(frame, ts, linktype, data)
    fast, general, fast_seg, general_seg = _both(pkt)
    assert fast_seg == general_seg
    assert fast.counters == general.counters


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_plain_common_shapes_take_the_fast_path(sample):
    """Guards the point of the fast path: the shapes it exists for must not fall back to the slow one."""
    linktype, data, oddity = sample
    if oddity not in ("plain", "padding") or (linktype == lt.LINKTYPE_ETHERNET and data[12:14] == b"\x88\xa8"):
        return
    decoder = Decoder()
    seg = decoder._fast(RawPacket(1, 0.0, linktype, data))
    assert seg is not None
    assert seg == Decoder(fast_path=False).decode(RawPacket(1, 0.0, linktype, data))


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
