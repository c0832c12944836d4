"""IP fragment reassembly (IPv4 RFC 791, IPv6 RFC 8200 s4.5), bounded for hostile traffic.

Why a sensor needs it: a DNS response with many records or a QUIC Initial padded to 1200+ bytes over a
small-MTU tunnel arrives in fragments, and only the first carries the UDP header.

Overlap policy: the first bytes received for any offset win; later fragments only fill holes. (Operating
systems differ: Linux and RFC 5722 discard the whole datagram on overlap; a passive sensor cannot know
the receiver's stack, and "first wins" keeps what most likely reached the application while a later
spoofed overlap cannot rewrite it.) Exact duplicates are ignored.

Bounds: at most `max_datagrams` datagrams in progress and `max_bytes` held fragment bytes in total
(the oldest datagram is evicted first, its fragments counted in `dropped`), MAX_PIECES pieces per
datagram, datagram payload at most the `limit` the caller gives (65535 minus the IPv4 header; 65535 for
the IPv6 fragmentable part; jumbograms are not reassembled), and `timeout` seconds of capture time
between a datagram's first fragment and its completion.
"""

from __future__ import annotations

from bisect import insort
from collections import OrderedDict

from netwatch.decode.layers import Malformed
from netwatch.decode.ranges import uncovered

MAX_PIECES = 512  # a 64 KiB datagram in 8-byte fragments would need 8192; nobody legitimate does that


class _Datagram:
    __slots__ = ("first_info", "first_ts", "fragments", "held", "pieces", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.pieces: list[tuple[int, int, bytes]] = []  # sorted, non-overlapping (start, end, data)
        self.held = 0  # bytes held == bytes covered, since pieces never overlap
        self.total: int | None = None  # payload length, known once the last fragment arrived
        self.first_info: int | None = None  # the offset-0 fragment's protocol / next header
        self.fragments = 0


class FragmentReassembler:
    """Collects fragments per key and hands back the payload of each completed datagram once."""

    def __init__(self, *, max_bytes: int = 16 << 20, max_datagrams: int = 4096, timeout: float = 30.0) -> None:
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.timeout = timeout
        self._pending: OrderedDict[tuple, _Datagram] = OrderedDict()  # oldest first
        self._bytes = 0
        self.reassembled = 0
        self.expired = 0  # fragments of datagrams that timed out incomplete
        self.dropped = 0  # fragments evicted by the limits
        self.overlaps = 0  # fragments that overlapped bytes already held (duplicates included)

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def add(
        self, key: tuple, ts: float, offset: int, more: bool, data: bytes, first_info: int, limit: int
    ) -> tuple[bytes, int] | None:
        """Add one fragment; return (datagram payload, first fragment's protocol) when it completes.

        `offset` is in bytes, `more` is the MF flag, `first_info` the upper-layer protocol this fragment
        names (only the offset-0 fragment's value is used). Raises Malformed for impossible fragments.
        """
        self._expire(ts)
        size = len(data)
        end = offset + size
        if more and (size == 0 or size % 8):
            raise Malformed("fragment_length")
        if end > limit:
            raise Malformed("fragment_oversize")
        datagram = self._pending.get(key)
        if datagram is None:
            while len(self._pending) >= self.max_datagrams:
                self._evict_oldest()
            datagram = _Datagram(ts)
            self._pending[key] = datagram
        if not more:
            if datagram.total is None:
                if datagram.pieces and datagram.pieces[-1][1] > end:
                    raise Malformed("fragment_conflict")
                datagram.total = end
            elif datagram.total != end:
                raise Malformed("fragment_conflict")
        elif datagram.total is not None and end > datagram.total:
            raise Malformed("fragment_conflict")
        if offset == 0 and datagram.first_info is None:
            datagram.first_info = first_info
        datagram.fragments += 1
        added = self._insert(datagram, offset, end, data)
        if added:
            self._bytes += added
            if len(datagram.pieces) > MAX_PIECES:
                self._drop(key)
                return None
            while self._bytes > self.max_bytes and self._pending:
                oldest = next(iter(self._pending))
                self._drop(oldest)
                if oldest == key:
                    return None
        if datagram.total is None or datagram.held != datagram.total or datagram.first_info is None:
            return None
        del self._pending[key]
        self._bytes -= datagram.held
        self.reassembled += 1
        return b"".join(piece[2] for piece in datagram.pieces), datagram.first_info

    def _insert(self, datagram: _Datagram, start: int, end: int, data: bytes) -> int:
        """Store the parts of [start, end) not held yet (first data wins); return the bytes added."""
        holes, overlapping = uncovered(datagram.pieces, start, end)
        if overlapping:
            self.overlaps += 1
        added = 0
        for hole_start, hole_end in holes:
            insort(datagram.pieces, (hole_start, hole_end, data[hole_start - start : hole_end - start]))
            added += hole_end - hole_start
        datagram.held += added
        return added

    def _expire(self, ts: float) -> None:
        pending = self._pending
        while pending:
            key, oldest = next(iter(pending.items()))
            if ts - oldest.first_ts <= self.timeout:
                return
            del pending[key]
            self._bytes -= oldest.held
            self.expired += oldest.fragments

    def _evict_oldest(self) -> None:
        self._drop(next(iter(self._pending)))

    def _drop(self, key: tuple) -> None:
        datagram = self._pending.pop(key)
        self._bytes -= datagram.held
        self.dropped += datagram.fragments
