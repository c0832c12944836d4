"""QUIC beyond IETF v1/v2: hellos with holes, reserved and Facebook versions, Google QUIC, 0-RTT first.

Every case is a capture built here from the description of real traffic, scanned end to end.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from netwatch.pipeline import Pipeline
from netwatch.protocols import gquic
from netwatch.protocols.common import Status
from netwatch.protocols.quic import QUIC_Q050, QUIC_T050, QUIC_T051, QuicInitialAssembler, version_params
from netwatch.protocols.tls import parse_client_hello_pieces
from netwatch.scan import scan_paths
from netwatch.signatures import load_signature_set
from tests.quicbuild import (
    browser_client_hello,
    chlo,
    crypto_frame,
    gquic_public_packet,
    gquic_q046_packet,
    padded,
    protect_initial,
    write_udp_pcap,
)

CLIENT = ("192.0.2.10", 50123, "198.51.100.7", 443)
DCID = bytes.fromhex("c0ffee0123456789")


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def scan_names(path, sigset) -> list[tuple[str, str, dict]]:
    events: list[dict] = []
    pipeline = Pipeline(sigset, emit_all=True)
    scan_paths([str(path)], pipeline, events.append)
    assert pipeline.internal_errors == 0
    return [(e["netwatch"]["evidence"], e["netwatch"]["name"], e["netwatch"].get("detail") or {})
            for e in events if e["netwatch"]["name"]]


def gapped_initial(hello: bytes, holes: tuple[int, int]) -> bytes:
    """One Initial carrying the hello minus [start, end): the second Initial that held it never left."""
    start, end = holes
    frames = b"\x01" + crypto_frame(0, hello[:start]) + b"\x01" + crypto_frame(end, hello[end:])
    return protect_initial(padded(frames, 1250), dcid=DCID)


# --- item: a post-quantum hello with a hole inside key_share ---


def test_chromium_hello_with_a_hole_in_key_share_names_its_server(tmp_path, sigset):
    """CRYPTO at 0-78 and 1049-1937 of a 1938-byte hello; the hole lies inside the key_share."""
    hello = browser_client_hello("pay.weixin.qq.com", total=1938)
    assert len(hello) == 1938
    datagram = gapped_initial(hello, (79, 1049))
    assembler = QuicInitialAssembler()
    assert assembler.add(CLIENT, datagram, 0.0) is None  # never completes
    partial = assembler.partial(CLIENT)
    assert partial.status is Status.NEED_MORE and partial.sni == "pay.weixin.qq.com"
    assert partial.alpn == ("h3",) and partial.ja4 is None
    names = scan_names(write_udp_pcap(tmp_path / "gap.pcap", [datagram]), sigset)
    assert [(kind, name, detail.get("partial")) for kind, name, detail in names] == [
        ("quic_sni", "pay.weixin.qq.com", True)]


def test_no_guessing_when_the_sni_or_a_header_before_it_is_missing(tmp_path, sigset):
    hello = browser_client_hello("pay.weixin.qq.com", total=1938)
    sni_at = hello.index(b"pay.weixin.qq.com")
    # The hole swallows the last bytes of the name: nothing is reported.
    cut = gapped_initial(hello, (79, sni_at + 10))
    assert scan_names(write_udp_pcap(tmp_path / "sni-cut.pcap", [cut]), sigset) == []
    # The hole ends inside the header of the extension after key_share: the walk cannot go on.
    key_share_end = hello.index(b"\x00\x2b\x00\x03")
    cut = gapped_initial(hello, (79, key_share_end + 2))
    assert scan_names(write_udp_pcap(tmp_path / "header-cut.pcap", [cut]), sigset) == []
    # An SNI before the hole is read as well.
    early = browser_client_hello("pay.weixin.qq.com", total=1938, sni_first=True)
    names = scan_names(write_udp_pcap(tmp_path / "early.pcap", [gapped_initial(early, (200, 1049))]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "pay.weixin.qq.com")]


def test_pieces_parser_on_hostile_input():
    hello = browser_client_hello("a.example")
    assert parse_client_hello_pieces([(5, hello[5:])]) is None  # no handshake header: nothing to walk
    assert parse_client_hello_pieces([(0, hello)]).status is Status.OK
    lying = bytearray(hello[:60])
    lying[49:51] = b"\xff\xff"  # an extensions block that does not end with the message
    assert parse_client_hello_pieces([(0, bytes(lying)), (1000, hello[1000:])]).status is Status.INVALID
    for cut in range(0, 80, 7):
        result = parse_client_hello_pieces([(0, hello[:cut]), (cut + 30, hello[cut + 30:])])
        assert result is None or result.sni in (None, "a.example")


# --- item: versions beyond v1/v2 ---


def small_hello(name: str) -> bytes:
    return browser_client_hello(name, total=700, post_quantum=False)


def v1_payload(name: str) -> bytes:
    return padded(crypto_frame(0, small_hello(name)))


@pytest.mark.parametrize(("version", "attempt"), [
    (0x1A2A3A4A, 0),  # reserved, v1 keys (quic-go)
    (0xDADADADA, 1),  # reserved, draft-29 keys
    (0xFACEB001, 0),  # mvfst MVFST_D24: draft-22 salt
    (0xFACEB002, 0),  # mvfst MVFST: draft-23 salt
    (0xFACEB00E, 0),  # mvfst experimental: draft-23 salt
    (0xFACEB003, 0),  # mvfst's v1 alias: v1 salt
])
def test_reserved_and_mvfst_versions(tmp_path, sigset, version, attempt):
    datagram = protect_initial(v1_payload("api.mch.weixin.qq.com"), dcid=DCID, version=version, attempt=attempt)
    names = scan_names(write_udp_pcap(tmp_path / "v.pcap", [datagram]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "api.mch.weixin.qq.com")]


def test_unknown_versions_stay_unread():
    assert version_params(0x12345678) is None and version_params(0x0A0A0A0B) is None


@pytest.mark.parametrize("version", [QUIC_T050, QUIC_T051])
def test_google_t05x_tls_in_crypto_frames_of_type_8(tmp_path, sigset, version):
    hello = small_hello("www.youtube.com")
    datagram = protect_initial(padded(crypto_frame(0, hello, 0x08)), dcid=DCID, version=version)
    names = scan_names(write_udp_pcap(tmp_path / "t05x.pcap", [datagram]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "www.youtube.com")]


def google_chlo(name: str) -> bytes:
    return chlo([(b"SNI\x00", name.encode()), (b"VER\x00", b"Q043"), (b"PAD\x00", b"-" * 300),
                 (b"UAID", b"Chrome/120.0.0.0 Windows NT 10.0; Win64; x64")])


def test_google_q050_chlo_behind_initial_protection(tmp_path, sigset):
    datagram = protect_initial(padded(crypto_frame(0, google_chlo("mobilegw.alipay.com"), 0x08)),
                               dcid=DCID, version=QUIC_Q050)
    names = scan_names(write_udp_pcap(tmp_path / "q050.pcap", [datagram]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "mobilegw.alipay.com")]


@pytest.mark.parametrize("version", [b"Q024", b"Q033", b"Q035", b"Q039", b"Q043"])
def test_google_public_header_chlo(tmp_path, sigset, version):
    packet = gquic_public_packet(google_chlo("mobilegw.alipay.com"), version=version)
    assert gquic.gquic_version(packet) == int(version[1:])
    names = scan_names(write_udp_pcap(tmp_path / "gq.pcap", [packet]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "mobilegw.alipay.com")]


def test_google_q046_chlo(tmp_path, sigset):
    names = scan_names(write_udp_pcap(tmp_path / "q046.pcap", [gquic_q046_packet(google_chlo("qpay.qq.com"))]),
                       sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "qpay.qq.com")]


def test_chlo_cut_short_names_only_a_whole_sni():
    message = google_chlo("qpay.qq.com")
    value_at = message.index(b"qpay.qq.com")
    assert gquic.parse_chlo(message[: value_at + 11]).sni == "qpay.qq.com"
    cut = gquic.parse_chlo(message[: value_at + 5])
    assert cut.status is Status.NEED_MORE and cut.sni is None
    assert gquic.parse_chlo(b"CHLO" + b"\xff\xff\x00\x00").status is Status.INVALID
    assert gquic.parse_chlo(b"SHLO" + bytes(20)) is None
    for size in range(0, len(message), 9):
        assert gquic.parse_client_hello(gquic_public_packet(message)[:size]) is None or True


# --- item: 0-RTT before the Initial ---


def test_zero_rtt_before_the_initial_does_not_write_the_flow_off(tmp_path, sigset):
    zero_rtt = protect_initial(bytes(60), dcid=DCID, packet_type=0b01)
    initial = protect_initial(v1_payload("pay.weixin.qq.com"), dcid=DCID)
    names = scan_names(write_udp_pcap(tmp_path / "0rtt.pcap", [zero_rtt, initial]), sigset)
    assert [(kind, name) for kind, name, _ in names] == [("quic_sni", "pay.weixin.qq.com")]


# --- tshark reads the same names (the differential oracle, on captures built here) ---


def tshark_quic_names(path) -> set[str]:
    result = subprocess.run(
        ["tshark", "-r", str(path), "-o", "gui.max_tree_depth:64", "-Y", "quic || gquic", "-T", "fields",
         "-e", "tls.handshake.extensions_server_name", "-e", "gquic.tag.sni"],
        capture_output=True, text=True, check=True)
    return {value for line in result.stdout.splitlines() for value in line.split("\t") if value}


@pytest.mark.system
@pytest.mark.parametrize("build", [
    lambda: protect_initial(v1_payload("reserved.example"), dcid=DCID, version=0x1A2A3A4A, attempt=1),
    lambda: protect_initial(v1_payload("mvfst.example"), dcid=DCID, version=0xFACEB002),
    lambda: protect_initial(padded(crypto_frame(0, small_hello("t051.example"), 0x08)), dcid=DCID,
                            version=QUIC_T051),
    lambda: protect_initial(padded(crypto_frame(0, google_chlo("q050.example"), 0x08)), dcid=DCID,
                            version=QUIC_Q050),
    lambda: gquic_public_packet(google_chlo("q043.example"), version=b"Q043"),
    lambda: gquic_q046_packet(google_chlo("q046.example")),
], ids=["reserved-draft29-keys", "mvfst", "T051", "Q050", "Q043", "Q046"])
def test_tshark_reads_the_same_names(tmp_path, sigset, build):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    path = write_udp_pcap(tmp_path / "diff.pcap", [build()])
    ours = {name for kind, name, _ in scan_names(path, sigset) if kind == "quic_sni"}
    theirs = tshark_quic_names(path)
    assert ours and ours == theirs, (ours, theirs)
