"""IP fragment reassembly through the Decoder: order, overlaps, duplicates, expiry, limits."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import GRE, Ether

from netwatch.decode import linktypes as lt
from netwatch.decode.decoder import Decoder
from netwatch.decode.fragments import MAX_PIECES, FragmentReassembler
from netwatch.decode.layers import Malformed
from netwatch.model import RawPacket, Segment

PAYLOAD = bytes(range(256)) * 12  # 3072 bytes, every offset distinguishable


def udp4(ident: int = 77, payload: bytes = PAYLOAD):
    return IP(src="10.0.0.1", dst="10.0.0.2", id=ident) / UDP(sport=53, dport=33000) / payload


def frags4(ident: int = 77, size: int = 512, payload: bytes = PAYLOAD) -> list[bytes]:
    return [bytes(f) for f in fragment(udp4(ident, payload), fragsize=size)]


def frags6(ident: int = 99, size: int = 600) -> list[bytes]:
    packet = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(id=ident)
        / UDP(sport=443, dport=50000)
        / PAYLOAD
    )
    return [bytes(f) for f in fragment6(packet, size)]


def feed(decoder: Decoder, frames: list[bytes], linktype: int = lt.LINKTYPE_RAW, ts: float = 0.0) -> list[Segment]:
    out = []
    for index, data in enumerate(frames, 1):
        seg = decoder.decode(RawPacket(index, ts, linktype, data))
        if seg is not None:
            out.append(seg)
    return out


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_ipv4_reassembly_any_order(order):
    frames = frags4()
    assert len(frames) == 7
    if order == "reversed":
        frames.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(frames)
    decoder = Decoder()
    segments = feed(decoder, frames)
    assert len(segments) == 1
    seg = segments[0]
    assert (seg.src_ip, seg.dst_ip, seg.src_port, seg.dst_port, seg.payload) == (
        "10.0.0.1",
        "10.0.0.2",
        53,
        33000,
        PAYLOAD,
    )
    assert seg.frame == len(frames)  # reported at the frame that completed the datagram
    assert (decoder.counters.fragments, decoder.counters.reassembled) == (7, 1)
    assert len(decoder._fragments) == 0 and decoder._fragments.held_bytes == 0


@pytest.mark.parametrize("order", ["in_order", "reversed"])
def test_ipv6_reassembly(order):
    frames = frags6()
    if order == "reversed":
        frames.reverse()
    decoder = Decoder()
    segments = feed(decoder, frames, lt.LINKTYPE_IPV6)
    assert len(segments) == 1
    assert (segments[0].src_ip, segments[0].dst_port, segments[0].payload) == ("2001:db8::1", 50000, PAYLOAD)
    assert decoder.counters.reassembled == 1


def test_ipv6_extension_header_after_fragment_header():
    inner = bytes(IPv6ExtHdrDestOpt(nh=17) / UDP(sport=1, dport=2) / (b"d" * 40))
    base = IPv6(src="2001:db8::1", dst="2001:db8::2", nh=44)
    first = base / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=5) / inner[:24]
    second = base / IPv6ExtHdrFragment(nh=60, offset=3, m=0, id=5) / inner[24:]
    segments = feed(Decoder(), [bytes(second), bytes(first)], lt.LINKTYPE_IPV6)
    assert [s.payload for s in segments] == [b"d" * 40]


def test_ipv6_atomic_fragment_is_decoded_directly():
    packet = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=1, m=0, offset=0) / UDP() / b"atom"
    decoder = Decoder()
    assert [s.payload for s in feed(decoder, [bytes(packet)], lt.LINKTYPE_IPV6)] == [b"atom"]
    assert decoder.counters.fragments == 0


def test_duplicates_are_ignored():
    frames = frags4()
    decoder = Decoder()
    segments = feed(decoder, frames[:3] + frames[:3] + frames[3:])
    assert [s.payload for s in segments] == [PAYLOAD]
    assert decoder.counters.fragment_overlaps == 3


def _raw_fragment(offset: int, more: bool, data: bytes, ident: int = 4) -> bytes:
    header = IP(src="10.0.0.1", dst="10.0.0.2", id=ident, proto=17, flags=1 if more else 0, frag=offset // 8)
    return bytes(header / data)


def test_overlap_first_data_wins():
    udp_header = struct.pack("!HHHH", 53, 9999, 8 + 40, 0)
    original = udp_header + b"A" * 40  # 48 bytes: offsets 0..47
    frames = [
        _raw_fragment(0, True, original[:24]),
        _raw_fragment(16, True, b"X" * 24),  # overlaps 16..23 (held) and fills 24..39 (hole)
        _raw_fragment(24, True, original[24:40]),  # arrives later than X for 24..39: loses
        _raw_fragment(40, False, original[40:]),
    ]
    decoder = Decoder()
    segments = feed(decoder, frames)
    assert len(segments) == 1
    # IP payload bytes 16..23 keep the first fragment's data, 24..39 come from the X fragment that
    # arrived before the original 24..39; the UDP payload starts at IP payload byte 8.
    assert segments[0].payload == b"A" * 16 + b"X" * 16 + b"A" * 8
    assert decoder.counters.fragment_overlaps == 2


def test_incomplete_datagram_expires_in_capture_time():
    frames = frags4(ident=1)
    decoder = Decoder(fragment_timeout=30.0)
    feed(decoder, frames[:-1], ts=100.0)
    assert len(decoder._fragments) == 1
    # another datagram's fragment 31 s later triggers the expiry
    feed(decoder, frags4(ident=2)[:1], ts=131.0)
    assert decoder.counters.fragments_expired == len(frames) - 1
    # the late last fragment now starts a new, incomplete datagram: nothing is produced
    assert feed(decoder, frames[-1:], ts=131.5) == []
    assert decoder.counters.reassembled == 0


def test_max_datagrams_evicts_oldest():
    decoder = Decoder(max_datagrams=2)
    first, second, third = frags4(ident=1), frags4(ident=2), frags4(ident=3)
    feed(decoder, first[:2] + second[:2] + third[:2])
    assert decoder.counters.fragments_dropped == 2  # the two fragments of datagram 1
    assert feed(decoder, first[2:]) == []  # datagram 1 was evicted: cannot complete
    assert [s.payload for s in feed(decoder, third[2:])] == [PAYLOAD]


def test_max_fragment_bytes_evicts_oldest():
    decoder = Decoder(max_fragment_bytes=4000)
    first, second = frags4(ident=1), frags4(ident=2)
    feed(decoder, first[:5])  # ~2500 bytes held
    feed(decoder, second[:5])  # pushes the total past 4000: datagram 1 goes
    assert decoder.counters.fragments_dropped == 5
    assert decoder._fragments.held_bytes <= 4000
    assert [s.payload for s in feed(decoder, second[5:])] == [PAYLOAD]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_raw_fragment(0, True, b"x" * 13), "fragment_length"),  # MF fragment not a multiple of 8
        (_raw_fragment(65528, False, b"x" * 16), "fragment_oversize"),  # ends beyond 65535
    ],
)
def test_impossible_fragments(frame, reason):
    decoder = Decoder()
    assert feed(decoder, [frame]) == []
    assert decoder.counters.malformed_by_reason == {reason: 1}


def test_conflicting_datagram_ends_are_malformed():
    reassembler = FragmentReassembler(max_bytes=1 << 20, max_datagrams=4, timeout=30.0)
    key = (4, b"a", b"b", 1, 17)
    assert reassembler.add(key, 0.0, 0, True, b"x" * 16, 17, 65515) is None
    assert reassembler.add(key, 0.0, 24, False, b"y" * 16, 17, 65515) is None  # total = 40
    with pytest.raises(Malformed, match="fragment_conflict"):
        reassembler.add(key, 0.0, 16, False, b"z" * 8, 17, 65515)  # claims total = 24
    with pytest.raises(Malformed, match="fragment_conflict"):
        reassembler.add(key, 0.0, 40, True, b"z" * 8, 17, 65515)  # MF data beyond the end
    assert reassembler.add(key, 0.0, 16, True, b"w" * 8, 17, 65515) == (b"x" * 16 + b"w" * 8 + b"y" * 16, 17)


def test_truncated_first_fragment_is_decoded_as_far_as_captured():
    whole = frags4(size=1024)[0]
    decoder = Decoder()
    segments = feed(decoder, [whole[:300]])
    assert len(segments) == 1
    assert segments[0].payload == PAYLOAD[: 300 - 28]
    assert decoder.counters.truncated == 1
    # a truncated later fragment can never be reassembled
    assert feed(decoder, [frags4(size=1024)[1][:300]]) == []
    assert decoder.counters.malformed_by_reason == {"fragment_truncated": 1}


def test_fragments_inside_a_gre_tunnel():
    outer = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="192.0.2.2") / GRE()
    frames = [bytes(outer / IP(f)) for f in frags4()]
    segments = feed(Decoder(), frames, lt.LINKTYPE_ETHERNET)
    assert [(s.src_ip, s.payload, s.src_mac) for s in segments] == [("10.0.0.1", PAYLOAD, None)]


def test_reassembler_alone_bounds_piece_count():
    reassembler = FragmentReassembler(max_bytes=1 << 20, max_datagrams=4, timeout=30.0)
    for index in range(MAX_PIECES + 1):  # 8-byte pieces with holes between them
        reassembler.add(("k",), 0.0, index * 16, True, b"z" * 8, 17, 65535)
    assert len(reassembler) == 0
    assert reassembler.held_bytes == 0
    assert reassembler.dropped == MAX_PIECES + 1
