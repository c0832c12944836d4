"""Hostile input for the C classifier: random and mutated frames must never crash it.

Run under `python -X dev` for extra checks; the framing fuzz lives in test_capture_files.py.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from netwatch._fastpath import FlowFilter

LINKTYPES = [0, 1, 9, 12, 14, 50, 101, 108, 113, 204, 228, 229, 276, 147]
_INNER = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=443, flags="PA") / Raw(b"x" * 40)
SEEDS = [
    bytes(Ether() / Dot1Q(vlan=5) / _INNER),
    bytes(Ether() / MPLS(s=1) / _INNER),
    bytes(Ether() / PPPoE() / PPP(proto=0x0021) / _INNER),
    bytes(Ether() / IP() / GRE(key_present=1, chksum_present=1) / _INNER),
    bytes(Ether() / IP() / UDP(dport=4789) / VXLAN() / Ether() / _INNER),
    bytes(Ether() / IP(proto=41) / IPv6() / IPv6ExtHdrHopByHop() / UDP(dport=53) / Raw(b"q" * 20)),
    bytes(Ether() / IP(proto=4) / _INNER),
]


@st.composite
def mutated_frame(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=500, deadline=None)
@given(frame=st.one_of(st.binary(max_size=200), mutated_frame()), linktype=st.sampled_from(LINKTYPES))
def test_classifier_never_crashes(frame, linktype):
    flow_filter = FlowFilter(max_flows=4, head_packets=2)
    for ts in (0.0, 1.0, 500.0):
        assert flow_filter.admits(linktype, frame, ts) in (True, False)
    stats = flow_filter.stats()
    assert stats["frames"] == 3
    # Every drop reason, including the protocol-aware TCP head rule's (unknown, server, done).
    dropped = sum(stats[reason] for reason in ("bulk", "no_payload", "non_ip", "other_proto", "unknown_dropped",
                                               "server_dropped", "done_dropped"))
    assert stats["admitted"] + dropped == 3


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    records=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 400)), max_size=8),
)
def test_filter_batch_never_reads_outside_the_data(data, records):
    meta = b"".join(struct.pack("=IIII", 1, 2, offset, length) for offset, length in records)
    flow_filter = FlowFilter(admit_all=True)
    inside = all(offset + length <= len(data) for offset, length in records)
    try:
        packets = flow_filter.filter_batch(1, data, meta, 1)
    except ValueError:
        assert not inside
        return
    assert inside
    assert [p.data for p in packets] == [data[o : o + n] for o, n in records]
