"""The fast paths of the TLS parser give the same answers as the plain definitions they replace.

JA4 is built from sorted integers packed and hex-joined, GREASE is filtered by set lookup, results
are memoised and computed on first access; names skip escape_name_bytes when every byte is kept
verbatim. Each is checked here against a direct, string-based rendering of its definition.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.protocols.common import Status, escape_name_bytes
from netwatch.protocols.tls import _compute_ja4, _escape, is_grease, parse_client_hello_message
from tests.test_proto_tls import JA4_SPEC_CIPHERS, JA4_SPEC_EXTENSIONS, build_hello_message

# JA4.md's version table (TLS 1.3 ... SSL 2, then DTLS 1.0, 1.2, 1.3).
_VERSION_CODES = {
    0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
    0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3",
}  # fmt: skip


def reference_ja4(transport, legacy, versions, ciphers, extensions, sigalgs, alpn_first) -> str:
    """JA4 as FoxIO's JA4.md words it: 4-hex-digit strings, sorted as strings, SHA-256 truncated."""
    real_versions = [v for v in versions if not is_grease(v)]
    version = max(real_versions) if real_versions else legacy
    cipher_hex = [f"{c:04x}" for c in ciphers if not is_grease(c)]
    exts = [e for e in extensions if not is_grease(e)]
    edges = chr(alpn_first[0]) + chr(alpn_first[-1]) if alpn_first else ""
    if not alpn_first:
        alpn = "00"
    elif edges.isascii() and edges.isalnum():
        alpn = edges
    else:
        alpn = alpn_first.hex()[0] + alpn_first.hex()[-1]
    part_a = (
        f"{transport}{_VERSION_CODES.get(version, '00')}{'d' if 0 in exts else 'i'}"
        f"{min(len(cipher_hex), 99):02d}{min(len(exts), 99):02d}{alpn}"
    )

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    part_b = digest(",".join(sorted(cipher_hex))) if cipher_hex else "000000000000"
    ext_hex = sorted(f"{e:04x}" for e in exts if e not in (0x0000, 0x0010))
    sig_hex = [f"{s:04x}" for s in sigalgs if not is_grease(s)]
    hashed_text = ",".join(ext_hex) + ("_" + ",".join(sig_hex) if sig_hex else "")
    part_c = digest(hashed_text) if ext_hex else "000000000000"
    return f"{part_a}_{part_b}_{part_c}"


# Code points drawn mostly from GREASE, the hashed-out SNI/ALPN and ordinary values.
_code_points = st.one_of(
    st.sampled_from([0x0A0A, 0x1A1A, 0xFAFA, 0x0000, 0x0010, 0x002B, 0x000D]),
    st.integers(0, 0xFFFF),
)


@settings(max_examples=300, deadline=None)
@given(
    transport=st.sampled_from("tqd"),
    legacy=st.sampled_from([0x0301, 0x0303, 0x0300, 0x0399]),
    versions=st.lists(st.sampled_from([0x0304, 0x0303, 0x0302, 0x7A7A, 0xFEFD, 0x0002, 0x1234]), max_size=4),
    ciphers=st.lists(_code_points, max_size=120),
    extensions=st.lists(_code_points, max_size=120),
    sigalgs=st.lists(_code_points, max_size=20),
    alpn_first=st.binary(max_size=6),
)
def test_fast_ja4_matches_the_string_definition(transport, legacy, versions, ciphers, extensions, sigalgs, alpn_first):
    args = (transport, legacy, tuple(versions), tuple(ciphers), tuple(extensions), tuple(sigalgs), alpn_first)
    assert _compute_ja4(*args) == reference_ja4(*args)


def test_ja4_memo_keeps_hellos_that_differ_only_in_signature_algorithms_apart():
    first = parse_client_hello_message(build_hello_message())
    exts = [e for e in JA4_SPEC_EXTENSIONS if e != 0x000D]
    other_sigalgs = (0x000D, b"\x00\x04\x08\x04\x04\x03")
    second = parse_client_hello_message(build_hello_message(extensions=exts, extra=[other_sigalgs]))
    assert first.status is second.status is Status.OK
    assert second.signature_algorithms == (0x0804, 0x0403)
    # Same extension set (order is not hashed), same ciphers: only the sig-alg list differs.
    assert first.ja4.split("_")[:2] == second.ja4.split("_")[:2]
    assert first.ja4 != second.ja4
    assert parse_client_hello_message(build_hello_message()).ja4 == first.ja4 == first.ja4
    args = ("q", 0x0303, (0x0304, 0x0303), tuple(JA4_SPEC_CIPHERS), second.extensions, (0x0804, 0x0403), b"h2")
    assert second.ja4 == reference_ja4(*args)


def test_ja4_is_only_defined_for_a_whole_hello():
    message = build_hello_message()
    cut = parse_client_hello_message(message[:-1])
    assert cut.status is Status.NEED_MORE and cut.sni == "www.example.com"
    assert cut.ja4 is None and cut.cipher_suites == tuple(JA4_SPEC_CIPHERS)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=30).map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_name_escape_fast_path_matches_escape_name_bytes(raw):
    assert _escape(raw) == escape_name_bytes(raw)


def test_name_escape_fast_path_on_names_seen_in_hellos():
    for raw in (b"www.example.com", b"http/1.1", b"h2", b"xn--fiqs8s.example", b"a_b-c.d", b"", b"ev il\x00;"):
        assert _escape(raw) == escape_name_bytes(raw)
