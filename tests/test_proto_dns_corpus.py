"""dnspython as the oracle for netwatch.protocols.dns over every DNS message in the nDPI captures."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

import dns.exception
import dns.message
import pytest

from netwatch.protocols.dns import parse_message, split_tcp_messages
from tests.conftest import SHARED_PCAPS
from tests.test_proto_dns import oracle_view

NDPI = SHARED_PCAPS
DNS_PORTS = (53, 5353, 5355)

pytestmark = pytest.mark.system


def tshark_fields(display_filter: str, fields: list[str]) -> list[list[str]]:
    """Run tshark once over all captures (concatenated by mergecap) and return the field rows."""
    if not NDPI.is_dir():
        pytest.skip(f"nDPI captures not present at {NDPI}")
    if not (shutil.which("tshark") and shutil.which("mergecap")):
        pytest.skip("tshark/mergecap is not installed (Debian package tshark)")
    captures = sorted(str(p) for p in NDPI.iterdir() if p.is_file())
    merged = subprocess.run(
        ["mergecap", "-a", "-F", "pcapng", "-w", "-", *captures], capture_output=True, check=True
    ).stdout
    command = ["tshark", "-r", "-", "-Y", display_filter, "-T", "fields", "-E", "occurrence=f"]
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, input=merged, capture_output=True, check=True).stdout
    return [line.split("\t") for line in out.decode().splitlines()]


@pytest.fixture(scope="module")
def udp_dns_payloads() -> list[bytes]:
    port_filter = " || ".join(f"udp.port=={port}" for port in DNS_PORTS)
    rows = tshark_fields(f"({port_filter}) && !icmp && !icmpv6", ["udp.payload"])
    return [bytes.fromhex(row[0].replace(":", "")) for row in rows if row and row[0]]


def _dnspython_or_none(wire: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(wire, ignore_trailing=True, one_rr_per_rrset=True)
    except (dns.exception.DNSException, ValueError):
        return None


def test_udp_messages_match_dnspython(udp_dns_payloads):
    compared = answers_compared = 0
    for wire in udp_dns_payloads:
        msg = parse_message(wire)  # must not raise, whatever dnspython thinks
        if _dnspython_or_none(wire) is None:
            continue
        assert msg is not None
        questions, answers = oracle_view(wire)
        assert [tuple(q) for q in msg.questions] == questions, wire.hex()
        assert [tuple(a) for a in msg.answers] == answers, wire.hex()
        assert not msg.malformed
        compared += 1
        answers_compared += len(answers)
    # The corpus holds ~246 UDP DNS payloads, ~150 of which dnspython parses whole.
    assert compared >= 100 and answers_compared >= 50


def test_strict_mode_accepts_the_corpus_queries_dnspython_accepts_whole(udp_dns_payloads):
    accepted = 0
    for wire in udp_dns_payloads:
        try:
            oracle = dns.message.from_wire(wire)  # no trailing bytes allowed
        except (dns.exception.DNSException, ValueError):
            continue
        if not 1 <= len(oracle.question) <= 8:
            continue
        assert parse_message(wire, strict=True) is not None, wire.hex()
        accepted += 1
    assert accepted >= 50


def test_tcp_streams_split_into_messages_dnspython_agrees_with():
    rows = tshark_fields("tcp.port==53 && tcp.len>0", ["tcp.stream", "tcp.srcport", "tcp.payload"])
    streams: dict[tuple[str, str], bytearray] = defaultdict(bytearray)
    for stream_id, src_port, payload in rows:
        streams[(stream_id, src_port)] += bytes.fromhex(payload.replace(":", ""))
    total = 0
    for stream in streams.values():
        messages, used = split_tcp_messages(bytes(stream))
        assert used == len(stream) and messages
        for wire in messages:
            msg = parse_message(wire)
            questions, answers = oracle_view(wire)
            assert [tuple(q) for q in msg.questions] == questions
            assert [tuple(a) for a in msg.answers] == answers
            total += 1
    assert total >= 4  # dns_fragmented.pcap: two TCP queries and their large responses
