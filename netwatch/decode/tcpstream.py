"""TCP stream heads: the first bytes of each TCP direction, reassembled by sequence number.

The extractors need only the start of a direction (a ClientHello, an HTTP request head, the first DNS
messages), but it must be reassembled for real: hellos with post-quantum key shares span several
segments, and segments arrive out of order, retransmitted or overlapping.

Semantics:
- A SYN gives the ISN; data starts at ISN + 1. A SYN with a different ISN resets the direction (a new
  connection on the same 4-tuple); a retransmitted SYN (same ISN) changes nothing; a SYN captured after
  the first data of its direction (reordering) just moves the start back to ISN + 1.
- Without a SYN (capture started mid-connection) the direction starts at the lowest sequence number
  seen; an earlier segment rebases the head while it is still short (the old bytes are kept, placed
  after the new start), within head_limit. Sequence arithmetic wraps at 2**32.
- Segments beyond a gap are held (at most MAX_HELD_SEGMENTS and head_limit bytes per direction) until
  the gap fills; a gap that never fills is abandoned when the direction goes idle or is evicted.
- Overlaps: the first bytes received for a sequence number win; later copies only fill holes. This is
  the "first" target policy of Snort/Suricata (Novak & Sturges, "Target-Based TCP Stream Reassembly",
  2007), which favours original data as Windows does; a passive sensor cannot know the receiver's OS,
  and "first wins" means a later spoofed segment cannot rewrite a ClientHello already seen.
- Retransmissions (segments that bring no new byte) are deduplicated and counted.

Bounds: max_streams directions (least recently used evicted), head_limit bytes of contiguous data per
direction plus at most head_limit held bytes beyond gaps, max_total_bytes over all directions (least
recently used evicted first), idle_timeout seconds of capture time, and max_streams finished keys
remembered so the rest of a bulk flow costs one dict lookup.
"""

from __future__ import annotations

from bisect import insort
from collections import OrderedDict
from dataclasses import dataclass

from netwatch.decode.ranges import uncovered
from netwatch.model import Segment

MAX_HELD_SEGMENTS = 64
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_MOD = 1 << 32
_HALF = 1 << 31


@dataclass(slots=True)
class StreamHead:
    """The contiguous start of one TCP direction, as far as it is known."""

    key: tuple  # (src_ip, src_port, dst_ip, dst_port)
    data: bytes  # contiguous bytes from the start of the direction, <= head_limit
    first_frame: int
    first_ts: float
    last_frame: int
    syn_seen: bool
    src_mac: str | None
    dst_mac: str | None
    vlan: tuple[int, ...]
    complete: bool = False  # head_limit reached or FIN seen (no more data will come)


@dataclass(slots=True)
class StreamCounters:
    streams: int = 0  # directions created (including resets by a new SYN)
    evicted: int = 0  # dropped by the max_streams / max_total_bytes bounds
    expired: int = 0  # dropped after idle_timeout
    resets: int = 0  # a SYN with a new ISN restarted a direction
    out_of_order: int = 0  # segments held beyond a gap
    retransmitted: int = 0  # segments that brought no new byte
    overlaps: int = 0  # segments whose overlapping bytes differed from the ones held (first kept)
    rebased: int = 0  # mid-stream starts moved back to an earlier sequence number
    gaps_abandoned: int = 0  # directions dropped while bytes beyond a gap were still held
    held_dropped: int = 0  # segments not held because the per-direction hold bound was full
    ignored_finished: int = 0  # segments of finished directions


class _Stream:
    __slots__ = ("base", "buf", "fin_at", "head", "held", "held_bytes", "last_ts")

    def __init__(self, head: StreamHead, base: int, ts: float) -> None:
        self.head = head
        self.base = base  # sequence number of the first byte of the direction
        self.buf = bytearray()
        self.held: list[tuple[int, int, bytes]] = []  # sorted, non-overlapping (start, end, data) beyond buf
        self.held_bytes = 0
        self.fin_at: int | None = None  # offset of the FIN relative to base
        self.last_ts = ts


class StreamHeads:
    """Reassembles the head of every TCP direction fed to `add`; see the module docstring."""

    def __init__(
        self,
        *,
        max_streams: int = 65536,
        head_limit: int = 65536,
        idle_timeout: float = 300.0,
        max_total_bytes: int = 256 << 20,
    ) -> None:
        self.max_streams = max_streams
        self.head_limit = head_limit
        self.idle_timeout = idle_timeout
        self.max_total_bytes = max_total_bytes
        self.counters = StreamCounters()
        self._streams: OrderedDict[tuple, _Stream] = OrderedDict()  # least recently used first
        self._finished: OrderedDict[tuple, float] = OrderedDict()  # key -> last ts
        self._total_bytes = 0
        self._now = 0.0  # latest capture time seen

    def __len__(self) -> int:
        return len(self._streams)

    def finish(self, key: tuple) -> None:
        """The consumer is done with this direction: forget its bytes, ignore its later segments."""
        stream = self._streams.pop(key, None)
        if stream is not None:
            self._total_bytes -= len(stream.buf) + stream.held_bytes
        self._finished[key] = self._now
        self._finished.move_to_end(key)
        while len(self._finished) > self.max_streams:
            self._finished.popitem(last=False)

    def pieces(self, key: tuple) -> list[tuple[int, bytes]]:
        """What a direction holds, as (offset from its start, bytes): the contiguous prefix and the
        pieces held beyond gaps. Empty for a direction not (or no longer) tracked."""
        stream = self._streams.get(key)
        if stream is None:
            return []
        return [(0, bytes(stream.buf)), *((start, piece) for start, _end, piece in stream.held)]

    def add(self, seg: Segment) -> StreamHead | None:
        """Feed one TCP segment; return its direction's head when the contiguous prefix grew or was rebased.

        The same StreamHead object is returned (and updated in place) for the life of the direction.
        """
        if seg.transport != "tcp":
            return None
        key = (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)
        ts = seg.ts
        self._now = ts
        flags = seg.tcp_flags
        syn = flags & _SYN
        finished = self._finished.get(key)
        if finished is not None:
            if not syn and ts - finished <= self.idle_timeout:
                self._finished[key] = ts
                self.counters.ignored_finished += 1
                return None
            del self._finished[key]
        self._expire(ts)
        stream = self._streams.get(key)
        seq = seg.tcp_seq
        rebased = False
        if syn:
            seq = (seq + 1) % _MOD  # SYN occupies one sequence number; data (TFO) follows it
            if stream is not None and stream.head.syn_seen and stream.base == seq:
                self.counters.retransmitted += 1
                self._streams.move_to_end(key)
            elif stream is not None and not stream.head.syn_seen and self._adopt_isn(stream, seq):
                rebased = True  # a SYN captured after the first data (reordering): same connection
                self._streams.move_to_end(key)
            else:
                if stream is not None:
                    self.counters.resets += 1
                    self._discard(key)
                stream = self._new_stream(key, seg, seq, syn_seen=True)
        elif stream is None:
            if not seg.payload and not flags & _FIN:
                return None  # a bare ACK tells nothing about where the data starts
            stream = self._new_stream(key, seg, seq, syn_seen=False)
        else:
            self._streams.move_to_end(key)
        stream.last_ts = ts
        head = stream.head
        head.last_frame = seg.frame
        grew = rebased
        rel = (seq - stream.base) % _MOD
        if rel >= _HALF:  # before the start
            back = _MOD - rel
            if not head.syn_seen and self._can_rebase(stream, back):
                self._rebase(stream, back)
                rel = 0
                grew = True
            else:
                rel = -back
        payload = seg.payload
        if flags & _FIN:
            fin_at = rel + len(payload)
            if stream.fin_at is None and fin_at >= 0:
                stream.fin_at = fin_at
        if payload:
            grew = self._place(stream, rel, payload) or grew
        if not head.complete:
            size = len(stream.buf)
            if size >= self.head_limit or (stream.fin_at is not None and size >= stream.fin_at):
                head.complete = True
                grew = True
        if grew:
            head.data = bytes(stream.buf)
            return head
        return None

    # -- internals --------------------------------------------------------------------------------

    def _new_stream(self, key: tuple, seg: Segment, base: int, *, syn_seen: bool) -> _Stream:
        while len(self._streams) >= self.max_streams:
            self._evict_lru()
        head = StreamHead(
            key=key,
            data=b"",
            first_frame=seg.frame,
            first_ts=seg.ts,
            last_frame=seg.frame,
            syn_seen=syn_seen,
            src_mac=seg.src_mac,
            dst_mac=seg.dst_mac,
            vlan=seg.vlan,
        )
        stream = _Stream(head, base, seg.ts)
        self._streams[key] = stream
        self.counters.streams += 1
        return stream

    def _place(self, stream: _Stream, rel: int, payload: bytes) -> bool:
        """Put payload at offset rel (may be negative); return True when the contiguous prefix grew."""
        limit = self.head_limit
        end = rel + len(payload)
        if rel < 0:
            if end <= 0:
                self.counters.retransmitted += 1
                return False
            payload = payload[-rel:]
            rel = 0
        if end > limit:
            if rel >= limit:
                return False  # beyond the head: not needed
            payload = payload[: limit - rel]
            end = limit
        buf = stream.buf
        size = len(buf)
        if rel == size and not stream.held:  # the common case: in order, nothing held
            buf += payload
            self._total_bytes += len(payload)
            self._enforce_total()
            return True
        if rel < size:  # overlaps the contiguous prefix: those bytes were there first
            overlap_end = min(end, size)
            if buf[rel:overlap_end] != payload[: overlap_end - rel]:
                self.counters.overlaps += 1
            if end <= size:
                self.counters.retransmitted += 1
                return False
            payload = payload[size - rel :]
            rel = size
        if rel > size:
            new_bytes = self._hold(stream, rel, payload)
            if new_bytes:
                self.counters.out_of_order += 1
            elif new_bytes is False:
                self.counters.retransmitted += 1
            return False
        # rel == size with bytes held beyond (held pieces always start after the prefix): the bytes up
        # to the first held piece extend the prefix; the rest only fills holes between held pieces.
        direct = payload[: stream.held[0][0] - rel] if stream.held else payload
        buf += direct
        self._total_bytes += len(direct)
        rest = payload[len(direct) :]
        if rest:
            self._hold(stream, rel + len(direct), rest)
        self._drain(stream)
        self._enforce_total()
        return True

    def _hold(self, stream: _Stream, start: int, payload: bytes) -> bool | None:
        """Keep the parts of payload not held yet (first wins). True: bytes added; False: nothing new;
        None: the hold bound was full."""
        end = start + len(payload)
        holes, overlapping = uncovered(stream.held, start, end)
        for piece_start, piece_end, piece in overlapping:
            lo, hi = max(piece_start, start), min(piece_end, end)
            if piece[lo - piece_start : hi - piece_start] != payload[lo - start : hi - start]:
                self.counters.overlaps += 1
        if not holes:
            return False
        size = sum(hi - lo for lo, hi in holes)
        if len(stream.held) + len(holes) > MAX_HELD_SEGMENTS or stream.held_bytes + size > self.head_limit:
            self.counters.held_dropped += 1
            return None
        for lo, hi in holes:
            insort(stream.held, (lo, hi, payload[lo - start : hi - start]))
        stream.held_bytes += size
        self._total_bytes += size
        return True

    def _drain(self, stream: _Stream) -> None:
        """Move held pieces that now touch the contiguous prefix into it."""
        held = stream.held
        buf = stream.buf
        while held and held[0][0] <= len(buf):
            start, end, piece = held.pop(0)
            stream.held_bytes -= end - start
            if end > len(buf):  # always true: held pieces never overlap the prefix or each other
                buf += piece[len(buf) - start :]

    def _adopt_isn(self, stream: _Stream, start: int) -> bool:
        """A late SYN for a direction started without one: move the start to ISN+1 if it fits."""
        head = stream.head
        back = (stream.base - start) % _MOD
        if back >= _HALF or not self._can_rebase(stream, back):
            return False
        if back:
            self._rebase(stream, back)
        head.syn_seen = True
        return True

    def _can_rebase(self, stream: _Stream, back: int) -> bool:
        # The old prefix becomes one more held piece: the hold bound keeps hostile rebasing linear.
        return (
            not stream.head.complete
            and back + len(stream.buf) <= self.head_limit
            and len(stream.held) < MAX_HELD_SEGMENTS
        )

    def _rebase(self, stream: _Stream, back: int) -> None:
        """Move the start `back` bytes earlier; what was contiguous becomes held beyond the new gap."""
        self.counters.rebased += 1
        stream.base = (stream.base - back) % _MOD
        if stream.fin_at is not None:
            stream.fin_at += back
        old = bytes(stream.buf)
        self._total_bytes -= len(old)
        stream.buf = bytearray()
        shifted = [(start + back, end + back, piece) for start, end, piece in stream.held]
        self._total_bytes -= stream.held_bytes
        stream.held = []
        stream.held_bytes = 0
        if old:
            self._hold_unbounded(stream, back, old)
        for start, _end, piece in shifted:
            self._hold_unbounded(stream, start, piece)

    def _hold_unbounded(self, stream: _Stream, start: int, piece: bytes) -> None:
        # Rebasing keeps data already accepted; it was bounded when it first arrived (head_limit total).
        piece = piece[: max(0, self.head_limit - start)]
        if piece:
            insort(stream.held, (start, start + len(piece), piece))
            stream.held_bytes += len(piece)
            self._total_bytes += len(piece)

    def _discard(self, key: tuple) -> None:
        stream = self._streams.pop(key)
        self._total_bytes -= len(stream.buf) + stream.held_bytes
        if stream.held:
            self.counters.gaps_abandoned += 1

    def _evict_lru(self) -> None:
        self.counters.evicted += 1
        self._discard(next(iter(self._streams)))

    def _enforce_total(self) -> None:
        while self._total_bytes > self.max_total_bytes and len(self._streams) > 1:
            self._evict_lru()

    def _expire(self, ts: float) -> None:
        streams = self._streams
        while streams:
            key, oldest = next(iter(streams.items()))
            if ts - oldest.last_ts <= self.idle_timeout:
                break
            self.counters.expired += 1
            self._discard(key)
        finished = self._finished
        while finished:
            key, last = next(iter(finished.items()))
            if ts - last <= self.idle_timeout:
                break
            del finished[key]
