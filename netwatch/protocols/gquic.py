"""Google QUIC (gQUIC) client hellos: the CHLO handshake message that carries the SNI in clear.

Before IETF QUIC, Chrome and Google's servers spoke Google's own QUIC versions Q024 to Q046; YouTube
and other Google apps kept using them for years. Their first client packet is not encrypted (only a
12-byte hash guards it) and carries a CHLO message in a STREAM frame on stream 1: a tag/value map in
which the tag `SNI\\0` is the server name. Q050 uses IETF-style Initial protection with its own salt
around the same CHLO (see `quic.py`); T050/T051 carry a TLS ClientHello there.

Formats, as the Chromium QUIC code and Wireshark's packet-gquic.c read them:
* public header (Q024-Q043): flags (0x01 version present, 0x08 8-byte connection id, 0x30 packet
  number length 1/2/4/6), connection id, version "Q0nn", packet number, then the 12-byte message
  authentication hash and, up to Q033, a private-flags byte;
* Q046: an IETF-invariant long header (first bit set), "Q046", one byte of connection-id lengths
  (0x50: an 8-byte destination id), the id, a 4-byte packet number, then the 12-byte hash;
* STREAM frame: type 1FDOOOSS (F fin, D 2-byte data length present, OOO offset length, SS stream id
  length - 1); the length is little-endian before Q039 and big-endian from Q039 on;
* CHLO: "CHLO", number of entries (uint16 LE), two padding bytes, then per entry a tag (4 bytes)
  and the end offset of its value (uint32 LE, non-decreasing), then the values.

Bytes in, plain data out; never raises. Bounds: at most MAX_TAGS tags walked; every offset is checked
against the bytes present; a value that runs past the datagram is not read (no guessing).
"""

from __future__ import annotations

import struct

from netwatch.protocols.common import Status, escape_name_bytes
from netwatch.protocols.tls import ClientHello

MAX_TAGS = 128  # Chromium's kMaxEntries for a handshake message
_HASH_LENGTH = 12
_PN_LENGTHS = (1, 2, 4, 6)
_CHLO = b"CHLO"
_TAG_SNI = b"SNI\x00"
_DIGITS = b"0123456789"


def gquic_version(datagram: bytes) -> int:
    """The Q0nn version number (e.g. 43) of a client packet that carries one, else 0. No parsing cost."""
    if len(datagram) < 13:
        return 0
    first = datagram[0]
    if first & 0x80:
        version = datagram[1:5]
    elif first & 0x01:
        cid_len = 8 if first & 0x08 else 0
        version = datagram[1 + cid_len : 5 + cid_len]
    else:
        return 0
    if version[:2] != b"Q0" or version[2] not in _DIGITS or version[3] not in _DIGITS:
        return 0
    return int(version[2:4])


def parse_client_hello(datagram: bytes) -> ClientHello | None:
    """The CHLO of a client's unencrypted gQUIC packet (Q024-Q046): None when this is not one.

    The result's status is OK (whole CHLO in this packet), NEED_MORE (the CHLO continues in another
    packet; the SNI is set only if its value was all here) or INVALID. Never raises.
    """
    try:
        return _parse_packet(bytes(datagram))
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return None


def _parse_packet(data: bytes) -> ClientHello | None:
    version = gquic_version(data)
    if not version or version > 46:
        return None
    first = data[0]
    if first & 0x80:
        if version != 46 or data[5] != 0x50:
            return None  # Q046 client Initials carry an 8-byte destination id and no source id
        pos = 6 + 8 + 4
    else:
        if first & 0x02:
            return None  # public reset
        cid_len = 8 if first & 0x08 else 0
        pos = 1 + cid_len + 4 + _PN_LENGTHS[(first >> 4) & 0x03]
    pos += _HASH_LENGTH
    if version <= 33:
        pos += 1  # private flags
    while pos < len(data) and data[pos] == 0:
        pos += 1  # PADDING
    if pos + 2 > len(data):
        return None
    frame_type = data[pos]
    if frame_type & 0x80 == 0:
        return None  # not a STREAM frame first: not the packet that opens the handshake
    offset_len = (frame_type >> 2) & 0x07
    offset_len = offset_len + 1 if offset_len else 0
    id_len = (frame_type & 0x03) + 1
    pos += 1
    if int.from_bytes(data[pos : pos + id_len], "big" if version >= 39 else "little") != 1:
        return None  # stream 1 carries the crypto handshake
    pos += id_len
    if offset_len and int.from_bytes(data[pos : pos + offset_len], "little") != 0:
        return None  # a later part of the handshake stream
    pos += offset_len
    end = len(data)
    if frame_type & 0x20:
        if pos + 2 > end:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big" if version >= 39 else "little")
        pos += 2
        end = min(end, pos + length)
    return parse_chlo(data[pos:end])


def parse_chlo(message: bytes) -> ClientHello | None:
    """A gQUIC CHLO tag/value message from its first byte; None when it is not a CHLO. Never raises."""
    try:
        return _parse_chlo(bytes(message))
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return ClientHello(Status.INVALID)


def _parse_chlo(message: bytes) -> ClientHello | None:
    if len(message) < 8:
        return ClientHello(Status.NEED_MORE) if _CHLO.startswith(message[:4]) and message else None
    if message[:4] != _CHLO:
        return None
    count = struct.unpack_from("<H", message, 4)[0]
    if count > MAX_TAGS:
        return ClientHello(Status.INVALID)
    values_start = 8 + 8 * count
    hello = ClientHello(Status.OK)
    previous = 0
    for index in range(count):
        entry = 8 + 8 * index
        if entry + 8 > len(message):
            hello.status = Status.NEED_MORE
            return hello
        tag = message[entry : entry + 4]
        end = struct.unpack_from("<I", message, entry + 4)[0]
        if end < previous:
            return ClientHello(Status.INVALID)
        if tag == _TAG_SNI and values_start + end <= len(message) and end > previous:
            hello.sni = escape_name_bytes(message[values_start + previous : values_start + end])
        previous = end
    if values_start + previous > len(message):
        hello.status = Status.NEED_MORE
    return hello
