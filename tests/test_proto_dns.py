"""Unit and hostile-input tests for netwatch.protocols.dns (dnspython builds the messages and is the oracle)."""

from __future__ import annotations

import ipaddress
import struct

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.protocols.dns import (
    MAX_POINTER_JUMPS,
    DnsAnswer,
    DnsQuestion,
    parse_message,
    split_tcp_messages,
)


def header(*, ident=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


def wire_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def question(name: bytes, qtype: int = 1, qclass: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def record(name: bytes, rtype: int, rdata: bytes, *, rclass: int = 1, ttl: int = 300) -> bytes:
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def oracle_view(wire: bytes) -> tuple[list[tuple], list[tuple]]:
    """Questions and decoded answers as dnspython sees them, in our result's shape."""
    msg = dns.message.from_wire(wire, ignore_trailing=True, one_rr_per_rrset=True)
    questions = [(r.name.to_text(omit_final_dot=True), r.rdtype, r.rdclass) for r in msg.question]
    answers = []
    for rrset in msg.answer:
        for rd in rrset:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                if isinstance(rd, dns.rdata.GenericRdata):  # mDNS cache-flush class: not IN to dnspython
                    value = str(ipaddress.ip_address(rd.data))
                else:
                    value = str(ipaddress.ip_address(rd.address))
            elif rrset.rdtype in (dns.rdatatype.CNAME, dns.rdatatype.PTR, dns.rdatatype.DNAME):
                value = rd.target.to_text(omit_final_dot=True)
            else:
                continue
            answers.append((rrset.name.to_text(omit_final_dot=True), rrset.rdtype, rrset.ttl, value))
    return questions, answers


def test_simple_query_fields():
    wire = header(ident=0xBEEF, flags=0x0100) + question(wire_name(b"www", b"WeChat", b"com"), 28, 1)
    msg = parse_message(wire, strict=True)
    assert msg is not None
    assert (msg.id, msg.is_response, msg.opcode, msg.rcode, msg.truncated) == (0xBEEF, False, 0, 0, False)
    assert msg.questions == [DnsQuestion("www.WeChat.com", 28, 1)]  # case preserved
    assert msg.answers == []
    assert not msg.malformed


def test_response_with_compressed_cname_chain_and_addresses():
    query = dns.message.make_query("login.alipay.com", "A")
    response = dns.message.make_response(query)
    response.flags |= 0x0200 | 0x0003  # TC, rcode NXDOMAIN (bits only)
    response.answer.append(dns.rrset.from_text("login.alipay.com.", 60, "IN", "CNAME", "edge.alipay.com."))
    # One rrset per address: rdatasets are sets, and this test pins the wire order.
    response.answer.append(dns.rrset.from_text("edge.alipay.com.", 30, "IN", "A", "203.0.113.7"))
    response.answer.append(dns.rrset.from_text("edge.alipay.com.", 30, "IN", "A", "203.0.113.8"))
    response.answer.append(dns.rrset.from_text("edge.alipay.com.", 30, "IN", "AAAA", "2001:db8:0:0:0:0:0:1"))
    response.answer.append(dns.rrset.from_text("edge.alipay.com.", 30, "IN", "MX", "10 mx.alipay.com."))
    wire = response.to_wire()
    assert b"\xc0" in wire[40:]  # dnspython compressed the names

    msg = parse_message(wire)
    assert msg is not None and msg.is_response and msg.truncated and msg.rcode == 3
    assert msg.answers == [
        DnsAnswer("login.alipay.com", 5, 60, "edge.alipay.com"),
        DnsAnswer("edge.alipay.com", 1, 30, "203.0.113.7"),
        DnsAnswer("edge.alipay.com", 1, 30, "203.0.113.8"),
        DnsAnswer("edge.alipay.com", 28, 30, "2001:db8::1"),
    ]
    assert msg.skipped_answers == 1  # the MX
    assert not msg.malformed
    assert parse_message(wire, strict=True) == msg


@pytest.mark.parametrize(
    "label",
    [b"a.b", b"sp ace", b"back\\slash", b"\xff\x00\x7f", b'q"uote', b"@$();", b"tab\there", b"-_*"],
)
def test_odd_label_bytes_render_like_dnspython(label):
    name = dns.name.Name([label, b"example", b""])
    wire = dns.message.make_query(name, "A").to_wire()
    msg = parse_message(wire)
    assert msg is not None
    assert msg.questions[0].name == name.to_text(omit_final_dot=True)


def test_root_name_is_a_dot():
    msg = parse_message(header() + question(b"\x00", 2, 1))
    assert msg is not None and msg.questions == [DnsQuestion(".", 2, 1)]


def test_name_of_exactly_255_bytes_is_accepted_and_256_is_not():
    labels_255 = [b"a" * 63] * 3 + [b"b" * 61]  # 3*64 + 62 + root = 255
    msg = parse_message(header() + question(wire_name(*labels_255)))
    assert msg is not None and not msg.malformed
    assert msg.questions[0].name == dns.name.Name([*labels_255, b""]).to_text(omit_final_dot=True)

    labels_256 = [b"a" * 63] * 3 + [b"b" * 62]
    too_long = parse_message(header() + question(wire_name(*labels_256)))
    assert too_long is not None and too_long.malformed and too_long.questions == []
    assert parse_message(header() + question(wire_name(*labels_256)), strict=True) is None


@pytest.mark.parametrize("label_type", [0x40, 0x80])
def test_reserved_label_types_are_malformed(label_type):
    wire = header() + bytes([label_type | 1, 0x61, 0]) + struct.pack("!HH", 1, 1)
    msg = parse_message(wire)
    assert msg is not None and msg.malformed and msg.questions == []
    assert parse_message(wire, strict=True) is None


def test_compression_pointer_to_itself_is_malformed():
    wire = header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    msg = parse_message(wire)
    assert msg is not None and msg.malformed and msg.questions == []


def test_compression_loop_between_two_names_is_malformed():
    # Name 1 at 12: "a" then a pointer forward to name 2 at 19; name 2: "b" then a pointer back to 12.
    wire = header(qd=2) + b"\x01a\xc0\x13" + struct.pack("!HH", 1, 1) + b"\x01b\xc0\x0c" + struct.pack("!HH", 1, 1)
    msg = parse_message(wire)
    assert msg is not None and msg.malformed
    assert msg.questions == []  # the loop ends at the jump (or name length) bound


def test_forward_and_backward_pointers_are_followed():
    first = question(wire_name(b"qq", b"com"))
    backward = header(qd=2) + first + b"\x03www\xc0\x0c" + struct.pack("!HH", 1, 1)
    msg = parse_message(backward)
    assert msg is not None and not msg.malformed
    assert [q.name for q in msg.questions] == ["qq.com", "www.qq.com"]

    # A real client's query: the first name points forward into the second question.
    forward = header(qd=2) + b"\x03www\xc0\x16" + struct.pack("!HH", 1, 1) + first
    msg = parse_message(forward)
    assert msg is not None and not msg.malformed
    assert [q.name for q in msg.questions] == ["www.qq.com", "qq.com"]
    assert parse_message(forward, strict=True) is not None
    # A pointer past the end of the message is still malformed.
    beyond = header(qd=1) + b"\x03www\xc0\x7f" + struct.pack("!HH", 1, 1)
    assert parse_message(beyond).malformed


def _pointer_chain_message(jumps: int) -> bytes:
    """An answer whose owner name takes `jumps` pointer hops, each to a lower offset, down to "x".

    The intermediate pointers live in the rdata of a NULL record (type 10), which the parser
    skips by length, so they are reached only through the chain.
    """
    first_question = b"\x01x\x00" + struct.pack("!HH", 1, 1)  # the name "x" at offset 12
    staircase_start = 12 + len(first_question) + 2 + 10  # after the NULL record's name and fixed part
    staircase = bytearray()
    previous = 12
    for _ in range(jumps - 1):
        staircase += struct.pack("!H", 0xC000 | previous)
        previous = staircase_start + len(staircase) - 2
    null_record = record(b"\xc0\x0c", 10, bytes(staircase))
    chained = record(struct.pack("!H", 0xC000 | previous), 1, bytes([192, 0, 2, 1]))
    wire = header(flags=0x8180, qd=1, an=2) + first_question + null_record + chained
    assert wire[staircase_start : staircase_start + len(staircase)] == staircase
    return wire


def test_pointer_jump_bound():
    msg = parse_message(_pointer_chain_message(MAX_POINTER_JUMPS))
    assert msg is not None and not msg.malformed
    assert msg.answers == [DnsAnswer("x", 1, 300, "192.0.2.1")]
    assert msg.skipped_answers == 1

    too_many = parse_message(_pointer_chain_message(MAX_POINTER_JUMPS + 1))
    assert too_many is not None and too_many.malformed
    assert too_many.answers == [] and too_many.questions == [DnsQuestion("x", 1, 1)]


def _with_pointer_to_owner(wire: bytes) -> bytes:
    """Append an A record whose owner is a bare pointer to the last record's owner name."""
    owner_offset = wire.rindex(b"\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04") - 2  # the chained A record
    extra = record(struct.pack("!H", 0xC000 | owner_offset), 1, bytes([192, 0, 2, 2]))
    return wire[:6] + struct.pack("!H", 3) + wire[8:] + extra


def test_pointer_to_a_name_already_read_keeps_the_jump_bound():
    """Owner names that are bare pointers reuse the text of the name they point at: the bound still holds."""
    within = parse_message(_with_pointer_to_owner(_pointer_chain_message(MAX_POINTER_JUMPS - 1)))
    assert within is not None and not within.malformed
    assert within.answers == [DnsAnswer("x", 1, 300, "192.0.2.1"), DnsAnswer("x", 1, 300, "192.0.2.2")]

    beyond = parse_message(_with_pointer_to_owner(_pointer_chain_message(MAX_POINTER_JUMPS)))
    assert beyond is not None and beyond.malformed  # 128 jumps to the owner, one more through the pointer
    assert beyond.answers == [DnsAnswer("x", 1, 300, "192.0.2.1")]


@pytest.mark.parametrize("label", [b"a.b", b"sp ace", b"\xff\x00", b"@$", b"plain-name_1"])
def test_compressed_answer_owners_render_like_dnspython(label):
    name = dns.name.Name([label, b"example", b""])
    response = dns.message.make_response(dns.message.make_query(name, "A"))
    response.answer.append(dns.rrset.from_text(name, 60, "IN", "CNAME", "edge.example."))
    response.answer.append(dns.rrset.from_text("edge.example.", 60, "IN", "A", "192.0.2.9"))
    response.answer.append(dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.A))
    response.answer[-1].add(dns.rdata.from_text("IN", "A", "192.0.2.10"), 60)
    wire = response.to_wire()
    msg = parse_message(wire)
    assert msg is not None and not msg.malformed
    questions, answers = oracle_view(wire)
    assert [(q.name, q.qtype, q.qclass) for q in msg.questions] == questions
    assert [tuple(a) for a in msg.answers] == answers


@pytest.mark.parametrize(
    "address", ["::ffff:192.0.2.1", "::192.0.2.1", "::", "::1", "1::", "2001:db8:0:1:0:0:0:1", "2001:db8::1:0:0:1"]
)
def test_aaaa_text_is_rfc5952_like_ipaddress(address):
    response = dns.message.make_response(dns.message.make_query("v6.example", "AAAA"))
    response.answer.append(dns.rrset.from_text("v6.example.", 60, "IN", "AAAA", address))
    wire = response.to_wire()
    msg = parse_message(wire)
    assert msg.answers == [DnsAnswer("v6.example", 28, 60, str(ipaddress.IPv6Address(address)))]
    assert [tuple(a) for a in msg.answers] == oracle_view(wire)[1]


def test_label_count_bound_127_single_byte_labels_fit_128_do_not():
    fits = parse_message(header() + question(wire_name(*[b"a"] * 127)))
    assert fits is not None and not fits.malformed
    assert fits.questions[0].name == ".".join(["a"] * 127)
    assert parse_message(header() + question(wire_name(*[b"a"] * 128))).malformed


# --- strict mode: DNS on ports other than 53 ------------------------------------------------------

VALID_QUERY = header() + question(wire_name(b"www", b"wps", b"cn"))


def test_strict_accepts_a_clean_query_and_rejects_trailing_bytes():
    assert parse_message(VALID_QUERY, strict=True) is not None
    assert parse_message(VALID_QUERY + b"\x00", strict=True) is None
    lenient = parse_message(VALID_QUERY + b"trailing")
    assert lenient is not None and not lenient.malformed
    assert lenient.questions == [DnsQuestion("www.wps.cn", 1, 1)]


@pytest.mark.parametrize("opcode", [3, 6, 15])
def test_strict_rejects_unassigned_opcodes(opcode):
    wire = header(flags=opcode << 11) + question(wire_name(b"a", b"cn"))
    assert parse_message(wire, strict=True) is None
    assert parse_message(wire).opcode == opcode


@pytest.mark.parametrize("opcode", [0, 1, 2, 4, 5])
def test_strict_accepts_assigned_opcodes(opcode):
    wire = header(flags=opcode << 11) + question(wire_name(b"a", b"cn"))
    assert parse_message(wire, strict=True).opcode == opcode


@pytest.mark.parametrize("qdcount", [0, 9])
def test_strict_question_count_bounds(qdcount):
    wire = header(qd=qdcount) + question(wire_name(b"a", b"cn")) * qdcount
    assert parse_message(wire, strict=True) is None


def test_strict_accepts_eight_questions():
    wire = header(qd=8) + question(wire_name(b"a", b"cn")) * 8
    assert len(parse_message(wire, strict=True).questions) == 8


def test_strict_rejects_counts_that_cannot_fit():
    wire = header(an=3) + question(wire_name(b"a", b"cn"))
    assert parse_message(wire, strict=True) is None
    lenient = parse_message(wire)
    assert lenient is not None and lenient.malformed and lenient.questions == [DnsQuestion("a.cn", 1, 1)]


@pytest.mark.parametrize(
    ("qtype", "qclass", "accepted"),
    [
        (1, 1, True),
        (255, 255, True),  # ANY/ANY
        (16, 3, True),  # TXT CH (version.bind)
        (1, 4, True),  # HS
        (6, 254, True),  # NONE
        (12, 0x8001, True),  # mDNS unicast-response bit
        (1, 2, False),  # CSNET: obsolete
        (1, 0, False),
        (1, 0x8002, False),
        (0, 1, False),
        (261, 1, False),
        (32769, 1, True),  # DLV
        (65000, 1, False),
    ],
)
def test_strict_question_type_and_class(qtype, qclass, accepted):
    wire = header() + question(wire_name(b"a", b"cn"), qtype, qclass)
    assert (parse_message(wire, strict=True) is not None) is accepted
    assert parse_message(wire).questions == [DnsQuestion("a.cn", qtype, qclass)]


def test_strict_keeps_control_bytes_utf8_and_spaces_in_question_names():
    # DNS tunnels put any byte in their labels: analysts must see them, escaped (the rest of the
    # strict checks already keep random UDP out).
    assert parse_message(header() + question(wire_name(b"a\x01b", b"cn")), strict=True).questions[0].name == (
        "a\\001b.cn")
    assert parse_message(header() + question(wire_name(b"a\x7fb", b"cn")), strict=True).questions[0].name == (
        "a\\127b.cn")
    mdns_name = wire_name("Lucas’s iMac".encode(), b"_airplay", b"_tcp", b"local")
    msg = parse_message(header() + question(mdns_name, 33, 0x8001), strict=True)
    assert msg is not None
    assert msg.questions[0].name == "Lucas\\226\\128\\153s\\032iMac._airplay._tcp.local"


def test_strict_walks_authority_and_additional_sections():
    answer = record(b"\xc0\x0c", 1, bytes([192, 0, 2, 9]))
    authority = record(wire_name(b"cn"), 2, wire_name(b"ns", b"cn"))
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)  # OPT: class is the UDP size, not checked
    wire = header(flags=0x8180, an=1, ns=1, ar=1) + question(wire_name(b"a", b"cn")) + answer + authority + opt
    msg = parse_message(wire, strict=True)
    assert msg is not None and msg.answers == [DnsAnswer("a.cn", 1, 300, "192.0.2.9")]
    assert parse_message(wire[:-1], strict=True) is None  # the OPT record cut short
    bad_class = wire[: -len(opt)] + b"\x00" + struct.pack("!HHIH", 1, 7, 0, 4) + b"\x01\x02\x03\x04"
    assert parse_message(bad_class, strict=True) is None


# --- non-strict: keep what parsed ------------------------------------------------------------------


def test_broken_answer_keeps_earlier_answers():
    good = record(b"\xc0\x0c", 1, bytes([10, 0, 0, 1]))
    broken = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + b"\x0a"  # rdata cut short
    wire = header(flags=0x8180, an=2) + question(wire_name(b"qq", b"com")) + good + broken
    msg = parse_message(wire)
    assert msg is not None and msg.malformed
    assert msg.answers == [DnsAnswer("qq.com", 1, 300, "10.0.0.1")]
    assert parse_message(wire, strict=True) is None


@pytest.mark.parametrize(("rtype", "rdata"), [(1, b"\x01\x02\x03"), (28, b"\x00" * 15), (5, b"\x01a\x00\x00")])
def test_bad_rdata_is_skipped_and_later_records_still_parse(rtype, rdata):
    wire = (
        header(flags=0x8180, an=2)
        + question(wire_name(b"qq", b"com"))
        + record(b"\xc0\x0c", rtype, rdata)
        + record(b"\xc0\x0c", 1, bytes([10, 0, 0, 2]))
    )
    msg = parse_message(wire)
    assert msg.malformed and msg.skipped_answers == 1
    assert msg.answers == [DnsAnswer("qq.com", 1, 300, "10.0.0.2")]
    assert parse_message(wire, strict=True) is None


def test_ttl_above_signed_range_reads_as_zero_like_dnspython():
    wire = (
        header(flags=0x8180, an=1)
        + question(wire_name(b"a", b"cn"))
        + record(b"\xc0\x0c", 1, b"\x01\x01\x01\x01", ttl=0x80000000)
    )
    assert parse_message(wire).answers[0].ttl == 0
    assert oracle_view(wire)[1][0][2] == 0


def test_mdns_cache_flush_records_are_decoded():
    wire = (
        header(ident=0, flags=0x8400, qd=0, an=3)
        + record(wire_name(b"host", b"local"), 1, bytes([192, 168, 2, 17]), rclass=0x8001, ttl=120)
        + record(b"\xc0\x0c", 28, ipaddress.IPv6Address("fe80::1").packed, rclass=0x8001, ttl=120)
        + record(b"\xc0\x0c", 16, b"\x00", rclass=0x8001)
    )
    msg = parse_message(wire)
    assert msg.answers == [
        DnsAnswer("host.local", 1, 120, "192.168.2.17"),
        DnsAnswer("host.local", 28, 120, "fe80::1"),
    ]
    assert msg.skipped_answers == 1 and not msg.malformed
    assert oracle_view(wire)[1] == [tuple(a) for a in msg.answers]


def test_chaos_class_address_records_are_skipped():
    # CH-class A records carry a domain and a 16-bit address (RFC 1035 3.4.1 is IN only).
    wire = (
        header(flags=0x8180, an=1)
        + question(wire_name(b"a", b"cn"))
        + record(b"\xc0\x0c", 1, b"\xc0\x0c\x00\x01", rclass=3)
    )
    msg = parse_message(wire)
    assert msg.answers == [] and msg.skipped_answers == 1 and not msg.malformed


def test_ptr_and_dname_targets():
    wire = (
        header(flags=0x8180, an=2)
        + question(wire_name(b"4", b"3", b"2", b"1", b"in-addr", b"arpa"), 12)
        + record(b"\xc0\x0c", 12, wire_name(b"host", b"example"))
        + record(wire_name(b"old", b"example"), 39, wire_name(b"new", b"example"))
    )
    msg = parse_message(wire, strict=True)
    assert msg.answers == [
        DnsAnswer("4.3.2.1.in-addr.arpa", 12, 300, "host.example"),
        DnsAnswer("old.example", 39, 300, "new.example"),
    ]
    assert oracle_view(wire)[1] == [tuple(a) for a in msg.answers]


def test_update_delete_records_are_not_malformed():
    # RFC 2136 2.5.2: "delete an RRset" is class ANY with no rdata, in the update section.
    zone = question(wire_name(b"example"), 6, 1)
    delete = record(wire_name(b"host", b"example"), 1, b"", rclass=255, ttl=0)
    wire = header(flags=5 << 11, qd=1, ns=1) + zone + delete
    msg = parse_message(wire, strict=True)
    assert msg is not None and msg.opcode == 5 and not msg.malformed
    prerequisite = header(flags=5 << 11, qd=1, an=1) + zone + delete
    msg = parse_message(prerequisite, strict=True)
    assert msg.answers == [] and msg.skipped_answers == 1


def test_question_count_above_bound_keeps_the_first_64():
    wire = header(qd=100) + question(wire_name(b"a", b"cn")) * 100
    msg = parse_message(wire)
    assert msg.malformed and len(msg.questions) == 64


def test_too_short_for_a_header_is_none():
    for length in range(12):
        assert parse_message(VALID_QUERY[:length]) is None
        assert parse_message(VALID_QUERY[:length], strict=True) is None


def test_every_truncation_of_a_response_is_handled():
    response = dns.message.make_response(dns.message.make_query("a.wechat.com", "AAAA", use_edns=0))
    response.answer.append(dns.rrset.from_text("a.wechat.com.", 5, "IN", "CNAME", "b.wechat.com."))
    response.answer.append(dns.rrset.from_text("b.wechat.com.", 5, "IN", "AAAA", "2001:db8::5"))
    wire = response.to_wire()
    full = parse_message(wire, strict=True)
    assert full is not None and len(full.answers) == 2
    for cut in range(12, len(wire)):
        prefix = wire[:cut]
        assert parse_message(prefix, strict=True) is None
        partial = parse_message(prefix)
        assert partial is not None
        assert partial.questions == full.questions[: len(partial.questions)]
        assert partial.answers == full.answers[: len(partial.answers)]
        if cut < len(wire) - 11:  # the OPT record is last and is not walked by the lenient mode
            assert partial.malformed


# --- DNS over TCP framing ---------------------------------------------------------------------------


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def test_two_messages_in_one_segment():
    first, second = VALID_QUERY, header(ident=7) + question(wire_name(b"b", b"cn"))
    messages, used = split_tcp_messages(framed(first) + framed(second))
    assert messages == [first, second]
    assert used == len(first) + len(second) + 4


def test_one_message_split_across_segments():
    stream = framed(VALID_QUERY)
    for cut in range(len(stream)):
        assert split_tcp_messages(stream[:cut]) == ([], 0)
    buffered = stream[:9]
    messages, used = split_tcp_messages(buffered)
    buffered = buffered[used:] + stream[9:] + framed(VALID_QUERY)[:1]
    messages, used = split_tcp_messages(buffered)
    assert messages == [VALID_QUERY] and buffered[used:] == b"\x00"


def test_zero_length_frames_are_consumed():
    stream = b"\x00\x00" + framed(VALID_QUERY) + b"\x00\x00"
    assert split_tcp_messages(stream) == ([VALID_QUERY], len(stream))


def test_huge_length_prefix_waits_without_allocating():
    assert split_tcp_messages(b"\xff\xff" + b"\x00" * 100) == ([], 0)


# --- hypothesis: hostile bytes and dnspython round trips --------------------------------------------

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    for strict in (False, True):
        msg = parse_message(data, strict=strict)
        assert msg is None or isinstance(msg.questions, list)
    messages, used = split_tcp_messages(data)
    assert sum(len(m) + 2 for m in messages) <= used <= len(data)
    assert split_tcp_messages(data[used:])[0] == []  # what is left is an incomplete frame


@HYPOTHESIS
@given(st.binary(min_size=12, max_size=300))
def test_random_bytes_after_a_plausible_header_never_raise(tail):
    for counts in ((1, 0, 0, 0), (1, 3, 1, 1), (2, 40, 0, 0)):
        data = struct.pack("!6H", 1, 0x8180, *counts) + tail
        parse_message(data)
        parse_message(data, strict=True)


labels = st.binary(min_size=1, max_size=20)
names = st.lists(labels, min_size=0, max_size=6).map(lambda ls: dns.name.Name([*ls, b""]))
address_records = st.one_of(
    st.tuples(st.just("A"), st.binary(min_size=4, max_size=4).map(lambda b: str(ipaddress.IPv4Address(b)))),
    st.tuples(st.just("AAAA"), st.binary(min_size=16, max_size=16).map(lambda b: str(ipaddress.IPv6Address(b)))),
    st.tuples(st.sampled_from(["CNAME", "PTR", "DNAME"]), names.map(lambda n: n.to_text())),
    st.tuples(st.just("MX"), names.map(lambda n: "10 " + n.to_text())),
    st.tuples(st.just("TXT"), st.just('"v=spf1 -all"')),
)


@HYPOTHESIS
@given(
    qname=names,
    qtype=st.sampled_from([1, 5, 12, 16, 28, 33, 65, 255]),
    records=st.lists(st.tuples(names, st.integers(0, 2**32 - 1), address_records), max_size=6),
)
def test_dnspython_built_messages_round_trip(qname, qtype, records):
    query = dns.message.make_query(qname, qtype)
    response = dns.message.make_response(query)
    for owner, ttl, (rtype, text) in records:
        response.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, text))
    for wire in (query.to_wire(), response.to_wire()):
        msg = parse_message(wire)
        assert msg is not None and not msg.malformed
        questions, answers = oracle_view(wire)
        assert [tuple(q) for q in msg.questions] == questions
        assert [tuple(a) for a in msg.answers] == answers
        assert parse_message(wire, strict=True) == msg  # strict mode keeps every name, escaped
