"""Tests for netwatch.protocols.http.parse_request_head."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.protocols.common import Status
from netwatch.protocols.http import (
    HOST_FROM_ABSOLUTE_URI,
    HOST_FROM_CONNECT,
    HOST_FROM_HEADER,
    MAX_HEAD_LENGTH,
    parse_request_head,
)
from tests.test_proto_dns_corpus import tshark_fields

BROWSER_GET = (
    b"GET /pay/index.htm?x=1 HTTP/1.1\r\n"
    b"Host: mobilegw.alipay.com\r\n"
    b"User-Agent: Mozilla/5.0 (Linux; Android 9; Nokia 2.2)\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)


def test_origin_form_request():
    result = parse_request_head(BROWSER_GET + b"body bytes")
    assert result.status is Status.OK
    assert (result.method, result.target, result.version) == ("GET", "/pay/index.htm?x=1", "HTTP/1.1")
    assert (result.host, result.port, result.host_source) == ("mobilegw.alipay.com", None, HOST_FROM_HEADER)
    assert result.user_agent == "Mozilla/5.0 (Linux; Android 9; Nokia 2.2)"
    assert result.complete and result.head_length == len(BROWSER_GET)


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"OPTIONS", b"DELETE", b"PROPFIND", b"BREW", b"get"])
def test_any_method_token(method):
    result = parse_request_head(method + b" / HTTP/1.0\r\nHost: a.example\r\n\r\n")
    assert result.status is Status.OK and result.method == method.decode()
    assert result.version == "HTTP/1.0"


def test_absolute_uri_wins_over_host_header():
    head = b"GET http://user:pw@a.example:8080/x?y#z HTTP/1.1\r\nHost: b.example\r\n\r\n"
    result = parse_request_head(head)
    assert (result.host, result.port, result.host_source) == ("a.example", 8080, HOST_FROM_ABSOLUTE_URI)
    assert result.target == "http://user:pw@a.example:8080/x?y#z"


@pytest.mark.parametrize(
    ("target", "host", "port"),
    [
        (b"http://a.example", "a.example", None),
        (b"https://a.example?q", "a.example", None),
        (b"http://[2001:db8::1]:81/", "2001:db8::1", 81),
        (b"ftp://files.example/", "files.example", None),
    ],
)
def test_absolute_uri_forms(target, host, port):
    result = parse_request_head(b"GET " + target + b" HTTP/1.1\r\n\r\n")
    assert (result.host, result.port, result.host_source) == (host, port, HOST_FROM_ABSOLUTE_URI)


def test_connect_authority_form():
    result = parse_request_head(b"CONNECT wx.qq.com:443 HTTP/1.1\r\nHost: wx.qq.com:443\r\n\r\n")
    assert (result.host, result.port, result.host_source) == ("wx.qq.com", 443, HOST_FROM_CONNECT)


def test_connect_to_ipv6_literal():
    result = parse_request_head(b"CONNECT [2001:db8::7]:8443 HTTP/1.1\r\n\r\n")
    assert (result.host, result.port, result.host_source) == ("2001:db8::7", 8443, HOST_FROM_CONNECT)


@pytest.mark.parametrize(
    ("host_value", "host", "port"),
    [
        (b"a.example:8080", "a.example", 8080),
        (b"a.example", "a.example", None),
        (b"[::1]:80", "::1", 80),
        (b"[fe80::1]", "fe80::1", None),
        (b"2001:db8::1", "2001:db8::1", None),  # unbracketed IPv6: kept whole
        (b"a.example:99999", "a.example", None),  # out-of-range port dropped
        (b"a.example:http", "a.example", None),
        (b"  A.Example  ", "A.Example", None),  # case kept, whitespace trimmed
        (b"a\xffb.example", "a\\255b.example", None),
        (b"a b;c", "a\\032b\\;c", None),
    ],
)
def test_host_header_values(host_value, host, port):
    result = parse_request_head(b"GET / HTTP/1.1\r\nhOsT:" + host_value + b"\r\n\r\n")
    assert result.status is Status.OK
    assert (result.host, result.port, result.host_source) == (host, port, HOST_FROM_HEADER)


def test_empty_host_header_and_http10_without_host():
    empty = parse_request_head(b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
    assert empty.status is Status.OK and empty.host is None and empty.host_source is None
    bare = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
    assert bare.status is Status.OK and bare.host is None and bare.complete


def test_first_host_header_is_used():
    result = parse_request_head(b"GET / HTTP/1.1\r\nHost: first.example\r\nHost: second.example\r\n\r\n")
    assert result.host == "first.example"


def test_bare_lf_line_ends():
    head = b"GET / HTTP/1.1\nHost: wps.cn\nUser-Agent: WPS\n\n"
    result = parse_request_head(head)
    assert result.status is Status.OK and result.host == "wps.cn" and result.user_agent == "WPS"
    assert result.head_length == len(head)


def test_leading_empty_lines_are_skipped():
    result = parse_request_head(b"\r\n\r\n" + BROWSER_GET)
    assert result.status is Status.OK and result.head_length == len(BROWSER_GET) + 4


def test_folded_user_agent_is_joined():
    result = parse_request_head(b"GET / HTTP/1.1\r\nUser-Agent: A/1\r\n  (x)\r\nHost: h\r\n\r\n")
    assert result.user_agent == "A/1 (x)" and result.host == "h"


def test_odd_bytes_in_target_and_user_agent_are_escaped():
    result = parse_request_head(b"GET /\x1b[2J\\ HTTP/1.1\r\nUser-Agent: x\x00\xe9\r\n\r\n")
    assert result.target == "/\\x1b[2J\\x5c"
    assert result.user_agent == "x\\x00\\xe9"


def test_need_more_on_every_prefix_of_a_head():
    for cut in range(len(BROWSER_GET)):
        assert parse_request_head(BROWSER_GET[:cut]).status is Status.NEED_MORE, cut
    assert parse_request_head(BROWSER_GET).status is Status.OK


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01",  # TLS ClientHello
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b" GET / HTTP/1.1\r\n\r\n",
        b"GET/ HTTP/1.1\r\n",
        b"G3T / HTTP/1.1\r\n",
        b"OPTIONS rtsp://cam.example/ RTSP/1.0\r\n\r\n",
        b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
        b"A" * 40 + b" / HTTP/1.1\r\n",  # no method is that long
        b"\r\n" * 10 + b"GET / HTTP/1.1\r\n\r\n",
        b"GET /\r\n",  # HTTP/0.9 simple request: no version, not HTTP/1.x
    ],
)
def test_not_http(data):
    assert parse_request_head(data).status is Status.NOT_MINE


@pytest.mark.parametrize(
    "data",
    [b"GET / HTTP/3.0\r\n\r\n", b"GET / HTTP/1.1x\r\n\r\n", b"GET  HTTP/1.1\r\n\r\n", b"GET / HTTP/0.9\r\n"],
)
def test_invalid_request_lines(data):
    assert parse_request_head(data).status is Status.INVALID


def test_oversized_head_with_host_is_a_partial_ok():
    head = b"GET / HTTP/1.1\r\nHost: big.example:81\r\nCookie: " + b"c" * MAX_HEAD_LENGTH
    result = parse_request_head(head)
    assert result.status is Status.OK and not result.complete
    assert (result.host, result.port) == ("big.example", 81)


def test_oversized_head_with_absolute_uri_is_a_partial_ok():
    head = b"GET http://u.example/ HTTP/1.1\r\n" + b"X-Pad: pad\r\n" * 2000
    result = parse_request_head(head)
    assert result.status is Status.OK and not result.complete and result.host == "u.example"


def test_oversized_head_without_host_is_invalid():
    head = b"GET / HTTP/1.1\r\n" + b"X-Pad: pad\r\n" * 2000
    assert len(head) > MAX_HEAD_LENGTH
    assert parse_request_head(head).status is Status.INVALID
    assert parse_request_head(head[: MAX_HEAD_LENGTH - 1]).status is Status.NEED_MORE


def test_host_after_the_bound_is_not_seen():
    head = b"GET / HTTP/1.1\r\n" + b"X-Pad: pad\r\n" * 2000 + b"Host: late.example\r\n\r\n"
    assert parse_request_head(head).status is Status.INVALID


def test_oversized_request_line_is_invalid():
    assert parse_request_head(b"GET /" + b"a" * MAX_HEAD_LENGTH).status is Status.INVALID


def test_ssdp_request_over_udp():
    result = parse_request_head(b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n')
    assert result.status is Status.OK and result.method == "M-SEARCH"
    assert (result.host, result.port) == ("239.255.255.250", 1900)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    result = parse_request_head(data)
    assert result.status in Status
    prefixed = parse_request_head(b"GET / HTTP/1.1\r\n" + data)
    assert prefixed.status in (Status.OK, Status.NEED_MORE)


@settings(max_examples=200, deadline=None)
@given(
    host=st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
    user_agent=st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
)
def test_random_header_values_stay_printable(host, user_agent):
    result = parse_request_head(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nUser-Agent: " + user_agent + b"\r\n\r\n")
    assert result.status is Status.OK
    for text in (result.host, result.user_agent):
        assert text is None or all(0x20 <= ord(c) < 0x7F for c in text)


@pytest.mark.system
def test_corpus_requests_match_tshark():
    rows = tshark_fields(
        "http.request && !icmp",
        ["tcp.payload", "udp.payload", "http.request.method", "http.host", "http.user_agent"],
    )
    assert len(rows) >= 10  # wget, Chrome and CaptiveNetworkSupport GETs, SSDP M-SEARCHes
    for tcp_payload, udp_payload, method, host, user_agent in rows:
        result = parse_request_head(bytes.fromhex(tcp_payload or udp_payload))
        assert result.status is Status.OK and result.complete
        assert result.method == method
        authority = result.host if result.port is None else f"{result.host}:{result.port}"
        assert (authority, result.host_source) == (host, HOST_FROM_HEADER)
        assert result.user_agent == (user_agent or None)
