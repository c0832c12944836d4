"""Tests for netwatch.protocols.dhcp.parse_dhcp: scapy builds the packets, tshark reads the real ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from netwatch.protocols.dhcp import MAGIC_COOKIE, DhcpInfo, parse_dhcp
from tests.test_proto_dns_corpus import tshark_fields

MAC = bytes.fromhex("c4618b3582a9")


def build(options: list, **bootp_fields) -> bytes:
    fields = {"chaddr": MAC, "xid": 0x3903F326, **bootp_fields}
    return bytes(BOOTP(**fields) / DHCP(options=options))


REQUEST_OPTIONS = [
    ("message-type", "request"),
    ("client_id", b"\x01" + MAC),
    ("requested_addr", "192.168.2.17"),
    ("hostname", b"Lucas-iPhone"),
    ("vendor_class_id", b"android-dhcp-9"),
    ("param_req_list", [1, 121, 3, 6, 15, 119, 252]),
    (81, b"\x05\x00\x00\x05lucas\x07example\x03com\x00"),
    "end",
]
REQUEST = build(REQUEST_OPTIONS)
# Offsets where each option of REQUEST ends (240: right after the magic cookie).
OPTION_BOUNDARIES = {240 + len(bytes(DHCP(options=REQUEST_OPTIONS[:k]))) for k in range(len(REQUEST_OPTIONS))}


def test_request_fields():
    info = parse_dhcp(REQUEST)
    assert info == DhcpInfo(
        op=1,
        xid=0x3903F326,
        client_mac="c4:61:8b:35:82:a9",
        ciaddr="0.0.0.0",
        yiaddr="0.0.0.0",
        msg_type=3,
        hostname="Lucas-iPhone",
        vendor_class="android-dhcp-9",
        requested_ip="192.168.2.17",
        client_id="01c4618b3582a9",
        fqdn="lucas.example.com",
        param_request_list=(1, 121, 3, 6, 15, 119, 252),
        truncated=False,
    )


def test_ack_reply_addresses():
    info = parse_dhcp(build([("message-type", "ack"), "end"], op=2, ciaddr="10.0.0.5", yiaddr="10.0.0.9"))
    assert (info.op, info.msg_type, info.ciaddr, info.yiaddr) == (2, 5, "10.0.0.5", "10.0.0.9")
    assert info.hostname is None and info.param_request_list is None


def test_non_ethernet_hardware_has_no_mac():
    assert parse_dhcp(build(["end"], htype=6, hlen=6)).client_mac is None  # IEEE 802
    assert parse_dhcp(build(["end"], htype=1, hlen=16)).client_mac is None


def test_fqdn_ascii_form_and_trailing_dot():
    info = parse_dhcp(build([(81, b"\x01\x00\x00host.example.org."), "end"]))
    assert info.fqdn == "host.example.org"


def test_fqdn_wire_form_partial_name_and_odd_bytes():
    info = parse_dhcp(build([(81, b"\x04\xff\xff\x04a.b\xff\x03lan"), "end"]))  # no root label: partial
    assert info.fqdn == "a\\.b\\255.lan"


def test_fqdn_claiming_wire_form_but_ascii_falls_back():
    info = parse_dhcp(build([(81, b"\x04\x00\x00host.lan"), "end"]))
    assert info.fqdn == "host.lan"


def test_text_options_are_escaped_and_nul_terminators_dropped():
    info = parse_dhcp(build([("hostname", b"John's iPhone\x00"), ("vendor_class_id", b"MSFT 5.0"), "end"]))
    # Spaces stay readable in these free-text options; control bytes never pass through raw.
    assert info.hostname == "John's iPhone"
    assert info.vendor_class == "MSFT 5.0"
    hostile = parse_dhcp(build([("hostname", b"evil\nhost\x00"), ("vendor_class_id", b"a\r\"b"), "end"]))
    assert hostile.hostname == "evil\\010host"
    assert hostile.vendor_class == 'a\\013\\"b'
    assert parse_dhcp(build([("hostname", b"\x00\x00"), "end"])).hostname is None


def test_pad_options_and_missing_end():
    info = parse_dhcp(build(["pad", "pad", ("message-type", "discover"), "pad", ("hostname", b"h")]))
    assert info.msg_type == 1 and info.hostname == "h" and not info.truncated


def test_options_after_end_are_ignored():
    info = parse_dhcp(build([("message-type", "discover"), "end", ("hostname", b"ghost")]))
    assert info.msg_type == 1 and info.hostname is None


def test_option_running_past_the_buffer_keeps_earlier_options():
    data = build([("message-type", "inform"), "end"])
    data = data[: data.index(MAGIC_COOKIE) + 7] + b"\x0c\x20abc"  # hostname claims 32 bytes, has 3
    info = parse_dhcp(data)
    assert info.msg_type == 8 and info.hostname is None and info.truncated


def test_split_option_is_concatenated_rfc3396():
    info = parse_dhcp(build([("hostname", b"long-"), ("message-type", "request"), ("hostname", b"name"), "end"]))
    assert info.hostname == "long-name"


def test_requested_ip_of_wrong_length_is_ignored():
    assert parse_dhcp(build([(50, b"\x0a\x00\x00"), "end"])).requested_ip is None


@pytest.mark.parametrize(("overload", "field"), [(1, "file"), (2, "sname")])
def test_option_overload_reads_file_and_sname(overload, field):
    hidden = b"\x0c\x06hidden\xff"  # hostname option inside the overloaded field
    data = build([("message-type", "discover"), (52, bytes([overload])), "end"], **{field: hidden})
    assert parse_dhcp(data).hostname == "hidden"
    no_overload = build([("message-type", "discover"), "end"], **{field: hidden})
    assert parse_dhcp(no_overload).hostname is None


def test_not_dhcp():
    assert parse_dhcp(b"") is None
    assert parse_dhcp(REQUEST[:239]) is None  # cut inside the magic cookie
    assert parse_dhcp(REQUEST[:236] + b"\x00\x00\x00\x00" + REQUEST[240:]) is None  # plain BOOTP
    assert parse_dhcp(b"\x03" + REQUEST[1:]) is None  # op is neither request nor reply


def test_every_truncation_never_raises_and_keeps_a_prefix_of_options():
    full = parse_dhcp(REQUEST)
    for cut in range(240, len(REQUEST)):
        info = parse_dhcp(REQUEST[:cut])
        assert info is not None and info.xid == full.xid and info.client_mac == full.client_mac
        assert info.msg_type == (full.msg_type if cut >= 243 else None)  # option 53 is bytes 240..242
        # Options are all or nothing: a cut option is dropped, never returned half.
        assert info.hostname in (None, full.hostname)
        assert info.client_id in (None, full.client_id)
        assert info.param_request_list in (None, full.param_request_list)
        assert info.fqdn in (None, full.fqdn)
        assert info.truncated is (cut not in OPTION_BOUNDARIES)
    for cut in range(240):
        assert parse_dhcp(REQUEST[:cut]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_options_never_raise(tail):
    header = REQUEST[:240]
    info = parse_dhcp(header + tail)
    assert info is not None and info.client_mac == "c4:61:8b:35:82:a9"
    for text in (info.hostname, info.vendor_class, info.fqdn):
        assert text is None or all(0x21 <= ord(c) < 0x7F for c in text)
    overloaded = parse_dhcp(header + b"\x34\x01\x03" + tail)
    assert overloaded is not None and overloaded.client_mac == info.client_mac


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    parse_dhcp(data)


@pytest.mark.system
def test_corpus_messages_match_tshark():
    rows = tshark_fields(
        "dhcp && !icmp",
        ["udp.payload", "dhcp.hw.mac_addr", "dhcp.option.dhcp", "dhcp.option.hostname", "dhcp.option.vendor_class_id"],
    )
    assert len(rows) >= 20  # android.pcap and iphone.pcap: DISCOVER/OFFER/REQUEST/ACK and INFORMs
    for payload, mac, msg_type, hostname, vendor_class in rows:
        info = parse_dhcp(bytes.fromhex(payload))
        assert info is not None and not info.truncated
        assert info.client_mac == mac
        assert info.msg_type == int(msg_type)
        assert info.hostname == (hostname or None)
        assert info.vendor_class == (vendor_class or None)
