"""QUIC client Initial packets: remove the (publicly keyed) protection and recover the ClientHello.

QUIC encrypts even its first packets, but with keys anyone can derive from the Destination
Connection ID the client chose (RFC 9001 section 5.2), so a passive sensor can read the TLS
ClientHello inside and see its SNI, as Zeek, Suricata and Wireshark do.

* `looks_like_initial(datagram)`: a cheap header check, no crypto, that rejects other UDP.
* `parse_initial_datagram(datagram, key_dcid=None)`: walks the coalesced long-header packets of one
  datagram, decrypts each client Initial and returns its CRYPTO frames.
* `QuicInitialAssembler`: per-client reassembly of the CRYPTO stream over several Initials
  (big post-quantum ClientHellos span two or more packets, in any order), giving one ClientHello.

Hostile bytes in, plain data out: nothing here raises or logs. Bounds: connection IDs <= 20 bytes
(RFC 9000 section 17.2), at most `MAX_PACKETS_PER_DATAGRAM` packets per datagram and
`MAX_FRAMES_PER_PACKET` frames per packet, ACK range counts checked against the bytes present,
CRYPTO data limited per connection by the assembler (`max_crypto_bytes`, `max_total_bytes`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # cryptography is imported on the first QUIC Initial: most scans never need it
    from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from netwatch.protocols.common import Status
from netwatch.protocols.gquic import parse_chlo
from netwatch.protocols.tls import ClientHello, parse_client_hello_message, parse_client_hello_pieces

MAX_PACKETS_PER_DATAGRAM = 8
MAX_FRAMES_PER_PACKET = 512  # Chrome interleaves many small CRYPTO, PING and PADDING frames
MAX_CID_LEN = 20  # RFC 9000 section 17.2
KEY_CACHE_SIZE = 512

STATUS_OK = "ok"
STATUS_DECRYPT_FAILED = "decrypt_failed"
STATUS_NOT_QUIC = "not_quic"  # an Initial-shaped packet whose lengths do not hold together

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF

# Initial salts. v1: RFC 9001 section 5.2. v2: RFC 9369 section 3.3.1 (version number: section 3.1,
# labels: 3.3.2, packet types: 3.2). Checked against the RFC texts (rfc9001.txt in quicwg/base-drafts,
# rfc/rfc9369.txt in quicwg/quic-v2); the Appendix A key vectors of both RFCs are in the tests.
# Drafts: draft-ietf-quic-tls-23 to -28 section 5.2 (0xc3ee...), -29 to -32 (0xafbf...); -33/-34
# already used the v1 salt (the ranges as Wireshark's packet-quic.c maps them).
_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")


# Google QUIC versions with IETF-style Initial protection, each with its own salt (Chromium's
# quic_crypto_*; the values as nDPI's quic.c and Wireshark's packet-quic.c hold them): Q050 carries
# a gQUIC CHLO, T050/T051 a TLS ClientHello, both in CRYPTO frames of type 0x08.
_SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")
# draft-ietf-quic-tls-22 section 5.2 salt, which Facebook's mvfst kept for its 0xfaceb001 version.
_SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")

HANDSHAKE_TLS = "tls"
HANDSHAKE_CHLO = "chlo"  # Google QUIC Q050: a CHLO tag/value message instead of a TLS ClientHello


class _VersionParams(NamedTuple):
    salts: tuple[bytes, ...]  # tried in order; the AEAD tag tells which one the client used
    label_prefix: bytes  # "quic" (v1, drafts) or "quicv2" (RFC 9369 section 3.3.2)
    initial_type: int  # long-header type bits of Initial: 0b00 in v1, 0b01 in v2 (RFC 9369 3.2)
    crypto_frame: int = 0x06  # CRYPTO frame type: 0x06 (RFC 9000 19.6), 0x08 in Google's Q050/T05x
    handshake: str = HANDSHAKE_TLS


def _draft_params(draft: int) -> _VersionParams:
    salt = _SALT_DRAFT_23 if draft <= 28 else _SALT_DRAFT_29 if draft <= 32 else _SALT_V1
    return _VersionParams((salt,), b"quic", 0)


QUIC_Q050 = 0x51303530
QUIC_T050 = 0x54303530
QUIC_T051 = 0x54303531

VERSIONS: dict[int, _VersionParams] = {
    QUIC_V1: _VersionParams((_SALT_V1,), b"quic", 0),
    QUIC_V2: _VersionParams((_SALT_V2,), b"quicv2", 1),
    **{0xFF000000 + draft: _draft_params(draft) for draft in range(23, 35)},
    QUIC_Q050: _VersionParams((_SALT_Q050,), b"quic", 0, 0x08, HANDSHAKE_CHLO),
    QUIC_T050: _VersionParams((_SALT_T050,), b"quic", 0, 0x08),
    QUIC_T051: _VersionParams((_SALT_T051,), b"quic", 0, 0x08),
    # Facebook's mvfst (facebook/mvfst quic/QuicConstants.h names the versions; the salts:
    # quic/handshake/HandshakeLayer.cpp getQuicVersionSalt): 0xfaceb001 (MVFST_D24) kept the
    # draft-22 salt, 0xfaceb003 is an alias of v1 with the v1 salt, MVFST (0xfaceb002) and its
    # experimental aliases use the draft-23 salt.
    0xFACEB001: _VersionParams((_SALT_DRAFT_22,), b"quic", 0),
    0xFACEB003: _VersionParams((_SALT_V1,), b"quic", 0),
}
# Other mvfst versions (0xfaceb002, 0xfaceb00e, 0xfaceb010, 0xfaceb011, 0xfaceb013, ...): mvfst's
# default salt first, then the others it has used.
_MVFST_PARAMS = _VersionParams((_SALT_DRAFT_23, _SALT_DRAFT_22, _SALT_V1), b"quic", 0)
# Versions 0x?a?a?a?a are reserved to exercise version negotiation (RFC 9000 section 15); clients
# such as quic-go protect such an Initial with the v1 keys; some older stacks used draft-29's.
_RESERVED_PARAMS = _VersionParams((_SALT_V1, _SALT_DRAFT_29), b"quic", 0)


def version_params(version: int) -> _VersionParams | None:
    """How to read Initials of `version`; None for versions netwatch cannot decrypt."""
    params = VERSIONS.get(version)
    if params is not None:
        return params
    if version & 0x0F0F0F0F == 0x0A0A0A0A:
        return _RESERVED_PARAMS
    if version & 0xFFFFF000 == 0xFACEB000:
        return _MVFST_PARAMS
    return None


# --- key derivation (RFC 5869 HKDF with SHA-256; HKDF-Expand-Label from RFC 8446 section 7.1) ---


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, hashlib.sha256)


def hkdf_expand_label(secret: bytes, label: bytes, length: int, context: bytes = b"") -> bytes:
    """HKDF-Expand(secret, HkdfLabel, length) where HkdfLabel = length, "tls13 " + label, context."""
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes([len(full_label)]) + full_label + bytes([len(context)]) + context
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(secret, block + info + bytes([counter]), hashlib.sha256)
        output += block
        counter += 1
    return output[:length]


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """Client Initial packet protection keys (RFC 9001 section 5.1-5.2)."""

    key: bytes
    iv: bytes
    hp: bytes
    aead: AESGCM = field(repr=False, compare=False)
    hp_cipher: Cipher = field(repr=False, compare=False)
    # One AES-ECB context reused for every header-protection mask: ECB blocks are independent,
    # so update() on a 16-byte sample is the same as a fresh context's, without its setup cost.
    # Not shared across threads: each sensor worker is a process with its own key cache.
    hp_encryptor: CipherContext = field(repr=False, compare=False)


def derive_client_initial_keys(version: int, dcid: bytes, attempt: int = 0) -> InitialKeys | None:
    """Derive the client's Initial keys from the original Destination Connection ID (no cache).

    `attempt` picks the salt among the version's candidates; None when there is no such salt.
    """
    params = version_params(version)
    if params is None or attempt >= len(params.salts):
        return None
    initial_secret = hkdf_extract(params.salts[attempt], dcid)
    client_secret = hkdf_expand_label(initial_secret, b"client in", 32)
    prefix = params.label_prefix
    key = hkdf_expand_label(client_secret, prefix + b" key", 16)
    iv = hkdf_expand_label(client_secret, prefix + b" iv", 12)
    hp = hkdf_expand_label(client_secret, prefix + b" hp", 16)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    hp_cipher = Cipher(algorithms.AES(hp), modes.ECB())
    return InitialKeys(key, iv, hp, AESGCM(key), hp_cipher, hp_cipher.encryptor())


_KEY_CACHE: OrderedDict[tuple[int, bytes, int], InitialKeys] = OrderedDict()


def client_initial_keys(version: int, dcid: bytes, attempt: int = 0) -> InitialKeys | None:
    """`derive_client_initial_keys` behind a small LRU: derivation costs several HMACs."""
    cache_key = (version, dcid, attempt)
    keys = _KEY_CACHE.get(cache_key)
    if keys is not None:
        _KEY_CACHE.move_to_end(cache_key)
        return keys
    keys = derive_client_initial_keys(version, dcid, attempt)
    if keys is not None:
        _KEY_CACHE[cache_key] = keys
        if len(_KEY_CACHE) > KEY_CACHE_SIZE:
            _KEY_CACHE.popitem(last=False)
    return keys


def clear_key_cache() -> None:
    """Forget cached keys (for measurements and tests)."""
    _KEY_CACHE.clear()


# --- packet parsing ---


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """RFC 9000 section 16 variable-length integer at `pos`; (-1, pos) when it runs past `end`."""
    if pos >= end:
        return -1, pos
    first = data[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        return -1, pos
    value = first & 0x3F
    for index in range(1, size):
        value = (value << 8) | data[pos + index]
    return value, pos + size


@dataclass(slots=True)
class InitialPacket:
    """One client Initial packet found in a datagram."""

    version: int
    dcid: bytes
    scid: bytes
    token_len: int
    packet_number: int  # as decoded from the header (truncated encoding, no largest-acked context)
    crypto: list[tuple[int, bytes]] = field(default_factory=list)  # (stream offset, data)
    status: str = STATUS_OK  # STATUS_OK | STATUS_DECRYPT_FAILED | STATUS_NOT_QUIC


class _LongHeader(NamedTuple):
    start: int  # where this packet starts inside the datagram
    version: int
    packet_type: int
    dcid: bytes
    scid: bytes
    token_len: int
    pn_offset: int  # where the (protected) packet number starts; -1 for packets without one
    end: int  # end of this packet inside the datagram


def _parse_long_header(data: bytes, start: int) -> _LongHeader | None:
    """Header fields of the long-header packet at `start`, or None if it is not a QUIC packet we
    can walk (unknown version, lengths that overrun the datagram)."""
    size = len(data)
    if size - start < 7:
        return None
    first = data[start]
    if first & 0xC0 != 0xC0:  # long header form and fixed bit (RFC 9000 section 17.2)
        return None
    version = int.from_bytes(data[start + 1 : start + 5], "big")
    params = version_params(version)
    if params is None:
        return None
    pos = start + 5
    dcid_len = data[pos]
    if dcid_len > MAX_CID_LEN or pos + 1 + dcid_len + 1 > size:
        return None
    dcid = data[pos + 1 : pos + 1 + dcid_len]
    pos += 1 + dcid_len
    scid_len = data[pos]
    if scid_len > MAX_CID_LEN or pos + 1 + scid_len > size:
        return None
    scid = data[pos + 1 : pos + 1 + scid_len]
    pos += 1 + scid_len
    packet_type = (first >> 4) & 0x03
    retry_type = 0b11 if params.initial_type == 0 else 0b00
    if packet_type == retry_type:
        return _LongHeader(start, version, packet_type, dcid, scid, 0, -1, size)  # Retry: rest of datagram
    token_len = 0
    if packet_type == params.initial_type:
        token_len, pos = _varint(data, pos, size)
        if token_len < 0 or pos + token_len > size:
            return None
        pos += token_len
    length, pos = _varint(data, pos, size)
    if length < 0 or pos + length > size:
        return None
    return _LongHeader(start, version, packet_type, dcid, scid, token_len, pos, pos + length)


def looks_like_initial(datagram: bytes) -> bool:
    """Cheap check, no crypto: does this datagram start with a QUIC Initial of a known version?"""
    try:
        if len(datagram) < 7 or datagram[0] & 0xC0 != 0xC0:
            return False  # most UDP (short headers, DNS, media) ends here, before any parsing
        header = _parse_long_header(datagram, 0)
    except Exception:
        return False
    if header is None or header.pn_offset < 0:
        return False
    if header.packet_type != version_params(header.version).initial_type:  # type: ignore[union-attr]
        return False
    # Room for the 4-byte sample after a 4-byte packet number plus the 16-byte AEAD tag.
    return header.end - header.pn_offset >= 20


def looks_like_long_header(datagram: bytes) -> bool:
    """Any long-header packet (Initial, 0-RTT, Handshake, Retry) of a version netwatch reads; no crypto.

    A client may send 0-RTT before its Initial, or the Initial may be lost: such a flow is still QUIC.
    """
    try:
        return len(datagram) >= 7 and datagram[0] & 0xC0 == 0xC0 and _parse_long_header(datagram, 0) is not None
    except Exception:
        return False


def _remove_protection(data: bytes, header: _LongHeader, keys: InitialKeys) -> tuple[int, bytes] | None:
    """Header protection off (RFC 9001 section 5.4), then AEAD open (section 5.3).

    Returns (packet number, plaintext) or None when the tag does not verify. The caller has
    checked that the packet holds the 4 + 16 bytes the header-protection sample needs.
    """
    pn_offset = header.pn_offset
    mask = keys.hp_encryptor.update(data[pn_offset + 4 : pn_offset + 20])
    first = data[header.start] ^ (mask[0] & 0x0F)
    pn_len = (first & 0x03) + 1
    packet_number = int.from_bytes(data[pn_offset : pn_offset + pn_len], "big") ^ int.from_bytes(
        mask[1 : 1 + pn_len], "big"
    )
    pn_bytes = packet_number.to_bytes(pn_len, "big")
    aad = bytes([first]) + data[header.start + 1 : pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(12, "big")
    from cryptography.exceptions import InvalidTag  # already loaded with the keys: a dict lookup

    try:
        plaintext = keys.aead.decrypt(nonce, data[pn_offset + pn_len : header.end], aad)
    except InvalidTag:
        return None
    return packet_number, plaintext


def _parse_frames(payload: bytes, crypto_type: int = 0x06) -> list[tuple[int, bytes]]:
    """CRYPTO frames of a decrypted Initial payload (RFC 9000 section 19).

    PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE are understood; anything else (not allowed in
    Initial packets, RFC 9000 section 12.4) ends the walk, keeping what was found. Google's Q050/T05x
    number CRYPTO 0x08 (`crypto_type`); their other frame types differ, so only PADDING and CRYPTO
    are read there.
    """
    if crypto_type != 0x06:
        return _parse_google_frames(payload, crypto_type)
    crypto: list[tuple[int, bytes]] = []
    pos = 0
    end = len(payload)
    for _ in range(MAX_FRAMES_PER_PACKET):
        if pos >= end:
            break
        frame_type = payload[pos]
        if frame_type == 0x00:  # PADDING: skip the whole run at C speed
            stripped = len(payload[pos:end].lstrip(b"\x00"))
            pos = end - stripped
            continue
        pos += 1
        if frame_type == 0x01:  # PING
            continue
        if frame_type in (0x02, 0x03):  # ACK, ACK with ECN counts
            values_before_ranges = 4  # largest acked, delay, range count, first range
            range_count = 0
            for index in range(values_before_ranges):
                value, pos = _varint(payload, pos, end)
                if value < 0:
                    return crypto
                if index == 2:
                    range_count = value
            if range_count > (end - pos) // 2:
                return crypto  # each range needs at least two bytes
            extra = 2 * range_count + (3 if frame_type == 0x03 else 0)
            for _ in range(extra):
                value, pos = _varint(payload, pos, end)
                if value < 0:
                    return crypto
            continue
        if frame_type == 0x06:  # CRYPTO
            offset, pos = _varint(payload, pos, end)
            length, pos = _varint(payload, pos, end)
            if offset < 0 or length < 0 or pos + length > end:
                return crypto
            crypto.append((offset, payload[pos : pos + length]))
            pos += length
            continue
        if frame_type in (0x1C, 0x1D):  # CONNECTION_CLOSE
            _error, pos = _varint(payload, pos, end)
            if frame_type == 0x1C:
                _frame, pos = _varint(payload, pos, end)
            reason_len, pos = _varint(payload, pos, end)
            if reason_len < 0 or pos + reason_len > end:
                return crypto
            pos += reason_len
            continue
        break  # unknown or not allowed here: stop safely
    return crypto


def _parse_google_frames(payload: bytes, crypto_type: int) -> list[tuple[int, bytes]]:
    """PADDING and CRYPTO (`crypto_type`, varint offset and length as in RFC 9000) frames; stop at any other."""
    crypto: list[tuple[int, bytes]] = []
    pos, end = 0, len(payload)
    for _ in range(MAX_FRAMES_PER_PACKET):
        while pos < end and payload[pos] == 0:
            pos += 1
        if pos >= end or payload[pos] != crypto_type:
            break
        offset, pos = _varint(payload, pos + 1, end)
        length, pos = _varint(payload, pos, end)
        if offset < 0 or length < 0 or pos + length > end:
            break
        crypto.append((offset, payload[pos : pos + length]))
        pos += length
    return crypto


def _parse_datagram(datagram: bytes, key_dcid: bytes | None) -> list[InitialPacket]:
    packets: list[InitialPacket] = []
    pos = 0
    for _ in range(MAX_PACKETS_PER_DATAGRAM):
        if pos >= len(datagram) or datagram[pos] & 0x80 == 0:
            break  # end, a short-header packet, or zero padding after the last packet
        header = _parse_long_header(datagram, pos)
        if header is None:
            break  # unknown version or lengths that do not hold together: nothing safe to walk
        if header.pn_offset < 0:
            break  # Retry
        if header.packet_type == version_params(header.version).initial_type:  # type: ignore[union-attr]
            packets.append(_open_initial(datagram, header, key_dcid))
        pos = header.end
    return packets


def _open_initial(datagram: bytes, header: _LongHeader, key_dcid: bytes | None) -> InitialPacket:
    packet = InitialPacket(header.version, header.dcid, header.scid, header.token_len, -1)
    if header.end - header.pn_offset < 20:
        packet.status = STATUS_NOT_QUIC  # too short for a packet number, sample and tag
        return packet
    params = version_params(header.version)
    dcid = header.dcid if key_dcid is None else key_dcid
    opened = None
    for attempt in range(len(params.salts) if params is not None else 0):
        keys = client_initial_keys(header.version, dcid, attempt)
        opened = _remove_protection(datagram, header, keys) if keys is not None else None
        if opened is not None:
            break
    if opened is None or params is None:
        packet.status = STATUS_DECRYPT_FAILED
        return packet
    packet.packet_number, plaintext = opened
    packet.crypto = _parse_frames(plaintext, params.crypto_frame)
    return packet


def parse_initial_datagram(datagram: bytes, *, key_dcid: bytes | None = None) -> list[InitialPacket]:
    """Decrypt every client Initial packet coalesced in one UDP datagram.

    Keys come from `key_dcid` (the connection's original Destination Connection ID) or, by
    default, from each packet's own DCID. Walks at most MAX_PACKETS_PER_DATAGRAM long-header
    packets and stops at a short header, padding, a Retry or an unknown version. Other long-header
    packets (0-RTT, Handshake) are skipped by their length. A packet whose AEAD tag fails is
    returned with STATUS_DECRYPT_FAILED (a server Initial, or the wrong DCID). Never raises.
    """
    try:
        return _parse_datagram(bytes(datagram), key_dcid)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return []


# --- reassembly of the client's CRYPTO stream over several Initial packets ---


@dataclass(slots=True)
class AssemblerStats:
    """Counters for the sensor's metrics."""

    datagrams: int = 0
    not_initial: int = 0
    packets_ok: int = 0
    decrypt_failed: int = 0
    rekeyed: int = 0  # a new DCID (Retry or a new connection) replaced the original one
    hellos: int = 0
    ignored_done: int = 0
    over_limit: int = 0
    evicted: int = 0
    expired: int = 0


@dataclass(slots=True)
class _Connection:
    version: int
    original_dcid: bytes
    last_seen: float
    contiguous: bytearray = field(default_factory=bytearray)  # CRYPTO bytes from offset 0
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order pieces by offset
    pending_bytes: int = 0
    done: bool = False

    def stored(self) -> int:
        return len(self.contiguous) + self.pending_bytes


class QuicInitialAssembler:
    """Reassemble each client's ClientHello from the CRYPTO frames of its Initial packets.

    Keyed by the client's (src ip, src port, dst ip, dst port). Keys stay derived from the DCID
    of the client's first Initial even when later Initials carry the server's connection ID; a
    packet that only decrypts with its own DCID (after a Retry, or a new connection on the same
    4-tuple) starts a fresh attempt. Once a hello is returned the connection is marked done and
    its later packets cost one dict lookup. Bounds: `max_connections` tracked clients (oldest
    evicted first), `max_crypto_bytes` of CRYPTO data per client, `max_total_bytes` over all
    clients, idle clients forgotten after `timeout` seconds.
    """

    def __init__(
        self,
        max_connections: int = 4096,
        max_crypto_bytes: int = 65536,
        timeout: float = 30.0,
        *,
        max_total_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.max_connections = max_connections
        self.max_crypto_bytes = max_crypto_bytes
        self.timeout = timeout
        self.max_total_bytes = max_total_bytes
        self.stats = AssemblerStats()
        self._connections: OrderedDict[Hashable, _Connection] = OrderedDict()
        self._total_bytes = 0

    def __len__(self) -> int:
        return len(self._connections)

    def add(self, key: Hashable, datagram: bytes, ts: float) -> ClientHello | None:
        """Feed one client-to-server UDP datagram; returns the ClientHello once it is complete.

        The result's status is OK, or INVALID when the reassembled hello is malformed or larger
        than the limits. Never raises.
        """
        try:
            return self._add(key, datagram, ts)
        except Exception:  # a parser of hostile bytes must not take the pipeline down
            return None

    def _add(self, key: Hashable, datagram: bytes, ts: float) -> ClientHello | None:
        self.stats.datagrams += 1
        self._expire(ts)
        conn = self._connections.get(key)
        if conn is not None:
            conn.last_seen = ts
            self._connections.move_to_end(key)
            if conn.done:
                self.stats.ignored_done += 1
                return None
        if not looks_like_initial(datagram):
            self.stats.not_initial += 1
            return None
        packets = parse_initial_datagram(datagram, key_dcid=conn.original_dcid if conn else None)
        if conn is not None and packets and all(p.status == STATUS_DECRYPT_FAILED for p in packets):
            # Not the original keys: a Retry's new DCID (it comes with a token) or a new connection.
            fresh = parse_initial_datagram(datagram)
            if any(p.status == STATUS_OK for p in fresh):
                self.stats.rekeyed += 1
                self._drop(key)
                conn = None
                packets = fresh
        for packet in packets:
            if packet.status != STATUS_OK:
                self.stats.decrypt_failed += packet.status == STATUS_DECRYPT_FAILED
                continue
            self.stats.packets_ok += 1
            if conn is None:
                conn = self._track(key, packet, ts)
            for offset, data in packet.crypto:
                if not self._store(conn, offset, data):
                    return self._finish(conn, ClientHello(Status.INVALID))
            hello = self._try_hello(conn)
            if hello is not None:
                return self._finish(conn, hello)
        return None

    def _track(self, key: Hashable, packet: InitialPacket, ts: float) -> _Connection:
        conn = _Connection(packet.version, packet.dcid, ts)
        self._connections[key] = conn
        while len(self._connections) > self.max_connections:
            self._evict_oldest()
        return conn

    def _store(self, conn: _Connection, offset: int, data: bytes) -> bool:
        """Add one CRYPTO frame; False when the stream would exceed the limits."""
        end = offset + len(data)
        if end > self.max_crypto_bytes:
            self.stats.over_limit += 1
            return False
        have = len(conn.contiguous)
        if end <= have or not data:
            return True  # a retransmission of bytes we hold
        if offset > have:
            if offset not in conn.pending or len(conn.pending[offset]) < len(data):
                self._account(conn, len(data) - len(conn.pending.get(offset, b"")), pending=True)
                conn.pending[offset] = data
        else:
            self._account(conn, end - have)
            conn.contiguous += data[have - offset :]
        self._drain_pending(conn)
        while self._total_bytes > self.max_total_bytes and len(self._connections) > 1:
            self._evict_oldest()
        return True

    def _drain_pending(self, conn: _Connection) -> None:
        """Move out-of-order pieces that now touch the contiguous prefix into it."""
        progressed = True
        while progressed and conn.pending:
            progressed = False
            have = len(conn.contiguous)
            for offset in sorted(conn.pending):
                if offset > have:
                    break
                data = conn.pending.pop(offset)
                self._account(conn, -len(data), pending=True)
                if offset + len(data) > have:
                    self._account(conn, offset + len(data) - have)
                    conn.contiguous += data[have - offset :]
                progressed = True
                break

    def _account(self, conn: _Connection, delta: int, *, pending: bool = False) -> None:
        if pending:
            conn.pending_bytes += delta
        self._total_bytes += delta

    def _try_hello(self, conn: _Connection) -> ClientHello | None:
        stream = conn.contiguous
        if len(stream) < 4:
            return None
        params = version_params(conn.version)
        if params is not None and params.handshake == HANDSHAKE_CHLO:
            chlo = parse_chlo(bytes(stream))
            if chlo is None:
                return ClientHello(Status.NOT_MINE)
            return None if chlo.status is Status.NEED_MORE else chlo
        needed = 4 + int.from_bytes(stream[1:4], "big")
        if stream[0] != 1 or needed > self.max_crypto_bytes:
            self.stats.over_limit += needed > self.max_crypto_bytes
            return ClientHello(Status.INVALID if stream[0] == 1 else Status.NOT_MINE)
        if len(stream) < needed:
            return None
        return parse_client_hello_message(bytes(stream[:needed]))

    def _finish(self, conn: _Connection, hello: ClientHello) -> ClientHello:
        self._total_bytes -= conn.stored()
        conn.contiguous = bytearray()
        conn.pending.clear()
        conn.pending_bytes = 0
        conn.done = True
        self.stats.hellos += 1
        return hello

    def partial(self, key: Hashable) -> ClientHello | None:
        """What a client's hello that never completed (a lost packet) still says, status NEED_MORE;
        None if nothing is pending for `key`.

        The pieces on both sides of a hole are walked structurally (`parse_client_hello_pieces`):
        a field is reported only if all its bytes arrived.
        """
        conn = self._connections.get(key)
        if conn is None or conn.done or not conn.contiguous:
            return None
        params = version_params(conn.version)
        if params is not None and params.handshake == HANDSHAKE_CHLO:
            return parse_chlo(bytes(conn.contiguous))
        if not conn.pending:
            return parse_client_hello_message(bytes(conn.contiguous))
        pieces = [(0, bytes(conn.contiguous)), *conn.pending.items()]
        return parse_client_hello_pieces(pieces)

    def _drop(self, key: Hashable) -> None:
        conn = self._connections.pop(key, None)
        if conn is not None:
            self._total_bytes -= conn.stored()

    def _evict_oldest(self) -> None:
        key = next(iter(self._connections))
        self._drop(key)
        self.stats.evicted += 1

    def _expire(self, now: float) -> None:
        while self._connections:
            key, conn = next(iter(self._connections.items()))
            if now - conn.last_seen <= self.timeout:
                break
            self._drop(key)
            self.stats.expired += 1
