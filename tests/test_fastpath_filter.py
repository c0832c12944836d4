"""The C flow-head classifier (netwatch._fastpath.FlowFilter), packet by packet.

Packets are crafted with scapy; `FlowFilter.admits(linktype, bytes, ts)` runs the same
decision the framer runs for each frame of a file.
"""

from __future__ import annotations

import struct

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, GRE, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from netwatch._fastpath import FlowFilter
from netwatch.model import RawPacket

ETH = 1
PAYLOAD = Raw(b"x" * 100)


def tcp(sport=40000, dport=443, flags="PA", payload=PAYLOAD, src="10.0.0.1", dst="10.0.0.2"):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload


def udp(sport=40000, dport=443, payload=PAYLOAD, src="10.0.0.1", dst="10.0.0.2"):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload


def eth(inner):
    return bytes(Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02") / inner)


def decisions(flow_filter: FlowFilter, frames, linktype=ETH) -> list[bool]:
    return [flow_filter.admits(linktype, frame, float(i)) for i, frame in enumerate(frames)]


def test_bulk_tcp_dropped_after_head_packets_per_direction():
    flow_filter = FlowFilter(head_packets=3, smart=False)
    forward = [eth(tcp()) for _ in range(5)]
    backward = [eth(tcp(sport=443, dport=40000, src="10.0.0.2", dst="10.0.0.1")) for _ in range(4)]
    assert decisions(flow_filter, forward) == [True, True, True, False, False]
    assert decisions(flow_filter, backward) == [True, True, True, False]
    stats = flow_filter.stats()
    assert (stats["admitted"], stats["bulk"], stats["frames"]) == (6, 3, 9)


def test_head_bytes_limit():
    flow_filter = FlowFilter(head_packets=100, head_bytes=250, smart=False)
    assert decisions(flow_filter, [eth(tcp()) for _ in range(4)]) == [True, True, True, False]


def test_syn_resets_the_direction_and_pure_acks_are_dropped():
    flow_filter = FlowFilter(head_packets=2, smart=False)
    frames = [
        eth(tcp()),
        eth(tcp()),
        eth(tcp()),  # bulk
        eth(tcp(flags="A", payload=b"")),  # no payload
        eth(tcp(flags="S", payload=b"")),  # new connection on the same 5-tuple
        eth(tcp(flags="SA", payload=b"", sport=443, dport=40000)),  # SYN-ACK without payload
        eth(tcp()),
        eth(tcp()),
        eth(tcp()),
    ]
    assert decisions(flow_filter, frames) == [True, True, False, False, True, False, True, True, False]
    stats = flow_filter.stats()
    assert (stats["syn"], stats["no_payload"], stats["bulk"]) == (1, 2, 2)


@pytest.mark.parametrize("port", [53, 67, 68, 5353, 5355])
def test_dns_dhcp_mdns_llmnr_always_admitted(port):
    flow_filter = FlowFilter(head_packets=1)
    frames = [eth(udp(sport=port, dport=port)) for _ in range(20)]
    assert all(decisions(flow_filter, frames))
    # DNS over TCP has no exemption: the head rule applies
    assert decisions(FlowFilter(head_packets=1), [eth(tcp(dport=53))] * 3) == [True, False, False]


def test_udp_head_rule():
    assert decisions(FlowFilter(head_packets=2), [eth(udp())] * 4) == [True, True, False, False]


def test_vlan_id_is_part_of_the_flow_key():
    flow_filter = FlowFilter(head_packets=1)
    inner = tcp()
    frames = [eth(Dot1Q(vlan=10) / inner), eth(Dot1Q(vlan=20) / inner), eth(Dot1Q(vlan=10) / inner)]
    assert decisions(flow_filter, frames) == [True, True, False]


ENCAPSULATIONS = {
    "vlan": lambda inner: eth(Dot1Q(vlan=7) / inner),
    "qinq": lambda inner: eth(Dot1AD(vlan=100) / Dot1Q(vlan=7) / inner),
    "qinq_9100": lambda inner: bytes(Ether(type=0x9100) / Dot1Q(vlan=100) / inner),
    "mpls": lambda inner: eth(MPLS(label=16, s=0) / MPLS(label=17, s=1) / inner),
    "mpls_pw_ethernet": lambda inner: eth(MPLS(label=16, s=1) / Raw(b"\0\0\0\0") / Ether() / inner),
    "pppoe": lambda inner: eth(PPPoE(sessionid=1) / PPP(proto=0x0021) / inner),
    "gre": lambda inner: eth(IP(src="1.1.1.1", dst="2.2.2.2") / GRE() / inner),
    "gre_key_seq_csum": lambda inner: eth(
        IP(src="1.1.1.1", dst="2.2.2.2") / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5) / inner
    ),
    "gre_ethernet": lambda inner: eth(IP(src="1.1.1.1", dst="2.2.2.2") / GRE(proto=0x6558) / Ether() / inner),
    "vxlan": lambda inner: eth(
        IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=1234, dport=4789) / VXLAN(vni=5) / Ether() / inner
    ),
    "ipip": lambda inner: eth(IP(src="1.1.1.1", dst="2.2.2.2", proto=4) / inner),
    "ipip_in_vlan_in_gre": lambda inner: eth(
        IP(src="1.1.1.1", dst="2.2.2.2") / GRE(proto=0x6558) / Ether() / Dot1Q(vlan=3) / IP(proto=4) / inner
    ),
}


@pytest.mark.parametrize("name", sorted(ENCAPSULATIONS))
def test_tunnels_classified_by_the_inner_flow(name):
    wrap = ENCAPSULATIONS[name]
    flow_filter = FlowFilter(head_packets=2)
    flow_a = [wrap(tcp(sport=1111)) for _ in range(3)]
    flow_b = [wrap(tcp(sport=2222)) for _ in range(3)]
    dns = [wrap(udp(dport=53)) for _ in range(5)]
    # two inner flows behind the same tunnel endpoints are separate flows
    assert decisions(flow_filter, flow_a + flow_b) == [True, True, False, True, True, False]
    # an inner DNS flow is always admitted, so the classifier looked inside the tunnel
    assert all(decisions(flow_filter, dns))
    assert flow_filter.stats()["always"] == 5


def test_6in4_inner_ipv6_flow():
    def wrap(inner):
        return eth(IP(src="1.1.1.1", dst="2.2.2.2") / inner)

    flow_filter = FlowFilter(head_packets=1)
    inner_a = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1, dport=443, flags="PA") / PAYLOAD
    inner_b = IPv6(src="2001:db8::1", dst="2001:db8::3") / TCP(sport=1, dport=443, flags="PA") / PAYLOAD
    assert decisions(flow_filter, [wrap(inner_a), wrap(inner_a), wrap(inner_b)]) == [True, False, True]


def test_tunnel_depth_is_bounded():
    packet = tcp()
    for _ in range(6):
        packet = IP(src="1.1.1.1", dst="2.2.2.2", proto=4) / packet
    flow_filter = FlowFilter()
    assert flow_filter.admits(ETH, eth(packet))  # too deep: undecodable, Python decides
    assert flow_filter.stats()["undecodable"] == 1


def test_ipv6_extension_headers_are_walked():
    ext = IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt()
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    flow_filter = FlowFilter(head_packets=1)
    dns = [eth(ip6 / ext / UDP(sport=5000, dport=53) / PAYLOAD) for _ in range(3)]
    web = [eth(ip6 / ext / TCP(sport=5000, dport=443, flags="PA") / PAYLOAD) for _ in range(2)]
    assert decisions(flow_filter, dns + web) == [True, True, True, True, False]
    assert flow_filter.stats()["always"] == 3


def test_fragments_admitted():
    flow_filter = FlowFilter(head_packets=0)  # would drop every TCP/UDP packet with payload
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    frames = [
        eth(IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", proto=17) / Raw(b"a" * 64)),
        eth(IP(src="10.0.0.1", dst="10.0.0.2", frag=8, proto=17) / Raw(b"b" * 64)),
        eth(ip6 / IPv6ExtHdrFragment(m=1, id=7) / UDP(dport=9999) / PAYLOAD),
        eth(udp()),
    ]
    assert decisions(flow_filter, frames) == [True, True, True, False]
    assert flow_filter.stats()["fragments"] == 3


def test_non_ip_other_protocols_undecodable_and_unknown_link():
    flow_filter = FlowFilter()
    assert not flow_filter.admits(ETH, bytes(Ether() / ARP()))
    assert not flow_filter.admits(ETH, eth(IP() / ICMP()))
    assert not flow_filter.admits(ETH, eth(IP(proto=50) / Raw(b"esp" * 10)))
    assert flow_filter.admits(ETH, eth(tcp())[:30])  # truncated IPv4 header
    assert flow_filter.admits(ETH, b"\x01\x02")
    assert flow_filter.admits(147, bytes(20))  # a link type the filter does not decode
    stats = flow_filter.stats()
    assert (stats["non_ip"], stats["other_proto"], stats["undecodable"], stats["unknown_linktype"]) == (
        1,
        2,
        2,
        1,
    )


def _dns4() -> bytes:
    return bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=53) / PAYLOAD)


def _dns6() -> bytes:
    return bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=5000, dport=53) / PAYLOAD)


LINK_FRAMES = {
    "sll": (113, lambda: bytes(CookedLinux(proto=0x0800) / IP(_dns4()))),
    "sll2": (276, lambda: bytes(CookedLinuxV2(proto=0x86DD) / IPv6(_dns6()))),
    "raw": (101, _dns4),
    "raw_dlt12": (12, _dns6),
    "raw_dlt14": (14, _dns4),
    "ipv4": (228, _dns4),
    "ipv6": (229, _dns6),
    "null_host_order": (0, lambda: struct.pack("<I", 2) + _dns4()),
    "null_other_order_v6": (0, lambda: struct.pack(">I", 30) + _dns6()),
    "loop": (108, lambda: struct.pack(">I", 24) + _dns6()),
    "ppp": (9, lambda: b"\xff\x03\x00\x21" + _dns4()),
    "ppp_no_address_control": (9, lambda: b"\x00\x57" + _dns6()),
    "ppp_compressed_protocol": (9, lambda: b"\x21" + _dns4()),
    "ppp_hdlc": (50, lambda: b"\xff\x03\x00\x21" + _dns4()),
    "ppp_with_dir": (204, lambda: b"\x01\xff\x03\x00\x21" + _dns4()),
}


@pytest.mark.parametrize("name", sorted(LINK_FRAMES))
def test_link_types_decoded(name):
    linktype, build = LINK_FRAMES[name]
    flow_filter = FlowFilter()
    assert flow_filter.admits(linktype, build())
    assert flow_filter.stats()["always"] == 1  # decoded down to UDP port 53


def test_non_ip_on_other_link_types():
    flow_filter = FlowFilter()
    assert not flow_filter.admits(0, struct.pack("<I", 7) + bytes(40))  # AF 7: not IP
    assert not flow_filter.admits(9, b"\xff\x03\xc0\x21" + bytes(20))  # PPP LCP
    assert not flow_filter.admits(113, bytes(CookedLinux(proto=0x0806) / ARP()))
    assert flow_filter.stats()["non_ip"] == 3


def test_eviction_keeps_the_table_fixed():
    flow_filter = FlowFilter(max_flows=8, head_packets=1)
    table_bytes = flow_filter.stats()["table_bytes"]
    frames = [eth(tcp(sport=1000 + i)) for i in range(500)]
    assert all(decisions(flow_filter, frames))
    stats = flow_filter.stats()
    assert stats["table_bytes"] == table_bytes
    assert stats["flows_active"] <= 8
    assert stats["flows_evicted"] >= 492
    # an evicted flow starts over: its head is admitted again
    assert flow_filter.admits(ETH, frames[0], 1000.0)


def test_idle_flow_starts_over():
    flow_filter = FlowFilter(head_packets=1, idle_timeout=60.0)
    frame = eth(tcp())
    assert flow_filter.admits(ETH, frame, 0.0)
    assert not flow_filter.admits(ETH, frame, 30.0)
    assert not flow_filter.admits(ETH, frame, 89.0)  # 59 s since last seen
    assert flow_filter.admits(ETH, frame, 150.0)


def test_admit_all():
    flow_filter = FlowFilter(admit_all=True, head_packets=0)
    assert all(decisions(flow_filter, [bytes(Ether() / ARP()), eth(tcp()), b""]))


def test_bad_arguments():
    with pytest.raises(ValueError):
        FlowFilter(max_flows=0)
    with pytest.raises(ValueError):
        FlowFilter(idle_timeout=-1.0)


def _batch(frames: list[bytes], start: float = 100.0) -> tuple[bytes, bytes]:
    """packet_bytes and meta as pcapy-ng's next_batch returns them."""
    data, meta = b"", b""
    for i, frame in enumerate(frames):
        meta += struct.pack("=IIII", int(start) + i, 250000, len(data), len(frame))
        data += frame
    return data, meta


def test_filter_batch():
    flow_filter = FlowFilter(head_packets=1)
    frames = [eth(tcp()), eth(tcp()), bytes(Ether() / ARP()), eth(udp(dport=53))]
    data, meta = _batch(frames)
    packets = flow_filter.filter_batch(ETH, data, meta, 41)
    assert packets == [RawPacket(41, 100.25, ETH, frames[0]), RawPacket(44, 103.25, ETH, frames[3])]
    assert all(type(p) is RawPacket for p in packets)
    assert flow_filter.stats()["frames"] == 4


def test_filter_batch_rejects_meta_outside_the_data():
    data, meta = _batch([eth(tcp())])
    with pytest.raises(ValueError):
        FlowFilter().filter_batch(ETH, data[:-1], meta, 1)
    with pytest.raises(ValueError):
        FlowFilter().filter_batch(ETH, data, meta[:-1], 1)


def test_filter_batch_with_pcapy_next_batch(ndpi_dir):
    pcapy = pytest.importorskip("pcapy")
    from netwatch.capture.files import open_capture

    path = ndpi_dir / "android.pcap"
    reader = pcapy.open_offline(str(path))
    batched, frame = [], 1
    flow_filter = FlowFilter()
    while True:
        data, meta = reader.next_batch(64)
        if not meta:
            break
        batched += flow_filter.filter_batch(reader.datalink(), data, meta, frame)
        frame += len(meta) // 16
    with open_capture(path, flow_filter=FlowFilter()) as cap:
        framed = list(cap)
    assert [(p.frame, p.data) for p in batched] == [(p.frame, p.data) for p in framed]
    assert [p.ts for p in batched] == pytest.approx([p.ts for p in framed], abs=1e-6)


def test_default_head_keeps_a_clienthello_split_over_twelve_segments(ndpi_dir):
    from netwatch.capture.files import open_capture

    # tshark: the ClientHello of tls_with_huge_ch.pcapng (11.4 kB) is reassembled from these frames
    clienthello_frames = {8, 11, 12, 15, 16, 17, 18, 23, 24, 25, 26, 27}
    with open_capture(ndpi_dir / "tls_with_huge_ch.pcapng", flow_filter=FlowFilter()) as cap:
        admitted = {p.frame for p in cap}
    assert clienthello_frames <= admitted
    assert len(admitted) < cap.frames / 4  # and the bulk of the transfer is still dropped


def test_set_packet_type_accepts_only_plain_namedtuples():
    from typing import NamedTuple

    from netwatch import _fastpath

    class Other(NamedTuple):
        a: int
        b: float
        c: int
        d: bytes

    with pytest.raises(TypeError):
        _fastpath.set_packet_type(dict)
    with pytest.raises(TypeError):
        _fastpath.set_packet_type(RawPacket.__new__)
    data, meta = _batch([eth(udp(dport=53))])
    _fastpath.set_packet_type(Other)
    try:
        assert type(FlowFilter().filter_batch(ETH, data, meta, 1)[0]) is Other
    finally:
        _fastpath.set_packet_type(RawPacket)
    assert type(FlowFilter().filter_batch(ETH, data, meta, 1)[0]) is RawPacket
