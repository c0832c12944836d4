"""TCP stream heads: split, out-of-order, retransmitted, overlapping segments, mid-stream starts, bounds."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.decode.tcpstream import MAX_HELD_SEGMENTS, StreamHead, StreamHeads
from netwatch.model import Segment

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT = ("192.168.1.10", 51000, "203.0.113.5", 443)
HELLO = bytes(range(256)) * 10  # 2560 bytes standing in for a big ClientHello


def seg(seq: int, payload: bytes = b"", flags: int = ACK | PSH, ts: float = 1.0, key=CLIENT, frame: int = 1):
    src_ip, src_port, dst_ip, dst_port = key
    return Segment(
        frame=frame,
        ts=ts,
        transport="tcp",
        src_ip=src_ip,
        dst_ip=dst_ip,
        src_port=src_port,
        dst_port=dst_port,
        payload=payload,
        src_mac="02:00:00:00:00:01",
        tcp_seq=seq % (1 << 32),
        tcp_flags=flags,
        vlan=(5,),
    )


def split(data: bytes, isn: int, size: int) -> list[Segment]:
    """Segments of `data` sent after a SYN with `isn`, `size` bytes each."""
    return [seg(isn + 1 + off, data[off : off + size], frame=2 + i) for i, off in enumerate(range(0, len(data), size))]


def test_in_order_split_hello_grows_head():
    heads = StreamHeads()
    assert heads.add(seg(1000, flags=SYN, frame=1)) is None
    # the same StreamHead object is returned (and updated) every time its prefix grows
    sizes = [len(heads.add(s).data) for s in split(HELLO, 1000, 1000)]
    assert sizes == [1000, 2000, 2560]
    head = heads.add(seg(1001, HELLO[:10], frame=9))  # a retransmission: no growth
    assert head is None
    head = heads._streams[CLIENT].head
    assert isinstance(head, StreamHead)
    assert (head.key, head.data, head.syn_seen, head.first_frame, head.last_frame) == (CLIENT, HELLO, True, 1, 9)
    assert (head.src_mac, head.dst_mac, head.vlan, head.complete) == ("02:00:00:00:00:01", None, (5,), False)


def test_out_of_order_segments_are_held_until_the_gap_fills():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    first, second, third = split(HELLO, 0, 1000)
    assert heads.add(third) is None
    assert heads.add(second) is None
    head = heads.add(first)
    assert head.data == HELLO
    assert heads.counters.out_of_order == 2


def test_retransmissions_are_deduplicated():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    first, second, third = split(HELLO, 0, 1000)
    heads.add(first)
    assert heads.add(first) is None
    heads.add(third)
    assert heads.add(third) is None  # retransmission of a held segment
    assert heads.add(second).data == HELLO
    assert heads.counters.retransmitted == 2


def test_overlapping_data_first_arrival_wins():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    heads.add(seg(1, b"AAAAAAAAAA"))  # bytes 0..9
    head = heads.add(seg(6, b"XXXXXXXXXX"))  # 5..14: 5..9 conflict, 10..14 new
    assert head.data == b"AAAAAAAAAAXXXXX"
    assert heads.counters.overlaps == 1


def test_overlap_with_held_data_first_arrival_wins():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    assert heads.add(seg(11, b"HHHHH")) is None  # held at 10..14
    assert heads.add(seg(9, b"yyyyyyyy")) is None  # 8..15: 10..14 conflict (held wins), 8..9 and 15 new
    head = heads.add(seg(1, b"01234567"))  # fills 0..7
    assert head.data == b"01234567yyHHHHHy"
    assert heads.counters.overlaps == 1


def test_no_syn_starts_at_lowest_sequence_and_rebases():
    heads = StreamHeads()
    head = heads.add(seg(5000, b"world"))
    assert (head.data, head.syn_seen) == (b"world", False)
    head = heads.add(seg(4994, b"hello "))
    assert head.data == b"hello world"
    assert heads.counters.rebased == 1


def test_rebase_with_a_gap_keeps_old_bytes_held():
    heads = StreamHeads()
    heads.add(seg(5000, b"world"))
    head = heads.add(seg(4990, b"hello"))  # 4990..4994, gap 4995..4999
    assert head.data == b"hello"
    head = heads.add(seg(4995, b", my "))
    assert head.data == b"hello, my world"


def test_before_isn_data_is_trimmed_not_rebased():
    heads = StreamHeads()
    heads.add(seg(100, flags=SYN))
    assert heads.add(seg(95, b"junk")) is None  # entirely before ISN+1
    head = heads.add(seg(97, b"xxxxabc"))  # 97..103: 101.. is data
    assert head.data == b"abc"
    assert heads.counters.rebased == 0


def test_sequence_wrap_around_near_2_32():
    isn = (1 << 32) - 700
    heads = StreamHeads()
    heads.add(seg(isn, flags=SYN))
    segments = split(HELLO, isn, 500)
    for s in reversed(segments[1:]):
        assert heads.add(s) is None
    assert heads.add(segments[0]).data == HELLO


def test_wrap_around_without_syn_rebases_across_zero():
    heads = StreamHeads()
    heads.add(seg(0, b"defg"))  # just after the wrap
    head = heads.add(seg((1 << 32) - 3, b"abc"))  # just before it
    assert head.data == b"abcdefg"


def test_gap_is_abandoned_when_the_stream_goes_idle():
    heads = StreamHeads(idle_timeout=60.0)
    heads.add(seg(0, flags=SYN, ts=0.0))
    heads.add(seg(1, b"start", ts=0.0))
    assert heads.add(seg(100, b"beyond a gap", ts=1.0)) is None
    assert len(heads) == 1
    heads.add(seg(0, flags=SYN, ts=100.0, key=("10.0.0.9", 1, "10.0.0.8", 2)))  # capture time moves on
    assert heads.counters.gaps_abandoned == 1
    assert heads.counters.expired == 1
    assert len(heads) == 1


def test_head_limit_marks_complete_and_caps_data():
    heads = StreamHeads(head_limit=1500)
    heads.add(seg(0, flags=SYN))
    results = [heads.add(s) for s in split(HELLO, 0, 1000)]
    assert results[1].data == HELLO[:1500]
    assert results[1].complete
    assert results[2] is None  # beyond the head: nothing more to report


def test_fin_marks_complete():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    assert heads.add(seg(6, b"tail", flags=ACK | FIN)) is None  # FIN beyond a gap
    head = heads.add(seg(1, b"head-"))
    assert (head.data, head.complete) == (b"head-tail", True)


def test_finished_direction_is_ignored_until_a_new_syn():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    heads.add(seg(1, b"hello"))
    heads.finish(CLIENT)
    assert len(heads) == 0
    assert heads.add(seg(6, b"more bulk data")) is None
    assert heads.counters.ignored_finished == 1
    heads.add(seg(5000, flags=SYN))  # the 4-tuple is reused by a new connection
    assert heads.add(seg(5001, b"new")).data == b"new"


def test_new_syn_resets_but_retransmitted_syn_does_not():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    heads.add(seg(1, b"old"))
    heads.add(seg(0, flags=SYN))  # retransmitted SYN: same ISN
    assert heads.add(seg(4, b"er")).data == b"older"
    heads.add(seg(9000, flags=SYN))
    assert heads.add(seg(9001, b"fresh")).data == b"fresh"
    assert heads.counters.resets == 1


def test_tcp_fast_open_data_on_syn():
    heads = StreamHeads()
    head = heads.add(seg(77, b"GET / HTTP/1.1\r\n", flags=SYN))
    assert head.data == b"GET / HTTP/1.1\r\n"


def test_bare_acks_do_not_create_streams():
    heads = StreamHeads()
    assert heads.add(seg(10, b"", flags=ACK)) is None
    assert len(heads) == 0


def test_max_streams_evicts_least_recently_used():
    heads = StreamHeads(max_streams=2)
    keys = [("10.0.0.1", port, "10.0.0.2", 443) for port in (1, 2, 3)]
    heads.add(seg(0, b"a", key=keys[0]))
    heads.add(seg(0, b"b", key=keys[1]))
    heads.add(seg(1, b"a", key=keys[0]))  # key 0 used again: key 1 is now the oldest
    heads.add(seg(0, b"c", key=keys[2]))
    assert heads.counters.evicted == 1
    assert heads.add(seg(2, b"x", key=keys[0])).data == b"aax"  # key 0 survived
    assert heads.add(seg(1, b"b", key=keys[1])).data == b"b"  # key 1 starts over: it was evicted
    assert len(heads) == 2


def test_held_segments_are_bounded():
    heads = StreamHeads()
    heads.add(seg(0, flags=SYN))
    for index in range(MAX_HELD_SEGMENTS + 5):
        heads.add(seg(10 + index * 10, b"x"))  # every one beyond a gap
    assert heads.counters.held_dropped == 5


def test_total_bytes_bound_evicts_other_streams():
    heads = StreamHeads(max_total_bytes=3000)
    heads.add(seg(0, HELLO[:2000], key=("10.0.0.1", 1, "10.0.0.2", 2)))
    heads.add(seg(0, HELLO[:2000], key=("10.0.0.1", 3, "10.0.0.2", 4)))
    assert heads.counters.evicted == 1
    assert len(heads) == 1


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    isn=st.integers(min_value=0, max_value=(1 << 32) - 1),
    cuts=st.lists(st.integers(min_value=1, max_value=2999), max_size=12),
    order=st.randoms(use_true_random=False),
    duplicates=st.integers(min_value=0, max_value=4),
)
def test_any_order_and_duplication_reassembles_exactly(data, isn, cuts, order, duplicates):
    bounds = sorted({0, len(data), *[c for c in cuts if c < len(data)]})
    pieces = [seg(isn + 1 + lo, data[lo:hi]) for lo, hi in itertools.pairwise(bounds)]
    pieces += [order.choice(pieces) for _ in range(duplicates)]
    order.shuffle(pieces)
    heads = StreamHeads()
    heads.add(seg(isn, flags=SYN))
    last = None
    for piece in pieces:
        last = heads.add(piece) or last
    assert last is not None
    assert last.data == data


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=(1 << 32) - 1),
            st.binary(max_size=64),
            st.sampled_from([ACK, SYN, FIN | ACK, RST, ACK | PSH]),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=40,
    )
)
def test_arbitrary_segments_never_break_bounds(events):
    heads = StreamHeads(max_streams=3, head_limit=100, idle_timeout=5.0)
    for index, (seq, payload, flags, port) in enumerate(events):
        head = heads.add(seg(seq, payload, flags=flags, ts=index * 0.5, key=("1.1.1.1", port, "2.2.2.2", 80)))
        if head is not None:
            assert len(head.data) <= 100
        assert len(heads) <= 3
    streams = heads._streams.values()
    assert heads._total_bytes == sum(len(s.buf) + s.held_bytes for s in streams)
    assert all(len(s.held) <= MAX_HELD_SEGMENTS and s.held_bytes <= 100 for s in streams)


def test_descending_mid_stream_segments_cannot_grow_the_hold_without_bound():
    heads = StreamHeads()
    for index in range(200):  # each one a little earlier, with a gap: a rebase every time
        heads.add(seg(1_000_000 - index * 10, b"x"))
    stream = heads._streams[CLIENT]
    assert len(stream.held) <= MAX_HELD_SEGMENTS
    assert heads.counters.rebased == MAX_HELD_SEGMENTS


def test_late_syn_after_data_keeps_the_stream():
    heads = StreamHeads()
    heads.add(seg(1006, b"world"))  # reordered capture: data before its SYN
    head = heads.add(seg(1000, flags=SYN))  # ISN 1000: data starts at 1001
    assert (head.syn_seen, head.data) == (True, b"")
    head = heads.add(seg(1001, b"hello"))
    assert head.data == b"helloworld"
    assert heads.counters.resets == 0
