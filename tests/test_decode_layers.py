"""Decoder: every link type and encapsulation, crafted with scapy, and hostile truncations of each."""

from __future__ import annotations

import struct

import pytest
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import (
    ARP,
    GRE,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Ether,
)
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN

from netwatch.decode import linktypes as lt
from netwatch.decode.decoder import MAX_TUNNELS, Decoder
from netwatch.model import RawPacket, Segment

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
MAC_IN_A = "02:00:00:00:01:0a"
MAC_IN_B = "02:00:00:00:01:0b"


def eth(src: str = MAC_A, dst: str = MAC_B) -> Ether:
    return Ether(src=src, dst=dst)


def ip4_tcp(payload: bytes = b"GET / HTTP/1.1\r\n", src: str = "10.1.1.1", dst: str = "10.2.2.2"):
    return IP(src=src, dst=dst) / TCP(sport=40000, dport=80, seq=1000, flags="PA") / payload


def ip6_udp(payload: bytes = b"\x12\x34dns", src: str = "2001:db8::1", dst: str = "2001:db8::2"):
    return IPv6(src=src, dst=dst) / UDP(sport=5353, dport=53) / payload


def decode(data, linktype: int = lt.LINKTYPE_ETHERNET, decoder: Decoder | None = None) -> Segment | None:
    decoder = decoder or Decoder()
    return decoder.decode(RawPacket(7, 1234.5, linktype, bytes(data)))


def decode_counting(data, linktype: int = lt.LINKTYPE_ETHERNET) -> tuple[Segment | None, Decoder]:
    decoder = Decoder()
    return decode(data, linktype, decoder), decoder


# -- plain Ethernet, IPv4, IPv6 -------------------------------------------------------------------


def test_ethernet_ipv4_tcp_all_fields():
    seg = decode(eth() / ip4_tcp(b"hello"))
    assert seg == Segment(
        frame=7,
        ts=1234.5,
        transport="tcp",
        src_ip="10.1.1.1",
        dst_ip="10.2.2.2",
        src_port=40000,
        dst_port=80,
        payload=b"hello",
        src_mac=MAC_A,
        dst_mac=MAC_B,
        tcp_seq=1000,
        tcp_flags=0x18,
        vlan=(),
        ip_version=4,
    )


def test_ethernet_padding_is_cut_by_ip_total_length():
    frame = bytes(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"ab")
    padded = frame + b"\x00" * (60 - len(frame))
    seg = decode(padded)
    assert seg.payload == b"ab"


def test_ipv4_options_are_skipped():
    seg = decode(eth() / IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR()]) / UDP() / b"payload")
    assert seg.payload == b"payload"
    assert seg.transport == "udp"


def test_ipv4_total_length_zero_uses_captured_bytes():
    packet = eth() / IP(src="10.0.0.1", dst="10.0.0.2", len=0) / TCP(sport=1, dport=2) / b"tso-data"
    seg = decode(packet)
    assert seg.payload == b"tso-data"


def test_snaplen_cut_decodes_what_was_captured_and_counts_it():
    frame = bytes(eth() / ip4_tcp(b"A" * 100))
    seg, decoder = decode_counting(frame[:-40])
    assert seg.payload == b"A" * 60
    assert decoder.counters.truncated == 1
    assert decoder.counters.malformed == 0


def test_ipv6_udp_with_extension_headers():
    packet = (
        eth()
        / IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=5353, dport=53)
        / b"query"
    )
    seg = decode(packet)
    assert (seg.src_ip, seg.dst_ip, seg.src_port, seg.dst_port) == ("2001:db8::1", "2001:db8::2", 5353, 53)
    assert seg.payload == b"query"
    assert seg.ip_version == 6


def test_ipv6_mobility_and_ah_headers_are_walked():
    # Mobility header (135): next header, length 0 (8 bytes), MH type, reserved, checksum, 2 bytes data.
    mobility = bytes([6, 0, 0, 0, 0, 0, 0, 0])
    tcp = bytes(TCP(sport=1, dport=443, flags="S", seq=7))
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51)
    packet = eth() / ip6 / AH(nh=135, payloadlen=4, icv=b"\x00" * 12) / (mobility + tcp)
    seg = decode(packet)
    assert seg is not None
    assert (seg.transport, seg.dst_port, seg.tcp_seq, seg.tcp_flags) == ("tcp", 443, 7, 0x02)


def test_ipv4_ah_is_skipped():
    seg = decode(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / AH(nh=17, payloadlen=4, icv=b"\0" * 12) / UDP() / b"x")
    assert seg.payload == b"x"


def test_ipv6_no_next_header_is_other_proto():
    seg, decoder = decode_counting(eth() / IPv6(nh=59) / b"")
    assert seg is None
    assert decoder.counters.other_proto == 1


def test_ipv6_extension_chain_is_bounded():
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2")
    for _ in range(13):
        packet = packet / IPv6ExtHdrDestOpt()
    seg, decoder = decode_counting(eth() / packet / UDP() / b"x")
    assert seg is None
    assert decoder.counters.malformed_by_reason == {"ipv6_ext_limit": 1}


def test_truncated_ipv6_extension_is_counted():
    data = bytes(eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt() / UDP())
    seg, decoder = decode_counting(data[: 14 + 40 + 4])
    assert seg is None
    assert decoder.counters.malformed_by_reason == {"truncated_ipv6_ext": 1}


def test_icmp_and_arp_are_counted_not_decoded():
    decoder = Decoder()
    assert decode(eth() / IP() / ICMP(), decoder=decoder) is None
    assert decode(eth() / ARP(), decoder=decoder) is None
    assert (decoder.counters.other_proto, decoder.counters.non_ip, decoder.counters.malformed) == (1, 1, 0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(eth() / IP(ihl=4) / UDP()), "ipv4_header"),
        (bytes(eth() / IP(len=10) / UDP()), "ipv4_length"),
        (bytes(eth() / IP() / TCP(dataofs=4)), "tcp_header"),
        (bytes(eth() / IP() / TCP(dataofs=15)), "tcp_header"),
        (bytes(eth() / IP() / UDP(len=4)), "udp_length"),
        (bytes(eth() / IP() / UDP(len=400) / b"short"), "udp_length"),
        (bytes(Ether(src=MAC_A, dst=MAC_B, type=0x0800)) + b"\x45", "ipv4_header"),
        (bytes(Ether(src=MAC_A, dst=MAC_B, type=0x0800) / IPv6()), "ip_version"),
    ],
)
def test_malformed_reasons(data, reason):
    seg, decoder = decode_counting(data)
    assert seg is None
    assert decoder.counters.malformed_by_reason == {reason: 1}
    assert decoder.counters.malformed == 1


# -- link types -----------------------------------------------------------------------------------


def test_linux_sll_takes_source_mac_from_link_address():
    packet = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=bytes.fromhex("02000000000a") + b"\0\0")
    seg = decode(packet / ip4_tcp(), lt.LINKTYPE_LINUX_SLL)
    assert (seg.src_mac, seg.dst_mac, seg.dst_port) == (MAC_A, None, 80)


def test_linux_sll_non_ether_address_gives_no_mac():
    packet = CookedLinux(pkttype=0, lladdrtype=772, lladdrlen=0, src=b"\0" * 8)
    seg = decode(packet / ip6_udp(), lt.LINKTYPE_LINUX_SLL)
    assert (seg.src_mac, seg.src_ip) == (None, "2001:db8::1")


def test_linux_sll2():
    packet = CookedLinuxV2(
        proto=0x86DD, ifindex=3, lladdrtype=1, pkttype=4, lladdrlen=6, src=bytes.fromhex("02000000000a") + b"\0\0"
    )
    seg = decode(packet / ip6_udp(b"v2"), lt.LINKTYPE_LINUX_SLL2)
    assert (seg.src_mac, seg.payload, seg.dst_port) == (MAC_A, b"v2", 53)


@pytest.mark.parametrize("linktype", [lt.LINKTYPE_RAW, lt.LINKTYPE_DLT_RAW_12, lt.LINKTYPE_DLT_RAW_14])
@pytest.mark.parametrize("version", [4, 6])
def test_raw_ip(linktype, version):
    packet = ip4_tcp() if version == 4 else ip6_udp()
    seg = decode(packet, linktype)
    assert seg.ip_version == version
    assert seg.src_mac is None


def test_ipv4_and_ipv6_link_types():
    assert decode(ip4_tcp(b"4"), lt.LINKTYPE_IPV4).payload == b"4"
    assert decode(ip6_udp(b"6"), lt.LINKTYPE_IPV6).payload == b"6"


@pytest.mark.parametrize("linktype", [lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP])
@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize(("family", "version"), [(2, 4), (24, 6), (28, 6), (30, 6)])
def test_bsd_loopback_families_in_both_byte_orders(linktype, order, family, version):
    packet = ip4_tcp() if version == 4 else ip6_udp()
    seg = decode(family.to_bytes(4, order) + bytes(packet), linktype)
    assert seg.ip_version == version


def test_bsd_loopback_unknown_family_is_non_ip():
    seg, decoder = decode_counting((7).to_bytes(4, "little") + bytes(ip4_tcp()), lt.LINKTYPE_NULL)
    assert seg is None
    assert decoder.counters.non_ip == 1


@pytest.mark.parametrize(
    ("linktype", "prefix"),
    [
        (lt.LINKTYPE_PPP, b""),
        (lt.LINKTYPE_PPP, b"\xff\x03"),
        (lt.LINKTYPE_PPP_HDLC, b"\xff\x03"),
        (lt.LINKTYPE_PPP_WITH_DIR, b"\x01\xff\x03"),
    ],
)
def test_ppp_link_types(linktype, prefix):
    assert decode(prefix + b"\x00\x21" + bytes(ip4_tcp()), linktype).dst_port == 80
    assert decode(prefix + b"\x00\x57" + bytes(ip6_udp()), linktype).dst_port == 53
    assert decode(prefix + b"\x21" + bytes(ip4_tcp()), linktype).dst_port == 80  # compressed protocol


def test_cisco_hdlc():
    seg = decode(b"\x0f\x00\x86\xdd" + bytes(ip6_udp()), lt.LINKTYPE_C_HDLC)
    assert seg.dst_ip == "2001:db8::2"


def test_unsupported_linktype_is_counted():
    seg, decoder = decode_counting(bytes(ip4_tcp()), 147)
    assert seg is None
    assert decoder.counters.unsupported_linktype == 1


def test_llc_snap_ethernet():
    frame = struct.pack("!6s6sH", b"\x02" * 6, b"\x04" * 6, 0) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
    seg = decode(frame + bytes(ip4_tcp()))
    assert seg.src_mac == "04:04:04:04:04:04"


# -- link shims -----------------------------------------------------------------------------------


def test_vlan_stack_collected_outer_to_inner():
    packet = Ether(src=MAC_A, dst=MAC_B) / Dot1AD(vlan=100) / Dot1Q(vlan=200) / ip4_tcp()
    seg = decode(packet)
    assert seg.vlan == (100, 200)
    assert seg.src_mac == MAC_A


def test_old_qinq_ethertype_9100():
    packet = Ether(src=MAC_A, dst=MAC_B, type=0x9100) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / ip6_udp()
    assert decode(packet).vlan == (7, 8)


def test_vlan_depth_is_bounded():
    packet = eth()
    for vid in range(9):
        packet = packet / Dot1Q(vlan=vid + 1)
    seg, decoder = decode_counting(packet / ip4_tcp())
    assert seg is None
    assert decoder.counters.malformed_by_reason == {"vlan_depth": 1}


@pytest.mark.parametrize("inner", [ip4_tcp(), ip6_udp()])
def test_mpls_label_stack(inner):
    seg = decode(eth() / MPLS(label=16, s=0) / MPLS(label=17, s=0) / MPLS(label=18, s=1) / inner)
    assert seg is not None
    assert seg.src_mac == MAC_A  # MPLS is a link shim: the Ethernet header still encloses the IP packet


def test_mpls_pseudowire_with_control_word_reaches_inner_ethernet():
    inner = Ether(src=MAC_IN_A, dst=MAC_IN_B) / Dot1Q(vlan=42) / ip4_tcp()
    seg = decode(eth() / MPLS(label=99, s=1) / (b"\x00\x00\x00\x00" + bytes(inner)))
    assert (seg.src_mac, seg.dst_mac, seg.vlan, seg.dst_port) == (MAC_IN_A, MAC_IN_B, (42,), 80)


def test_mpls_without_bottom_of_stack_is_bounded():
    packet = eth()
    for _ in range(20):
        packet = packet / MPLS(s=0)
    seg, decoder = decode_counting(packet / ip4_tcp())
    assert seg is None
    assert decoder.counters.malformed_by_reason == {"mpls_depth": 1}


def test_pppoe_session_ipv4_and_ipv6():
    v4 = decode(eth() / PPPoE(sessionid=5) / PPP(proto=0x0021) / ip4_tcp())
    v6 = decode(eth() / PPPoE(sessionid=5) / PPP(proto=0x0057) / ip6_udp())
    assert (v4.dst_port, v4.src_mac) == (80, MAC_A)
    assert v6.dst_ip == "2001:db8::2"


# -- tunnels --------------------------------------------------------------------------------------

OUTER = IP(src="192.0.2.1", dst="192.0.2.2")


def test_gre_ipv4_forgets_outer_macs():
    seg = decode(eth() / OUTER / GRE() / ip4_tcp())
    assert (seg.src_ip, seg.src_mac, seg.dst_mac) == ("10.1.1.1", None, None)


def test_gre_with_checksum_key_and_sequence():
    gre = GRE(chksum_present=1, key_present=1, seqnum_present=1, key=5, sequence_number=9, proto=0x86DD)
    seg = decode(eth() / OUTER / gre / ip6_udp())
    assert seg.src_ip == "2001:db8::1"


def test_gre_transparent_ethernet_bridging_keeps_inner_macs():
    inner = Ether(src=MAC_IN_A, dst=MAC_IN_B) / ip4_tcp()
    seg = decode(eth() / OUTER / GRE(proto=0x6558) / inner)
    assert (seg.src_mac, seg.dst_mac) == (MAC_IN_A, MAC_IN_B)


def test_gre_erspan_type_two():
    inner = Ether(src=MAC_IN_A, dst=MAC_IN_B) / ip6_udp()
    seg = decode(eth() / OUTER / GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(session_id=1) / inner)
    assert (seg.src_mac, seg.dst_port) == (MAC_IN_A, 53)


def test_enhanced_gre_pptp_ppp():
    # GRE v1: flags K (0x20) + S (0x10), version 1, protocol 0x880b, payload length, call id, sequence.
    header = struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, 0, 0, 1)
    seg = decode(eth() / OUTER / GRE(proto=0) / b"")  # sanity: GRE with protocol 0 is non-IP
    assert seg is None
    data = bytes(
        eth() / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / (header + b"\xff\x03\x00\x21" + bytes(ip4_tcp()))
    )
    assert decode(data).src_ip == "10.1.1.1"


def test_vxlan_inner_ethernet():
    inner = Ether(src=MAC_IN_A, dst=MAC_IN_B) / Dot1Q(vlan=3) / ip4_tcp()
    seg = decode(eth() / Dot1Q(vlan=1) / OUTER / UDP(sport=50000, dport=4789) / VXLAN(vni=10) / inner)
    assert (seg.src_mac, seg.vlan, seg.src_ip, seg.dst_port) == (MAC_IN_A, (1, 3), "10.1.1.1", 80)


def test_vxlan_without_i_flag_is_plain_udp():
    payload = bytes(VXLAN(flags=0, vni=10) / eth() / ip4_tcp())
    seg = decode(eth() / OUTER / UDP(sport=50000, dport=4789) / payload)
    assert (seg.dst_port, seg.payload) == (4789, payload)


def test_ip_in_ip_6in4_and_4in6():
    seg = decode(eth() / OUTER / ip4_tcp())
    assert (seg.src_ip, seg.src_mac) == ("10.1.1.1", None)
    seg = decode(eth() / OUTER / ip6_udp())
    assert (seg.src_ip, seg.ip_version) == ("2001:db8::1", 6)
    seg = decode(eth() / IPv6(src="2001:db8::a", dst="2001:db8::b") / ip4_tcp())
    assert (seg.src_ip, seg.ip_version) == ("10.1.1.1", 4)


def test_gtp_u_with_sequence_number_and_extension():
    # GTPv1-U G-PDU with E and S flags, one 4-byte PDU session container extension (type 0x85).
    inner = bytes(ip4_tcp())
    extension = bytes([1, 0x00, 0x01, 0x00])  # length 1 (4 bytes), content, next type 0
    body = struct.pack("!HBB", 1, 0, 0x85) + extension + inner
    gtp = struct.pack("!BBHI", 0x36, 0xFF, len(body), 0x1234) + body
    seg = decode(eth() / OUTER / UDP(sport=2152, dport=2152) / gtp)
    assert (seg.src_ip, seg.dst_port, seg.src_mac) == ("10.1.1.1", 80, None)


def test_geneve_ethernet_payload():
    inner = bytes(Ether(src=MAC_IN_A, dst=MAC_IN_B) / ip6_udp())
    geneve = struct.pack("!BBHI", 0, 0, 0x6558, 0x000A00) + inner
    seg = decode(eth() / OUTER / UDP(sport=1, dport=6081) / geneve)
    assert (seg.src_mac, seg.dst_ip) == (MAC_IN_A, "2001:db8::2")


def _nested_ipip(depth: int):
    packet = IP(src="192.0.2.1", dst="192.0.2.2")
    for _ in range(depth - 1):
        packet = packet / IP(src="192.0.2.1", dst="192.0.2.2")
    return eth() / packet / ip4_tcp()


def test_tunnel_nesting_is_bounded():
    assert decode(_nested_ipip(MAX_TUNNELS)).src_ip == "10.1.1.1"
    seg, decoder = decode_counting(_nested_ipip(MAX_TUNNELS + 1))
    assert seg is None
    assert decoder.counters.malformed_by_reason == {"tunnel_depth": 1}


# -- hostile truncation of every sample -----------------------------------------------------------

SAMPLES: list[tuple[int, bytes]] = [
    (lt.LINKTYPE_ETHERNET, bytes(eth() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / ip4_tcp())),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP() / b"x")),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / MPLS(s=1) / (b"\0" * 4 + bytes(eth() / ip6_udp())))),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / PPPoE() / PPP(proto=0x57) / ip6_udp())),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / OUTER / GRE(key_present=1, proto=0x6558) / eth() / ip4_tcp())),
    (
        lt.LINKTYPE_ETHERNET,
        bytes(eth() / OUTER / GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II() / eth() / ip4_tcp()),
    ),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / OUTER / UDP(dport=4789) / VXLAN() / eth() / ip4_tcp())),
    (lt.LINKTYPE_ETHERNET, bytes(eth() / IPv6() / IP() / IPv6() / ip6_udp())),
    (
        lt.LINKTYPE_ETHERNET,
        bytes(
            eth()
            / OUTER
            / UDP(dport=2152)
            / (
                struct.pack("!BBHIHBB", 0x36, 0xFF, 8 + len(bytes(ip4_tcp())), 1, 0, 0, 0x85)
                + bytes([1, 0, 1, 0])
                + bytes(ip4_tcp())
            )
        ),
    ),
    (
        lt.LINKTYPE_ETHERNET,
        bytes(
            eth()
            / OUTER
            / UDP(dport=6081)
            / (struct.pack("!BBHI", 1, 0, 0x6558, 0) + b"\0" * 4 + bytes(eth() / ip6_udp()))
        ),
    ),
    (lt.LINKTYPE_LINUX_SLL, bytes(CookedLinux(lladdrtype=1, lladdrlen=6) / ip4_tcp())),
    (lt.LINKTYPE_LINUX_SLL2, bytes(CookedLinuxV2(proto=0x800, lladdrtype=1, lladdrlen=6) / ip4_tcp())),
    (lt.LINKTYPE_NULL, b"\x1e\0\0\0" + bytes(ip6_udp())),
    (lt.LINKTYPE_PPP, b"\xff\x03\x00\x21" + bytes(ip4_tcp())),
    (lt.LINKTYPE_RAW, bytes(IP(flags="MF", frag=0, id=9) / UDP() / (b"q" * 16))),  # held for reassembly
    (lt.LINKTYPE_RAW, bytes(IPv6() / AH(nh=6, payloadlen=4, icv=b"\0" * 12) / TCP() / b"z")),
]


@pytest.mark.parametrize(("linktype", "data"), SAMPLES)
def test_every_truncation_of_a_valid_frame_is_handled(linktype, data):
    decoder = Decoder()
    whole = decoder.decode(RawPacket(1, 0.0, linktype, data))
    if decoder.counters.fragments == 0:
        assert whole.dst_port in (53, 80)  # the innermost transport, not a tunnel's outer UDP
    else:
        assert whole is None
    for cut in range(len(data)):
        decoder.decode(RawPacket(1, 0.0, linktype, data[:cut]))
    counters = decoder.counters
    assert "internal_error" not in counters.malformed_by_reason
    assert counters.frames == len(data) + 1


def test_sll_non_ip_protocol_is_counted():
    packet = CookedLinux(lladdrtype=1, lladdrlen=6, proto=0x0004) / b"\xaa\xaa\x03"  # ETH_P_802_2
    seg, decoder = decode_counting(packet, lt.LINKTYPE_LINUX_SLL)
    assert seg is None
    assert decoder.counters.non_ip == 1


def test_memoryview_and_bytearray_frames_are_accepted():
    data = bytes(eth() / ip4_tcp(b"mv"))
    decoder = Decoder()
    for view in (memoryview(data), bytearray(data)):
        seg = decoder.decode(RawPacket(1, 0.0, lt.LINKTYPE_ETHERNET, view))
        assert type(seg.payload) is bytes
        assert seg.payload == b"mv"
