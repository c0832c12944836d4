"""Builders for QUIC test packets: protected Initials of any version netwatch reads, TLS ClientHellos
shaped like a browser's post-quantum hello, Google QUIC CHLO packets, and pcaps of them (scapy).

The packet protector follows RFC 9001 sections 5.3-5.4; tests/test_proto_quic.py checks it against
the RFC's Appendix A packets before any other test relies on it.
"""

from __future__ import annotations

import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netwatch.protocols.quic import QUIC_V1, derive_client_initial_keys, version_params

RFC_DCID = bytes.fromhex("8394c8f03e515708")


def varint(value: int) -> bytes:
    """RFC 9000 section 16 variable-length integer in the shortest of 1, 2 or 4 bytes."""
    if value < 64:
        return bytes([value])
    if value < 16384:
        return (0x4000 | value).to_bytes(2, "big")
    return (0x80000000 | value).to_bytes(4, "big")


def protect_initial(payload: bytes, *, dcid: bytes = RFC_DCID, scid: bytes = b"", version: int = QUIC_V1,
                    packet_number: int = 2, token: bytes = b"", key_dcid: bytes | None = None,
                    attempt: int = 0, packet_type: int | None = None) -> bytes:
    """A protected client long-header packet (Initial by default) with a 4-byte packet number.

    `attempt` picks the salt among the version's candidates; `packet_type` overrides the type bits
    (e.g. 0b01, 0-RTT in v1).
    """
    keys = derive_client_initial_keys(version, key_dcid or dcid, attempt)
    params = version_params(version)
    type_bits = params.initial_type if packet_type is None else packet_type
    header = bytes([0xC0 | (type_bits << 4) | 0x03]) + version.to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if type_bits == params.initial_type:
        header += (bytes([len(token)]) if len(token) < 64 else (0x4000 | len(token)).to_bytes(2, "big")) + token
    header += (0x4000 | (4 + len(payload) + 16)).to_bytes(2, "big") + packet_number.to_bytes(4, "big")
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    ciphertext = AESGCM(keys.key).encrypt(nonce, payload, header)
    mask = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor().update(ciphertext[:16])
    first = header[0] ^ (mask[0] & 0x0F)
    pn = bytes(b ^ m for b, m in zip(header[-4:], mask[1:5], strict=True))
    return bytes([first]) + header[1:-4] + pn + ciphertext


def crypto_frame(offset: int, data: bytes, frame_type: int = 0x06) -> bytes:
    return bytes([frame_type]) + varint(offset) + varint(len(data)) + data


def padded(frames: bytes, size: int = 1162) -> bytes:
    return frames + bytes(max(0, size - len(frames)))


def _extension(ext_type: int, body: bytes) -> bytes:
    return struct.pack(">HH", ext_type, len(body)) + body


def _vector16(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def sni_extension(name: str) -> bytes:
    raw = name.encode()
    return _extension(0x0000, _vector16(b"\x00" + struct.pack(">H", len(raw)) + raw))


def browser_client_hello(server_name: str, *, total: int = 1938, sni_first: bool = False,
                         post_quantum: bool = True, alpn: bytes = b"h3") -> bytes:
    """A ClientHello shaped like Chromium's over QUIC: no session id, three suites, a GREASE
    extension, supported_groups, then a post-quantum key_share (X25519MLKEM768: 1216 bytes, plus
    X25519; X25519 alone without `post_quantum`) early in the message, the SNI and ALPN after it,
    padded to `total` bytes."""
    key_share = _vector16(
        struct.pack(">HH", 0x4A4A, 1) + b"\x00"
        + (struct.pack(">HH", 0x11EC, 1216) + bytes(range(256)) * 4 + bytes(192) if post_quantum else b"")
        + struct.pack(">HH", 0x001D, 32) + bytes(range(32))
    )
    groups = _extension(0x000A, _vector16(struct.pack(">4H", 0x4A4A, 0x11EC, 0x001D, 0x0017)))
    sni = sni_extension(server_name)
    head = [_extension(0x0A0A, b""), groups]
    tail = [
        _extension(0x002B, b"\x02\x03\x04"),
        _extension(0x000D, _vector16(struct.pack(">4H", 0x0403, 0x0804, 0x0401, 0x0503))),
        _extension(0x0010, _vector16(bytes([len(alpn)]) + alpn)),
        _extension(0x0039, b"\x01\x04\x80\x00\x75\x30" * 8),
    ]
    if sni_first:
        head.insert(1, sni)
    else:
        tail.insert(1, sni)
    extensions = b"".join([*head, _extension(0x0033, key_share), *tail])
    fixed = b"\x03\x03" + bytes(range(32)) + b"\x00" + _vector16(b"\x13\x01\x13\x02\x13\x03") + b"\x01\x00"
    pad = total - 4 - len(fixed) - 2 - len(extensions) - 4
    extensions += _extension(0x0015, bytes(pad))
    body = fixed + _vector16(extensions)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def chlo(tags: list[tuple[bytes, bytes]]) -> bytes:
    """A Google QUIC CHLO message: tags sorted, end offsets little-endian."""
    tags = sorted(tags)
    index, values, end = b"", b"", 0
    for tag, value in tags:
        end += len(value)
        index += tag + struct.pack("<I", end)
        values += value
    return b"CHLO" + struct.pack("<HH", len(tags), 0) + index + values


def gquic_public_packet(message: bytes, *, version: bytes = b"Q043", cid: bytes = b"\x11" * 8) -> bytes:
    """A client's first Google QUIC packet before Q046: public header, 12-byte hash, STREAM frame on stream 1."""
    number = int(version[1:])
    header = bytes([0x09]) + cid + version + b"\x01"  # version present, 8-byte connection id, 1-byte number
    private = b"\x00" if number <= 33 else b""
    length = struct.pack(">H" if number >= 39 else "<H", len(message))
    return header + bytes(12) + private + b"\xa0\x01" + length + message


def gquic_q046_packet(message: bytes, *, cid: bytes = b"\x22" * 8) -> bytes:
    """A Q046 client packet: IETF-invariant long header, 8-byte destination id, 4-byte number."""
    header = b"\xc3Q046\x50" + cid + b"\x00\x00\x00\x01"
    return header + bytes(12) + b"\xa0\x01" + struct.pack(">H", len(message)) + message


def write_udp_pcap(path: Path, datagrams: list[bytes], *, client: str = "192.0.2.10", server: str = "198.51.100.7",
                   sport: int = 50123, dport: int = 443, ipv6: bool = False) -> Path:
    """One Ethernet/IP/UDP frame per datagram, client to server, one second apart."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frames = []
    for index, datagram in enumerate(datagrams):
        ip = IPv6(src=client, dst=server) if ipv6 else IP(src=client, dst=server)
        frame = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:01") / ip / UDP(sport=sport, dport=dport) / datagram
        frame.time = 1767600000 + index
        frames.append(frame)
    wrpcap(str(path), frames)
    return path
