"""TLS ClientHello parser: record reassembly, extension walking, bounds, hostile input, JA4."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.protocols.common import Status
from netwatch.protocols.tls import (
    MAX_CLIENT_HELLO,
    MAX_RECORDS,
    ClientHello,
    is_grease,
    parse_client_hello_message,
    parse_client_hello_stream,
)

# The cipher, extension and signature-algorithm lists of the worked example in FoxIO's JA4 spec
# (https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md), whose JA4 is given there as
# t13d1516h2_8daaf6152771_e5627efa2ab1.
JA4_SPEC_CIPHERS = [
    0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
    0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035,
]  # fmt: skip
JA4_SPEC_EXTENSIONS = [
    0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D,
    0x0005, 0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015,
]  # fmt: skip
JA4_SPEC_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]


def _vec(length_size: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(length_size, "big") + payload


def extension_body(ext_type: int, *, sni: bytes = b"", alpn: tuple[bytes, ...] = ()) -> bytes:
    """A plausible body for the extension types the parser reads; empty for the others."""
    if ext_type == 0x0000:
        return _vec(2, b"\x00" + _vec(2, sni))
    if ext_type == 0x0010:
        return _vec(2, b"".join(_vec(1, protocol) for protocol in alpn))
    if ext_type == 0x002B:
        return _vec(1, struct.pack(">HH", 0x0304, 0x0303))
    if ext_type == 0x000D:
        return _vec(2, b"".join(struct.pack(">H", s) for s in JA4_SPEC_SIGALGS))
    return b""


def build_hello_body(
    *,
    sni: bytes = b"www.example.com",
    alpn: tuple[bytes, ...] = (b"h2", b"http/1.1"),
    ciphers: list[int] | None = None,
    extensions: list[int] | None = None,
    extra: list[tuple[int, bytes]] = (),
    legacy_version: int = 0x0303,
    with_extensions: bool = True,
) -> bytes:
    ciphers = JA4_SPEC_CIPHERS if ciphers is None else ciphers
    extensions = JA4_SPEC_EXTENSIONS if extensions is None else extensions
    body = struct.pack(">H", legacy_version) + bytes(range(32)) + _vec(1, bytes(32))
    body += _vec(2, b"".join(struct.pack(">H", c) for c in ciphers)) + b"\x01\x00"
    if with_extensions:
        blocks = [(t, extension_body(t, sni=sni, alpn=alpn)) for t in extensions] + list(extra)
        body += _vec(2, b"".join(struct.pack(">HH", t, len(b)) + b for t, b in blocks))
    return body


def build_hello_message(**kwargs) -> bytes:
    return b"\x01" + _vec(3, build_hello_body(**kwargs))


def as_records(message: bytes, fragment: int = 16384, version: int = 0x0301) -> bytes:
    out = b""
    for start in range(0, len(message), fragment):
        chunk = message[start : start + fragment]
        out += struct.pack(">BHH", 22, version, len(chunk)) + chunk
    return out


# --- happy paths ---


def test_stream_hello_fields_and_ja4_match_the_spec_example():
    hello = parse_client_hello_stream(as_records(build_hello_message()))
    assert hello.status is Status.OK
    assert hello.sni == "www.example.com"
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.legacy_version == 0x0303
    assert hello.supported_versions == (0x0304, 0x0303)
    assert hello.cipher_suites == tuple(JA4_SPEC_CIPHERS)
    assert hello.extensions == tuple(JA4_SPEC_EXTENSIONS)
    assert hello.ech is False
    assert hello.ja4 == "t13d1516h2_8daaf6152771_e5627efa2ab1"


def test_message_parser_fingerprints_as_quic_by_default():
    hello = parse_client_hello_message(build_hello_message())
    assert hello.status is Status.OK
    assert hello.ja4 == "q13d1516h2_8daaf6152771_e5627efa2ab1"


def test_ja4_ignores_grease_and_handles_no_sni_no_alpn():
    grease_ciphers = [0x0A0A, *JA4_SPEC_CIPHERS]
    exts = [0x1A1A] + [e for e in JA4_SPEC_EXTENSIONS if e not in (0x0000, 0x0010)]
    hello = parse_client_hello_message(build_hello_message(ciphers=grease_ciphers, extensions=exts))
    assert hello.sni is None and hello.alpn == ()
    # Same b and c parts as the spec example: GREASE, SNI and ALPN are not hashed.
    assert hello.ja4 == "q13i151400_8daaf6152771_e5627efa2ab1"


def test_ja4_non_alphanumeric_alpn_uses_hex_edges():
    # The spec's own cases: 0x30 0xAB 0xCD 0x31 -> "01" (alphanumeric edges), 0xAB 0xCD -> "ad" (hex).
    hello = parse_client_hello_message(build_hello_message(alpn=(b"\x30\xab\xcd\x31",)))
    assert hello.ja4.split("_")[0].endswith("01")
    hello = parse_client_hello_message(build_hello_message(alpn=(b"\xab\xcd",)))
    assert hello.ja4.split("_")[0].endswith("ad")


def test_grease_detection():
    assert all(is_grease(v) for v in (0x0A0A, 0x1A1A, 0xFAFA))
    assert not any(is_grease(v) for v in (0x0A1A, 0x1301, 0x0000))


def test_ech_flag_and_cover_sni():
    hello = parse_client_hello_stream(
        as_records(build_hello_message(sni=b"cover.example", extra=[(0xFE0D, b"\x00\x01\x02")]))
    )
    assert hello.status is Status.OK and hello.ech is True and hello.sni == "cover.example"
    assert hello.extensions[-1] == 0xFE0D


def test_first_host_name_wins_and_other_name_types_are_skipped():
    names = b"\x01" + _vec(2, b"not-a-host") + b"\x00" + _vec(2, b"first.example")
    names += b"\x00" + _vec(2, b"second.example")
    exts = [e for e in JA4_SPEC_EXTENSIONS if e != 0]
    hello = parse_client_hello_message(build_hello_message(extensions=exts, extra=[(0, _vec(2, names))]))
    assert hello.status is Status.OK and hello.sni == "first.example"


def test_idn_a_label_stays_and_hostile_bytes_are_escaped():
    assert parse_client_hello_message(build_hello_message(sni=b"xn--fiqs8s.example")).sni == ("xn--fiqs8s.example")
    hello = parse_client_hello_message(build_hello_message(sni=b"evil\n.exa mple\x00;"))
    assert hello.status is Status.OK
    assert hello.sni == "evil\\010.exa\\032mple\\000\\;"


def test_hello_without_extensions_is_ok():
    hello = parse_client_hello_stream(as_records(build_hello_message(with_extensions=False, ciphers=[0x2F])))
    assert hello.status is Status.OK
    assert hello.extensions == () and hello.sni is None and hello.cipher_suites == (0x2F,)


def test_message_fragmented_over_many_records_including_empty_ones():
    message = build_hello_message()
    records = as_records(message, fragment=7)
    assert parse_client_hello_stream(records).sni == "www.example.com"
    # Records of every allowed version 0x0300-0x0304 are accepted.
    for version in range(0x0300, 0x0305):
        assert parse_client_hello_stream(as_records(message, 100, version)).status is Status.OK


def test_too_many_records_is_invalid():
    message = build_hello_message()
    fragment = len(message) // (MAX_RECORDS + 2)
    assert parse_client_hello_stream(as_records(message, fragment)).status is Status.INVALID


def test_trailing_records_after_the_hello_are_ignored():
    data = as_records(build_hello_message()) + b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello"
    assert parse_client_hello_stream(data).status is Status.OK


# --- partial data ---


def test_need_more_reports_total_needed_and_partial_sni():
    data = as_records(build_hello_message())
    cut = data[:120]  # past the SNI extension, before the end
    hello = parse_client_hello_stream(cut)
    assert hello.status is Status.NEED_MORE
    assert hello.needed == len(data)
    sni_end = data.index(b"www.example.com") + len(b"www.example.com")
    assert parse_client_hello_stream(data[:sni_end]).sni == "www.example.com"
    assert parse_client_hello_stream(data[: sni_end - 1]).sni is None


def test_need_more_counts_record_headers_still_to_come():
    message = build_hello_message()
    data = as_records(message, fragment=100)
    hello = parse_client_hello_stream(data[:50])
    assert hello.status is Status.NEED_MORE
    # 50 bytes in, the first record ends at 105 and the rest of the message needs one more header.
    assert hello.needed == 105 + 5 + (len(message) - 100)
    assert hello.needed <= len(data)


def test_empty_and_header_only_inputs():
    assert parse_client_hello_stream(b"").status is Status.NEED_MORE
    assert parse_client_hello_stream(b"\x16").status is Status.NEED_MORE
    assert parse_client_hello_stream(b"\x16\x03\x01").status is Status.NEED_MORE
    assert parse_client_hello_message(b"").status is Status.NEED_MORE
    assert parse_client_hello_message(b"\x01\x00").status is Status.NEED_MORE


# --- not TLS / malformed ---


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x17\x03\x03\x00\x10" + bytes(16),  # application data first
        b"\x16\x02\x00\x00\x10" + bytes(16),  # record version 0x0200
        b"\x16\x03\x09\x00\x10" + bytes(16),  # record version 0x0309
        b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",  # ServerHello: the other direction
        # SSLv2-compatible CLIENT-HELLO (RFC 5246 appendix E.2): high bit length, msg type 1
        b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + bytes(37),
    ],
)
def test_not_mine(data):
    assert parse_client_hello_stream(data).status is Status.NOT_MINE


def test_message_parser_not_mine_for_other_handshake_types():
    assert parse_client_hello_message(b"\x02\x00\x00\x04abcd").status is Status.NOT_MINE


def test_invalid_cases():
    message = build_hello_message()
    huge = b"\x16\x03\x01\x40\x01" + b"\x01"  # record length 16385 > 2^14
    assert parse_client_hello_stream(huge).status is Status.INVALID
    too_big = b"\x01" + (MAX_CLIENT_HELLO + 1).to_bytes(3, "big")
    assert parse_client_hello_message(too_big).status is Status.INVALID
    assert parse_client_hello_stream(as_records(too_big)).status is Status.INVALID
    # An alert record in the middle of the hello's records.
    records = as_records(message, fragment=50)
    broken = records[:55] + b"\x15\x03\x03\x00\x02\x02\x28" + records[55:]
    assert parse_client_hello_stream(broken).status is Status.INVALID
    # Extension block length longer than the message; SNI list length lying inside its extension.
    body = bytearray(build_hello_body())
    ext_block = 2 + 32 + 1 + 32 + 2 + 2 * len(JA4_SPEC_CIPHERS) + 2
    body[ext_block : ext_block + 2] = (len(body) - ext_block).to_bytes(2, "big")
    assert parse_client_hello_message(b"\x01" + _vec(3, bytes(body))).status is Status.INVALID
    lying_sni = [(0, _vec(2, b"\x00\xff\xffabc"))]
    exts = [e for e in JA4_SPEC_EXTENSIONS if e != 0]
    assert parse_client_hello_message(build_hello_message(extensions=exts, extra=lying_sni)).status is (Status.INVALID)
    # Session id longer than 32, odd cipher-suite length, no compression methods.
    assert parse_client_hello_message(b"\x01" + _vec(3, b"\x03\x03" + bytes(32) + b"\x21" + bytes(40))).status is (
        Status.INVALID
    )
    odd = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x03abc" + b"\x01\x00"
    assert parse_client_hello_message(b"\x01" + _vec(3, odd)).status is Status.INVALID
    no_comp = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x00"
    assert parse_client_hello_message(b"\x01" + _vec(3, no_comp)).status is Status.INVALID


def test_invalid_result_keeps_fields_parsed_before_the_fault():
    exts = [e for e in JA4_SPEC_EXTENSIONS if e != 0x000D]
    bad_sigalgs = [(0x000D, b"\x00\x09\x04")]  # inner length 9 in a 3-byte extension
    hello = parse_client_hello_message(build_hello_message(extensions=exts, extra=bad_sigalgs))
    assert hello.status is Status.INVALID
    assert hello.sni == "www.example.com" and hello.ja4 is None


def test_large_post_quantum_sized_hello_over_several_records():
    big_key_share = (0x0033, bytes(9000))
    message = build_hello_message(extra=[big_key_share, (0xFE0D, bytes(300))])
    hello = parse_client_hello_stream(as_records(message, fragment=4000))
    assert hello.status is Status.OK and hello.sni == "www.example.com" and hello.ech


# --- every truncation and every split ---

SMALL_HELLO = as_records(build_hello_message(), fragment=180)


def test_every_truncation_is_need_more_with_a_sane_needed():
    for cut in range(len(SMALL_HELLO)):
        hello = parse_client_hello_stream(SMALL_HELLO[:cut])
        assert hello.status is Status.NEED_MORE, cut
        assert cut < hello.needed <= len(SMALL_HELLO), cut
    assert parse_client_hello_stream(SMALL_HELLO).status is Status.OK


def test_every_two_chunk_split_gives_the_same_sni():
    """A caller that buffers TCP chunks and re-calls on NEED_MORE gets the hello at any split."""
    for split in range(1, len(SMALL_HELLO)):
        first = parse_client_hello_stream(SMALL_HELLO[:split])
        assert first.status is Status.NEED_MORE
        second = parse_client_hello_stream(SMALL_HELLO[:split] + SMALL_HELLO[split:])
        assert (second.status, second.sni) == (Status.OK, "www.example.com")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data):
    for parse in (parse_client_hello_stream, parse_client_hello_message):
        result = parse(data)
        assert isinstance(result, ClientHello)
        assert isinstance(result.status, Status)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_hellos_never_raise(data):
    raw = bytearray(SMALL_HELLO)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    result = parse_client_hello_stream(bytes(raw[:cut]))
    assert isinstance(result.status, Status)
    if result.status is Status.NEED_MORE:
        assert result.needed > cut or result.needed == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(SMALL_HELLO)))
def test_truncated_message_is_need_more_or_invalid(cut):
    message = build_hello_message()
    result = parse_client_hello_message(message[: min(cut, len(message))])
    expected = Status.OK if cut >= len(message) else Status.NEED_MORE
    assert result.status is expected
