"""QUIC Initial decryption and CRYPTO reassembly: RFC test vectors, aioquic clients, hostile input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.protocols.common import Status
from netwatch.protocols.quic import (
    QUIC_V1,
    QUIC_V2,
    STATUS_DECRYPT_FAILED,
    STATUS_NOT_QUIC,
    STATUS_OK,
    QuicInitialAssembler,
    clear_key_cache,
    client_initial_keys,
    derive_client_initial_keys,
    hkdf_expand_label,
    hkdf_extract,
    looks_like_initial,
    parse_initial_datagram,
)
from tests.quicbuild import crypto_frame, padded, protect_initial


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 9001 Appendix A (https://www.rfc-editor.org/rfc/rfc9001#appendix-A), DCID 0x8394c8f03e515708.
RFC_DCID = _hex("8394c8f03e515708")
RFC9001_INITIAL_SECRET = _hex("7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44")
RFC9001_CLIENT_SECRET = _hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
RFC9001_KEY = _hex("1f369613dd76d5467730efcbe3b1a22d")
RFC9001_IV = _hex("fa044b2f42a3fd3b46fb255c")
RFC9001_HP = _hex("9f50449e04a0e810283a1e9933adedd2")
# A.2: the client's CRYPTO frame (padded with PADDING frames to a 1162-byte payload).
RFC_CRYPTO_FRAME = _hex("""
   060040f1010000ed0303ebf8fa56f129 39b9584a3896472ec40bb863cfd3e868
   04fe3a47f06a2b69484c000004130113 02010000c000000010000e00000b6578
   616d706c652e636f6dff01000100000a 00080006001d00170018001000070005
   04616c706e0005000501000000000033 00260024001d00209370b2c9caa47fba
   baf4559fedba753de171fa71f50f1ce1 5d43e994ec74d748002b000302030400
   0d0010000e0403050306030203080408 050806002d00020101001c0002400100
   3900320408ffffffffffffffff050480 00ffff07048000ffff08011001048000
   75300901100f088394c8f03e51570806 048000ffff
""")
RFC9001_UNPROTECTED_HEADER = _hex("c300000001088394c8f03e5157080000449e00000002")
RFC9001_CLIENT_INITIAL = _hex("""
   c000000001088394c8f03e5157080000 449e7b9aec34d1b1c98dd7689fb8ec11
   d242b123dc9bd8bab936b47d92ec356c 0bab7df5976d27cd449f63300099f399
   1c260ec4c60d17b31f8429157bb35a12 82a643a8d2262cad67500cadb8e7378c
   8eb7539ec4d4905fed1bee1fc8aafba1 7c750e2c7ace01e6005f80fcb7df6212
   30c83711b39343fa028cea7f7fb5ff89 eac2308249a02252155e2347b63d58c5
   457afd84d05dfffdb20392844ae81215 4682e9cf012f9021a6f0be17ddd0c208
   4dce25ff9b06cde535d0f920a2db1bf3 62c23e596d11a4f5a6cf3948838a3aec
   4e15daf8500a6ef69ec4e3feb6b1d98e 610ac8b7ec3faf6ad760b7bad1db4ba3
   485e8a94dc250ae3fdb41ed15fb6a8e5 eba0fc3dd60bc8e30c5c4287e53805db
   059ae0648db2f64264ed5e39be2e20d8 2df566da8dd5998ccabdae053060ae6c
   7b4378e846d29f37ed7b4ea9ec5d82e7 961b7f25a9323851f681d582363aa5f8
   9937f5a67258bf63ad6f1a0b1d96dbd4 faddfcefc5266ba6611722395c906556
   be52afe3f565636ad1b17d508b73d874 3eeb524be22b3dcbc2c7468d54119c74
   68449a13d8e3b95811a198f3491de3e7 fe942b330407abf82a4ed7c1b311663a
   c69890f4157015853d91e923037c227a 33cdd5ec281ca3f79c44546b9d90ca00
   f064c99e3dd97911d39fe9c5d0b23a22 9a234cb36186c4819e8b9c5927726632
   291d6a418211cc2962e20fe47feb3edf 330f2c603a9d48c0fcb5699dbfe58964
   25c5bac4aee82e57a85aaf4e2513e4f0 5796b07ba2ee47d80506f8d2c25e50fd
   14de71e6c418559302f939b0e1abd576 f279c4b2e0feb85c1f28ff18f58891ff
   ef132eef2fa09346aee33c28eb130ff2 8f5b766953334113211996d20011a198
   e3fc433f9f2541010ae17c1bf202580f 6047472fb36857fe843b19f5984009dd
   c324044e847a4f4a0ab34f719595de37 252d6235365e9b84392b061085349d73
   203a4a13e96f5432ec0fd4a1ee65accd d5e3904df54c1da510b0ff20dcc0c77f
   cb2c0e0eb605cb0504db87632cf3d8b4 dae6e705769d1de354270123cb11450e
   fc60ac47683d7b8d0f811365565fd98c 4c8eb936bcab8d069fc33bd801b03ade
   a2e1fbc5aa463d08ca19896d2bf59a07 1b851e6c239052172f296bfb5e724047
   90a2181014f3b94a4e97d117b4381303 68cc39dbb2d198065ae3986547926cd2
   162f40a29f0c3c8745c0f50fba3852e5 66d44575c29d39a03f0cda721984b6f4
   40591f355e12d439ff150aab7613499d bd49adabc8676eef023b15b65bfc5ca0
   6948109f23f350db82123535eb8a7433 bdabcb909271a6ecbcb58b936a88cd4e
   8f2e6ff5800175f113253d8fa9ca8885 c2f552e657dc603f252e1a8e308f76f0
   be79e2fb8f5d5fbbe2e30ecadd220723 c8c0aea8078cdfcb3868263ff8f09400
   54da48781893a7e49ad5aff4af300cd8 04a6b6279ab3ff3afb64491c85194aab
   760d58a606654f9f4400e8b38591356f bf6425aca26dc85244259ff2b19c41b9
   f96f3ca9ec1dde434da7d2d392b905dd f3d1f9af93d1af5950bd493f5aa731b4
   056df31bd267b6b90a079831aaf579be 0a39013137aac6d404f518cfd4684064
   7e78bfe706ca4cf5e9c5453e9f7cfd2b 8b4c8d169a44e55c88d4a9a7f9474241
   e221af44860018ab0856972e194cd934
""")
# A.3: the server's Initial (server keys: our client keys must fail on it).
RFC9001_SERVER_INITIAL = _hex("""
   cf000000010008f067a5502a4262b500 4075c0d95a482cd0991cd25b0aac406a
   5816b6394100f37a1c69797554780bb3 8cc5a99f5ede4cf73c3ec2493a1839b3
   dbcba3f6ea46c5b7684df3548e7ddeb9 c3bf9c73cc3f3bded74b562bfb19fb84
   022f8ef4cdd93795d77d06edbb7aaf2f 58891850abbdca3d20398c276456cbc4
   2158407dd074ee
""")

# RFC 9369 Appendix A (https://www.rfc-editor.org/rfc/rfc9369#appendix-A): QUIC v2, same DCID and
# the same CRYPTO frame as RFC 9001 A.2.
RFC9369_INITIAL_SECRET = _hex("2062e8b3cd8d52092614b8071d0aa1fb7c2e3ac193f78b280e72d8f5751f6aba")
RFC9369_CLIENT_SECRET = _hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b")
RFC9369_KEY = _hex("8b1a0bc121284290a29e0971b5cd045d")
RFC9369_IV = _hex("91f73e2351d8fa91660e909f")
RFC9369_HP = _hex("45b95e15235d6f45a6b19cbcb0294ba9")
RFC9369_UNPROTECTED_HEADER = _hex("d36b3343cf088394c8f03e5157080000449e00000002")
RFC9369_CLIENT_INITIAL = _hex("""
   d76b3343cf088394c8f03e5157080000 449ea0c95e82ffe67b6abcdb4298b485
   dd04de806071bf03dceebfa162e75d6c 96058bdbfb127cdfcbf903388e99ad04
   9f9a3dd4425ae4d0992cfff18ecf0fdb 5a842d09747052f17ac2053d21f57c5d
   250f2c4f0e0202b70785b7946e992e58 a59ac52dea6774d4f03b55545243cf1a
   12834e3f249a78d395e0d18f4d766004 f1a2674802a747eaa901c3f10cda5500
   cb9122faa9f1df66c392079a1b40f0de 1c6054196a11cbea40afb6ef5253cd68
   18f6625efce3b6def6ba7e4b37a40f77 32e093daa7d52190935b8da58976ff33
   12ae50b187c1433c0f028edcc4c2838b 6a9bfc226ca4b4530e7a4ccee1bfa2a3
   d396ae5a3fb512384b2fdd851f784a65 e03f2c4fbe11a53c7777c023462239dd
   6f7521a3f6c7d5dd3ec9b3f233773d4b 46d23cc375eb198c63301c21801f6520
   bcfb7966fc49b393f0061d974a2706df 8c4a9449f11d7f3d2dcbb90c6b877045
   636e7c0c0fe4eb0f697545460c806910 d2c355f1d253bc9d2452aaa549e27a1f
   ac7cf4ed77f322e8fa894b6a83810a34 b361901751a6f5eb65a0326e07de7c12
   16ccce2d0193f958bb3850a833f7ae43 2b65bc5a53975c155aa4bcb4f7b2c4e5
   4df16efaf6ddea94e2c50b4cd1dfe060 17e0e9d02900cffe1935e0491d77ffb4
   fdf85290fdd893d577b1131a610ef6a5 c32b2ee0293617a37cbb08b847741c3b
   8017c25ca9052ca1079d8b78aebd4787 6d330a30f6a8c6d61dd1ab5589329de7
   14d19d61370f8149748c72f132f0fc99 f34d766c6938597040d8f9e2bb522ff9
   9c63a344d6a2ae8aa8e51b7b90a4a806 105fcbca31506c446151adfeceb51b91
   abfe43960977c87471cf9ad4074d30e1 0d6a7f03c63bd5d4317f68ff325ba3bd
   80bf4dc8b52a0ba031758022eb025cdd 770b44d6d6cf0670f4e990b22347a7db
   848265e3e5eb72dfe8299ad7481a4083 22cac55786e52f633b2fb6b614eaed18
   d703dd84045a274ae8bfa73379661388 d6991fe39b0d93debb41700b41f90a15
   c4d526250235ddcd6776fc77bc97e7a4 17ebcb31600d01e57f32162a8560cacc
   7e27a096d37a1a86952ec71bd89a3e9a 30a2a26162984d7740f81193e8238e61
   f6b5b984d4d3dfa033c1bb7e4f0037fe bf406d91c0dccf32acf423cfa1e70710
   10d3f270121b493ce85054ef58bada42 310138fe081adb04e2bd901f2f13458b
   3d6758158197107c14ebb193230cd115 7380aa79cae1374a7c1e5bbcb80ee23e
   06ebfde206bfb0fcbc0edc4ebec30966 1bdd908d532eb0c6adc38b7ca7331dce
   8dfce39ab71e7c32d318d136b6100671 a1ae6a6600e3899f31f0eed19e3417d1
   34b90c9058f8632c798d4490da498730 7cba922d61c39805d072b589bd52fdf1
   e86215c2d54e6670e07383a27bbffb5a ddf47d66aa85a0c6f9f32e59d85a44dd
   5d3b22dc2be80919b490437ae4f36a0a e55edf1d0b5cb4e9a3ecabee93dfc6e3
   8d209d0fa6536d27a5d6fbb17641cde2 7525d61093f1b28072d111b2b4ae5f89
   d5974ee12e5cf7d5da4d6a31123041f3 3e61407e76cffcdcfd7e19ba58cf4b53
   6f4c4938ae79324dc402894b44faf8af bab35282ab659d13c93f70412e85cb19
   9a37ddec600545473cfb5a05e08d0b20 9973b2172b4d21fb69745a262ccde96b
   a18b2faa745b6fe189cf772a9f84cbfc
""")
RFC9369_RETRY = _hex("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6")


# --- a test-side packet protector, checked against the RFC vectors before it is trusted ---


# --- RFC vectors ---


def test_rfc9001_key_schedule():
    initial_secret = hkdf_extract(_hex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), RFC_DCID)
    assert initial_secret == RFC9001_INITIAL_SECRET
    assert hkdf_expand_label(initial_secret, b"client in", 32) == RFC9001_CLIENT_SECRET
    keys = derive_client_initial_keys(QUIC_V1, RFC_DCID)
    assert (keys.key, keys.iv, keys.hp) == (RFC9001_KEY, RFC9001_IV, RFC9001_HP)


def test_rfc9369_key_schedule():
    initial_secret = hkdf_extract(_hex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), RFC_DCID)
    assert initial_secret == RFC9369_INITIAL_SECRET
    assert hkdf_expand_label(initial_secret, b"client in", 32) == RFC9369_CLIENT_SECRET
    keys = derive_client_initial_keys(QUIC_V2, RFC_DCID)
    assert (keys.key, keys.iv, keys.hp) == (RFC9369_KEY, RFC9369_IV, RFC9369_HP)


@pytest.mark.parametrize(
    ("version", "packet"),
    [(QUIC_V1, RFC9001_CLIENT_INITIAL), (QUIC_V2, RFC9369_CLIENT_INITIAL)],
    ids=["v1", "v2"],
)
def test_rfc_client_initial_decrypts_to_the_clienthello(version, packet):
    assert looks_like_initial(packet)
    (initial,) = parse_initial_datagram(packet)
    assert initial.status == STATUS_OK
    assert (initial.version, initial.dcid, initial.scid) == (version, RFC_DCID, b"")
    assert initial.token_len == 0 and initial.packet_number == 2
    assert initial.crypto == [(0, RFC_CRYPTO_FRAME[4:])]
    assembler = QuicInitialAssembler()
    hello = assembler.add(("192.0.2.1", 50000, "198.51.100.1", 443), packet, 0.0)
    assert hello.status is Status.OK
    assert hello.sni == "example.com"
    assert hello.alpn == ("alpn",)
    assert hello.supported_versions == (0x0304,)
    # By hand: TLS 1.3, SNI, 2 ciphers (1301, 1302), 11 extensions, ALPN "alpn" -> "an".
    assert hello.ja4.split("_")[0] == "q13d0211an"


@pytest.mark.parametrize(
    ("version", "header", "packet"),
    [
        (QUIC_V1, RFC9001_UNPROTECTED_HEADER, RFC9001_CLIENT_INITIAL),
        (QUIC_V2, RFC9369_UNPROTECTED_HEADER, RFC9369_CLIENT_INITIAL),
    ],
    ids=["v1", "v2"],
)
def test_test_side_protector_reproduces_the_rfc_packets(version, header, packet):
    built = protect_initial(padded(RFC_CRYPTO_FRAME), version=version)
    assert built == packet
    assert built[0] & 0xF0 == header[0] & 0xF0


def test_server_initial_and_retry_are_not_client_initials():
    (server,) = parse_initial_datagram(RFC9001_SERVER_INITIAL, key_dcid=RFC_DCID)
    assert server.status == STATUS_DECRYPT_FAILED and server.crypto == []
    assert not looks_like_initial(RFC9369_RETRY)
    assert parse_initial_datagram(RFC9369_RETRY) == []


def test_wrong_key_dcid_fails_cleanly():
    (initial,) = parse_initial_datagram(RFC9001_CLIENT_INITIAL, key_dcid=b"\x01" * 8)
    assert initial.status == STATUS_DECRYPT_FAILED


# --- datagram walking ---


def test_coalesced_packets_and_trailing_padding():
    first = protect_initial(padded(crypto_frame(0, b"abc"), 40), packet_number=0)
    second = protect_initial(padded(crypto_frame(3, b"def"), 40), packet_number=1)
    handshake = bytes([0xE0]) + (1).to_bytes(4, "big") + b"\x00\x00" + (0x4000 | 30).to_bytes(2, "big") + bytes(30)
    datagram = first + handshake + second + bytes(500)
    packets = parse_initial_datagram(datagram)
    assert [(p.status, p.packet_number, p.crypto) for p in packets] == [
        (STATUS_OK, 0, [(0, b"abc")]),
        (STATUS_OK, 1, [(3, b"def")]),
    ]


def test_frames_ping_ack_connection_close_then_unknown_stops():
    ack = b"\x02" + b"\x05\x00\x01\x00" + b"\x01\x01"  # largest 5, one extra range
    ack_ecn = b"\x03" + b"\x05\x00\x00\x00" + b"\x01\x02\x03"
    close = b"\x1c\x00\x06" + b"\x03bye"
    frames = b"\x01" + ack + ack_ecn + crypto_frame(10, b"xyz") + close + b"\x00\x00"
    frames += crypto_frame(0, b"0123456789") + b"\x08" + crypto_frame(13, b"never")
    (initial,) = parse_initial_datagram(protect_initial(padded(frames, 100)))
    assert initial.crypto == [(10, b"xyz"), (0, b"0123456789")]


def test_header_lengths_that_do_not_hold_together():
    # Header: first byte, version, DCID length + DCID, SCID length, token length, Length at 16-17.
    packet = bytearray(RFC9001_CLIENT_INITIAL)
    packet[16:18] = b"\x7f\xff"  # Length far past the datagram
    assert not looks_like_initial(bytes(packet))
    assert parse_initial_datagram(bytes(packet)) == []
    assert parse_initial_datagram(RFC9001_CLIENT_INITIAL[:-1]) == []  # Length overruns by one byte
    tiny = RFC9001_CLIENT_INITIAL[:16] + (0x4000 | 19).to_bytes(2, "big") + bytes(19)
    assert not looks_like_initial(tiny)
    (short,) = parse_initial_datagram(tiny)
    assert short.status == STATUS_NOT_QUIC
    assert not looks_like_initial(b"\xc0\x00\x00\x00\x01\x15" + bytes(40))  # DCID length 21
    assert not looks_like_initial(b"\xc0\x0a\x0a\x0a\x0a\x08" + bytes(40))  # unknown version
    assert not looks_like_initial(b"\x40" + bytes(1300))  # short header


@pytest.mark.parametrize(("version", "salt_first_byte"), [(0xFF00001D, 0xAF), (0xFF00001B, 0xC3), (0xFF000022, 0x38)])
def test_draft_versions_use_their_salts(version, salt_first_byte):
    from netwatch.protocols.quic import VERSIONS

    assert VERSIONS[version].salts[0][0] == salt_first_byte
    packet = bytearray(protect_initial(padded(RFC_CRYPTO_FRAME), version=version))
    (initial,) = parse_initial_datagram(bytes(packet))
    assert initial.status == STATUS_OK and initial.version == version


# --- aioquic clients ---

aioquic = pytest.importorskip("aioquic")
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.connection import QuicConnection  # noqa: E402
from aioquic.quic.packet import QuicProtocolVersion  # noqa: E402


def aioquic_initials(server_name: str, *, version=QuicProtocolVersion.VERSION_1, alpn=("h3",)) -> list[bytes]:
    config = QuicConfiguration(
        is_client=True, server_name=server_name, alpn_protocols=list(alpn), original_version=version
    )
    connection = QuicConnection(configuration=config)
    now = time.time()
    connection.connect(("192.0.2.1", 443), now=now)
    return [datagram for datagram, _addr in connection.datagrams_to_send(now=now)]


CLIENT = ("10.0.0.2", 51000, "192.0.2.1", 443)
LONG_ALPN = tuple(f"proto-{i:02d}-" + "x" * 190 for i in range(12))  # forces a 3-packet ClientHello


@pytest.mark.parametrize("version", [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2])
def test_aioquic_client_initial(version):
    (datagram,) = aioquic_initials("app.example", version=version)
    assert looks_like_initial(datagram)
    (initial,) = parse_initial_datagram(datagram)
    assert initial.version == int(version) and initial.status == STATUS_OK
    hello = QuicInitialAssembler().add(CLIENT, datagram, 1.0)
    assert (hello.status, hello.sni, hello.alpn) == (Status.OK, "app.example", ("h3",))


def test_hello_over_three_packets_in_any_order_with_duplicates():
    datagrams = aioquic_initials("split.example", alpn=LONG_ALPN)
    assert len(datagrams) == 3
    for order in ([0, 1, 2], [2, 1, 0], [1, 1, 2, 2, 0], [2, 0, 0, 1]):
        assembler = QuicInitialAssembler()
        results = [assembler.add(CLIENT, datagrams[i], float(n)) for n, i in enumerate(order)]
        assert all(r is None for r in results[:-1]), order
        assert results[-1].sni == "split.example" and results[-1].alpn == LONG_ALPN
        # Done: later packets are ignored without crypto.
        assert assembler.add(CLIENT, datagrams[0], 9.0) is None
        assert assembler.stats.ignored_done == 1 and assembler.stats.hellos == 1


def test_later_initials_with_server_chosen_dcid_use_the_original_keys():
    datagrams = aioquic_initials("keys.example", alpn=LONG_ALPN)
    (first,) = parse_initial_datagram(datagrams[0])
    # Re-protect packets 2 and 3 as the client would after the server's Initial: new DCID, keys
    # still from the original DCID.
    rewritten = [datagrams[0]]
    for datagram in datagrams[1:]:
        (packet,) = parse_initial_datagram(datagram)
        frames = b"".join(crypto_frame(off, data) for off, data in packet.crypto)
        rewritten.append(
            protect_initial(
                padded(frames),
                dcid=b"\x55" * 8,
                scid=packet.scid,
                packet_number=packet.packet_number,
                key_dcid=first.dcid,
            )
        )
    assert parse_initial_datagram(rewritten[1])[0].status == STATUS_DECRYPT_FAILED  # own DCID
    assembler = QuicInitialAssembler()
    results = [assembler.add(CLIENT, d, 1.0) for d in rewritten]
    assert results[-1].sni == "keys.example"


def test_retry_or_new_connection_on_same_tuple_rekeys():
    abandoned = aioquic_initials("old.example", alpn=LONG_ALPN)
    retried = aioquic_initials("new.example")
    (packet,) = parse_initial_datagram(retried[0])
    frames = b"".join(crypto_frame(off, data) for off, data in packet.crypto)
    with_token = protect_initial(padded(frames), dcid=b"\x77" * 8, token=b"retry-token", packet_number=1)
    assembler = QuicInitialAssembler()
    assert assembler.add(CLIENT, abandoned[0], 1.0) is None
    hello = assembler.add(CLIENT, with_token, 1.1)
    assert hello.sni == "new.example"
    assert assembler.stats.rekeyed == 1


# --- assembler bounds ---


def test_crypto_beyond_the_limit_gives_invalid_and_stops():
    assembler = QuicInitialAssembler(max_crypto_bytes=4096)
    far = protect_initial(padded(crypto_frame(5000, b"x" * 10), 100))
    hello = assembler.add(CLIENT, far, 0.0)
    assert hello.status is Status.INVALID and assembler.stats.over_limit == 1
    assert assembler.add(CLIENT, RFC9001_CLIENT_INITIAL, 0.1) is None  # done


def test_announced_hello_larger_than_limit_is_invalid():
    huge_header = b"\x01" + (100_000).to_bytes(3, "big") + b"\x03\x03"
    assembler = QuicInitialAssembler(max_crypto_bytes=65536)
    hello = assembler.add(CLIENT, protect_initial(padded(crypto_frame(0, huge_header), 100)), 0.0)
    assert hello.status is Status.INVALID


def test_eviction_timeout_and_memory_budget():
    part = protect_initial(padded(crypto_frame(0, RFC_CRYPTO_FRAME[4:100]), 200))
    assembler = QuicInitialAssembler(max_connections=3, timeout=30.0)
    for port in range(5):
        assert assembler.add(("10.0.0.9", port, "192.0.2.1", 443), part, 1.0) is None
    assert len(assembler) == 3 and assembler.stats.evicted == 2
    assembler.add(("10.0.0.9", 99, "192.0.2.1", 443), b"not quic", 100.0)
    assert len(assembler) == 0 and assembler.stats.expired == 3
    budget = QuicInitialAssembler(max_total_bytes=250)
    for port in range(4):
        budget.add(("10.0.0.9", port, "192.0.2.1", 443), part, 1.0)
    assert len(budget) == 2 and budget._total_bytes <= 250


def test_partial_hello_of_an_incomplete_connection():
    datagrams = aioquic_initials("partial.example", alpn=LONG_ALPN)
    assembler = QuicInitialAssembler()
    assert assembler.add(CLIENT, datagrams[0], 0.0) is None
    partial = assembler.partial(CLIENT)
    assert partial.status is Status.NEED_MORE and partial.sni == "partial.example"
    assert assembler.partial(("1.1.1.1", 1, "2.2.2.2", 2)) is None


def test_key_cache_is_bounded_and_clearable():
    from netwatch.protocols import quic

    clear_key_cache()
    for index in range(quic.KEY_CACHE_SIZE + 10):
        client_initial_keys(QUIC_V1, index.to_bytes(8, "big"))
    assert len(quic._KEY_CACHE) == quic.KEY_CACHE_SIZE
    assert client_initial_keys(0x12345678, b"x") is None
    clear_key_cache()
    assert len(quic._KEY_CACHE) == 0


# --- hostile input ---


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_datagrams_never_raise(datagram):
    assert isinstance(looks_like_initial(datagram), bool)
    assert isinstance(parse_initial_datagram(datagram), list)
    assembler = QuicInitialAssembler()
    assert assembler.add(CLIENT, datagram, 0.0) is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_initials_never_raise(data):
    packet = bytearray(data.draw(st.sampled_from([RFC9001_CLIENT_INITIAL, RFC9369_CLIENT_INITIAL])))
    # Mutate the header area most (that is where the parser branches), sometimes the body.
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.one_of(st.integers(0, 40), st.integers(0, len(packet) - 1)))
        packet[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    datagram = bytes(packet[:cut])
    looks_like_initial(datagram)
    for initial in parse_initial_datagram(datagram):
        assert initial.status in (STATUS_OK, STATUS_DECRYPT_FAILED, STATUS_NOT_QUIC)
    assembler = QuicInitialAssembler()
    result = assembler.add(CLIENT, datagram, 0.0)
    assert result is None or isinstance(result.status, Status)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decrypted_garbage_frames_never_raise(frames):
    (initial,) = parse_initial_datagram(protect_initial(padded(frames, 40)))
    assert initial.status == STATUS_OK
    assert all(isinstance(offset, int) and isinstance(chunk, bytes) for offset, chunk in initial.crypto)
