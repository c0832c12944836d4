"""Hostile input: arbitrary bytes and mutated valid frames never escape the decoder as exceptions."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.dot11 import Dot11, Dot11QoS, RadioTap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import GRE, LLC, SNAP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from netwatch.decode import linktypes as lt
from netwatch.decode.decoder import Decoder
from netwatch.model import RawPacket

LINKTYPES = [*sorted(lt.SUPPORTED_LINKTYPES), 147]

_ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
VALID_FRAMES = [
    bytes(_ETH / Dot1Q(vlan=3) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=443) / b"\x16\x03\x01"),
    bytes(_ETH / MPLS(s=1) / IPv6() / IPv6ExtHdrHopByHop() / UDP(dport=53) / b"dns"),
    bytes(_ETH / IP() / GRE(key_present=1) / IP() / UDP(dport=4789) / VXLAN() / _ETH / IP() / TCP()),
    bytes(_ETH / IPv6() / IPv6ExtHdrFragment(m=1, id=3) / UDP() / (b"f" * 32)),
    bytes(_ETH / IP(flags="MF", id=5) / UDP() / (b"g" * 32)),
    # GTP-U with an extension header, Geneve with one option word
    bytes(
        _ETH
        / IP()
        / UDP(dport=2152)
        / (bytes.fromhex("36ff003800000001 00000085 01000100") + bytes(IP() / TCP() / (b"t" * 8)))
    ),
    bytes(_ETH / IP() / UDP(dport=6081) / (bytes.fromhex("0100655800000000 00000000") + bytes(_ETH / IP() / UDP()))),
]


def _check(decoder: Decoder) -> None:
    counters = decoder.counters
    assert "internal_error" not in counters.malformed_by_reason
    assert counters.malformed == sum(counters.malformed_by_reason.values())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linktype=st.sampled_from(LINKTYPES), data=st.binary(max_size=200))
def test_random_bytes_never_raise(linktype, data):
    decoder = Decoder()
    decoder.decode(RawPacket(1, 0.0, linktype, data))
    _check(decoder)
    assert decoder.counters.frames == 1


@settings(max_examples=400, deadline=None)
@given(
    frame=st.sampled_from(VALID_FRAMES),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=6),
    cut=st.integers(min_value=0, max_value=400),
)
def test_mutated_valid_frames_never_raise(frame, flips, cut):
    data = _mutated(frame, flips, cut)
    decoder = Decoder()
    for index in range(3):  # repeated, so mutated fragments also meet each other in the reassembler
        decoder.decode(RawPacket(index, float(index), lt.LINKTYPE_ETHERNET, data))
    _check(decoder)


def _mutated(frame: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    """`frame` with the bytes at the given positions replaced, then cut after `cut` bytes (0: not cut)."""
    data = bytearray(frame)
    for position, value in flips:
        if position < len(data):
            data[position] = value
    return bytes(data[: cut or None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=8, max_size=64), min_size=1, max_size=20))
def test_random_ipv4_fragments_never_raise(payloads):
    decoder = Decoder(max_datagrams=4, max_fragment_bytes=2048)
    for index, payload in enumerate(payloads):
        # offset, MF flag and id come from the payload itself, so hypothesis explores them all
        header = IP(
            src="10.0.0.1",
            dst="10.0.0.2",
            id=payload[0] % 3,
            flags=payload[1] % 2,
            frag=int.from_bytes(payload[2:4], "big") % 64,
            proto=17,
        )
        decoder.decode(RawPacket(index, index * 0.1, lt.LINKTYPE_RAW, bytes(header / payload)))
    _check(decoder)
    fragments = decoder._fragments
    assert len(fragments) <= 4
    assert fragments.held_bytes <= 2048


_WIFI_FRAMES = [
    bytes(RadioTap() / Dot11(type=2, subtype=8, FCfield=0x03, addr1="02:00:00:00:00:01", addr2="02:00:00:00:00:02",
                             addr3="02:00:00:00:00:03", addr4="02:00:00:00:00:04") / Dot11QoS() / LLC() / SNAP()
          / IP() / UDP(dport=53) / b"dns"),
    bytes(RadioTap() / Dot11(type=2, FCfield=0x01) / LLC() / SNAP() / IPv6() / TCP(dport=443) / b"\x16\x03\x01"),
]


@settings(max_examples=300, deadline=None)
@given(
    frame=st.sampled_from(_WIFI_FRAMES),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(0, 255)), max_size=6),
    cut=st.integers(min_value=0, max_value=200),
)
def test_mutated_wifi_frames_never_raise(frame, flips, cut):
    data = _mutated(frame, flips, cut)
    decoder = Decoder()
    decoder.decode(RawPacket(1, 0.0, lt.LINKTYPE_IEEE802_11_RADIOTAP, data))
    decoder.decode(RawPacket(2, 0.0, lt.LINKTYPE_PPI, b"\x00\x00\x08\x00\x69\x00\x00\x00" + data[8:]))
    _check(decoder)
