"""TLS ClientHello parser: the server name (SNI), ALPN and fingerprint inputs a client sends first.

Two entry points:

* `parse_client_hello_stream` takes the first bytes of a TCP direction (TLS records from the start)
  and reassembles one handshake message that may be fragmented over several records
  (RFC 8446 section 5.1).
* `parse_client_hello_message` takes a bare Handshake message, as QUIC carries it in CRYPTO frames
  (RFC 9001 section 4), with no record layer.

Both take hostile bytes and never raise. Bounds: a ClientHello body of at most `MAX_CLIENT_HELLO`
bytes (128 KiB: post-quantum hellos are ~2 KiB, a few are much larger), at most `MAX_RECORDS` TLS
records, at most `MAX_EXTENSIONS` extensions, at most `MAX_ALPN` ALPN values kept. Length fields are
checked against the bytes present before anything is sliced, so a length that claims gigabytes
costs nothing.

A result with status NEED_MORE or INVALID still carries the fields parsed before the end of the
data or the fault (an SNI in the first TCP segment of a hello whose tail was lost is still
evidence); `needed` then tells a stream caller how many bytes the direction must have.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from netwatch.protocols.common import Status, escape_name_bytes

MAX_CLIENT_HELLO = 128 * 1024
MAX_RECORDS = 64
MAX_EXTENSIONS = 1024
MAX_ALPN = 64

# RFC 8446 section 5.1: a TLSPlaintext fragment is at most 2^14 bytes.
_MAX_RECORD_PAYLOAD = 1 << 14
_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
_CONTENT_HANDSHAKE = 22
_HANDSHAKE_CLIENT_HELLO = 1

# Extension code points (IANA "TLS ExtensionType Values").
EXT_SERVER_NAME = 0x0000
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_ENCRYPTED_CLIENT_HELLO = 0xFE0D  # draft-ietf-tls-esni-18 section 11.1

_SNI_HOST_NAME = 0


def is_grease(value: int) -> bool:
    """GREASE code points (RFC 8701 section 2): 0x0A0A, 0x1A1A, ... 0xFAFA."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


@dataclass(slots=True)
class ClientHello:
    """What a ClientHello says; the fields are valid as far as `status` says the parse got."""

    status: Status  # OK, NEED_MORE (valid prefix), NOT_MINE, INVALID
    sni: str | None = None  # first server_name host_name entry, escaped with escape_name_bytes
    ech: bool = False  # encrypted_client_hello (0xfe0d) present: the SNI is then a cover name
    alpn: tuple[str, ...] = ()
    legacy_version: int = 0
    supported_versions: tuple[int, ...] = ()
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()  # extension types in wire order
    ja4: str | None = None  # FoxIO JA4, only when the whole hello was parsed
    needed: int = 0  # with NEED_MORE: total bytes needed (a lower bound), if known


class _Truncated(Exception):
    """The data ended inside a field: NEED_MORE if more can come, INVALID if the message is whole."""


class _Malformed(Exception):
    """A length or value that no valid ClientHello has."""


class _Reader:
    """Bounds-checked big-endian reads over one buffer; every read checks before it slices."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | bytearray, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        if self.pos + 1 > self.end:
            raise _Truncated
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise _Truncated
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return value

    def take(self, length: int) -> bytes:
        if self.pos + length > self.end:
            raise _Truncated
        value = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        return value

    def sub(self, length: int) -> _Reader:
        """A reader over the next `length` bytes; truncation inside it is still a _Truncated."""
        if self.pos + length > self.end:
            raise _Truncated
        inner = _Reader(self.data, self.pos, self.pos + length)
        self.pos += length
        return inner


def _u16_list(raw: bytes) -> tuple[int, ...]:
    """Big-endian 16-bit values; an odd trailing byte is ignored."""
    return struct.unpack(f">{len(raw) // 2}H", raw[: len(raw) // 2 * 2])


class _Fields:
    """Mutable scratch space while parsing; turned into a ClientHello at the end."""

    __slots__ = (
        "alpn",
        "alpn_first_raw",
        "ciphers",
        "ech",
        "extensions",
        "legacy_version",
        "sigalgs",
        "sni",
        "versions",
    )

    def __init__(self) -> None:
        self.sni: str | None = None
        self.ech = False
        self.alpn: list[str] = []
        self.alpn_first_raw = b""  # JA4 looks at the raw bytes of the first ALPN value
        self.legacy_version = 0
        self.versions: tuple[int, ...] = ()
        self.ciphers: tuple[int, ...] = ()
        self.extensions: list[int] = []
        self.sigalgs: tuple[int, ...] = ()

    def result(self, status: Status, *, needed: int = 0, transport: str = "t") -> ClientHello:
        hello = ClientHello(
            status=status,
            sni=self.sni,
            ech=self.ech,
            alpn=tuple(self.alpn),
            legacy_version=self.legacy_version,
            supported_versions=self.versions,
            cipher_suites=self.ciphers,
            extensions=tuple(self.extensions),
            needed=needed if status is Status.NEED_MORE else 0,
        )
        if status is Status.OK:
            hello.ja4 = _ja4(self, transport)
        return hello


def _parse_server_name(body: _Reader, fields: _Fields) -> None:
    """RFC 6066 section 3: a list of (name_type, name); the first host_name entry wins."""
    names = body.sub(body.u16())
    while names.remaining():
        name_type = names.u8()
        name = names.take(names.u16())
        if name_type == _SNI_HOST_NAME and fields.sni is None and name:
            fields.sni = escape_name_bytes(name)


def _parse_alpn(body: _Reader, fields: _Fields) -> None:
    """RFC 7301 section 3.1: a list of length-prefixed protocol ids (opaque bytes, escaped)."""
    protocols = body.sub(body.u16())
    while protocols.remaining():
        protocol = protocols.take(protocols.u8())
        if not fields.alpn:
            fields.alpn_first_raw = protocol
        if len(fields.alpn) < MAX_ALPN:
            fields.alpn.append(escape_name_bytes(protocol))


def _parse_extension(ext_type: int, body: _Reader, fields: _Fields) -> None:
    if ext_type == EXT_SERVER_NAME:
        _parse_server_name(body, fields)
    elif ext_type == EXT_ALPN:
        _parse_alpn(body, fields)
    elif ext_type == EXT_SUPPORTED_VERSIONS:
        fields.versions = _u16_list(body.take(body.u8()))
    elif ext_type == EXT_SIGNATURE_ALGORITHMS:
        fields.sigalgs = _u16_list(body.take(body.u16()))
    elif ext_type == EXT_ENCRYPTED_CLIENT_HELLO:
        fields.ech = True


def _parse_body(body: _Reader, fields: _Fields, *, complete: bool) -> None:
    """ClientHello body, RFC 8446 section 4.1.2 (and RFC 5246 7.4.1.2, where extensions are optional).

    Raises _Truncated where the data ends and _Malformed on impossible values; `fields` keeps
    everything parsed up to that point. `complete` says the body is the whole message body.
    """
    fields.legacy_version = body.u16()
    if fields.legacy_version >> 8 != 3:
        raise _Malformed
    body.take(32)  # random
    session_id_len = body.u8()
    if session_id_len > 32:
        raise _Malformed
    body.take(session_id_len)
    cipher_len = body.u16()
    if cipher_len < 2 or cipher_len % 2:
        raise _Malformed
    fields.ciphers = _u16_list(body.take(cipher_len))
    compression_len = body.u8()
    if compression_len < 1:
        raise _Malformed
    body.take(compression_len)
    if complete and body.remaining() == 0:
        return  # a hello without extensions (TLS 1.0 era)
    block_len = body.u16()
    # An incomplete hello still yields every extension that arrived whole (the SNI usually does).
    available = block_len if complete else min(block_len, body.remaining())
    extensions = body.sub(available)
    while extensions.remaining():
        if len(fields.extensions) >= MAX_EXTENSIONS:
            raise _Malformed
        ext_type = extensions.u16()
        ext_len = extensions.u16()
        fields.extensions.append(ext_type)
        ext_body = extensions.sub(ext_len)
        try:
            _parse_extension(ext_type, ext_body, fields)
        except _Truncated:
            # The extension's own length said its data was all there: its inner lengths lie.
            raise _Malformed from None
    if available < block_len:
        raise _Truncated
    if complete and body.remaining():
        raise _Malformed  # bytes after the extensions block


def _parse_message(msg: bytes | bytearray, transport: str) -> ClientHello:
    """A Handshake message that starts at msg[0]; trailing bytes after it are ignored."""
    if len(msg) < 1:
        return ClientHello(Status.NEED_MORE, needed=_HANDSHAKE_HEADER)
    if msg[0] != _HANDSHAKE_CLIENT_HELLO:
        return ClientHello(Status.NOT_MINE)
    if len(msg) < _HANDSHAKE_HEADER:
        return ClientHello(Status.NEED_MORE, needed=_HANDSHAKE_HEADER)
    length = int.from_bytes(msg[1:4], "big")
    if length > MAX_CLIENT_HELLO:
        return ClientHello(Status.INVALID)
    total = _HANDSHAKE_HEADER + length
    complete = len(msg) >= total
    fields = _Fields()
    try:
        _parse_body(_Reader(msg, _HANDSHAKE_HEADER, min(total, len(msg))), fields, complete=complete)
    except _Truncated:
        if complete:
            return fields.result(Status.INVALID)
        return fields.result(Status.NEED_MORE, needed=total)
    except _Malformed:
        return fields.result(Status.INVALID)
    if not complete:
        # Everything present parsed cleanly but the header promises more bytes.
        return fields.result(Status.NEED_MORE, needed=total)
    return fields.result(Status.OK, transport=transport)


def parse_client_hello_message(msg: bytes, *, transport: str = "q") -> ClientHello:
    """Parse a bare Handshake message (type 1, 3-byte length, body), e.g. from QUIC CRYPTO frames.

    `transport` is the first JA4 character: "q" (QUIC, the default) or "t" (TLS over TCP).
    NEED_MORE means `msg` is a valid prefix; `needed` is the message's total length once known.
    Never raises.
    """
    try:
        return _parse_message(msg, transport)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return ClientHello(Status.INVALID)


def _stream_needed(record_end: int, missing_after_record: int) -> int:
    """Smallest stream length that could complete the message: a later record adds a header."""
    if missing_after_record <= 0:
        return record_end
    return record_end + _RECORD_HEADER + missing_after_record


def _partial(message: bytearray, needed: int) -> ClientHello:
    """The stream ended before the hello did: report what the prefix holds."""
    result = _parse_message(message, "t") if message else ClientHello(Status.NEED_MORE)
    if result.status is Status.NEED_MORE:
        result.needed = needed
    return result


def _parse_stream(data: bytes) -> ClientHello:
    if not data:
        return ClientHello(Status.NEED_MORE, needed=_RECORD_HEADER)
    if data[0] != _CONTENT_HANDSHAKE:
        return ClientHello(Status.NOT_MINE)  # also SSLv2-compatible hellos (high bit set)
    message = bytearray()
    pos = 0
    records = 0
    while True:
        header = data[pos : pos + _RECORD_HEADER]
        not_tls = Status.NOT_MINE if records == 0 else Status.INVALID
        if header[0] != _CONTENT_HANDSHAKE:
            return ClientHello(Status.INVALID)  # another record type before the hello ended
        if (len(header) >= 2 and header[1] != 3) or (len(header) >= 3 and header[2] > 4):
            return ClientHello(not_tls)  # record version outside 0x0300-0x0304
        if len(header) < _RECORD_HEADER:
            return _partial(message, pos + _RECORD_HEADER)
        length = (header[3] << 8) | header[4]
        records += 1
        if length > _MAX_RECORD_PAYLOAD or records > MAX_RECORDS:
            return ClientHello(Status.INVALID)
        record_end = pos + _RECORD_HEADER + length
        message += data[pos + _RECORD_HEADER : record_end]
        if message and message[0] != _HANDSHAKE_CLIENT_HELLO:
            return ClientHello(Status.NOT_MINE)  # e.g. the server direction (ServerHello)
        total = 0
        if len(message) >= _HANDSHAKE_HEADER:
            total = _HANDSHAKE_HEADER + int.from_bytes(message[1:4], "big")
            if total - _HANDSHAKE_HEADER > MAX_CLIENT_HELLO:
                return ClientHello(Status.INVALID)
            if len(message) >= total:
                return _parse_message(message, "t")
        if record_end > len(data):
            still_in_record = record_end - len(data)
            missing_after = total - len(message) - still_in_record if total else 0
            return _partial(message, _stream_needed(record_end, missing_after))
        pos = record_end
        if pos >= len(data):
            return _partial(message, pos + _RECORD_HEADER)


def parse_client_hello_stream(data: bytes) -> ClientHello:
    """Parse the ClientHello at the start of a TCP direction (TLS records from the first byte).

    Handles one handshake message fragmented over several handshake records (versions 0x0300 to
    0x0304) and a record split over TCP segments: NEED_MORE means `data` is a valid prefix and
    `needed` is a lower bound on the total bytes to gather before calling again. Not TLS (first
    byte != 0x16, including SSLv2-compatible hellos) is NOT_MINE at once. Bounds: hello body
    <= MAX_CLIENT_HELLO, <= MAX_RECORDS records, each <= 2^14 bytes. Never raises.
    """
    try:
        return _parse_stream(data)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return ClientHello(Status.INVALID)


# --- JA4 (FoxIO, https://github.com/FoxIO-LLC/ja4/blob/main/technical_details/JA4.md, BSD-3) ---

_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def _is_alnum_byte(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _ja4_alpn(first: bytes) -> str:
    """First and last character of the first ALPN value; its hex form's when not alphanumeric."""
    if not first:
        return "00"
    if _is_alnum_byte(first[0]) and _is_alnum_byte(first[-1]):
        return chr(first[0]) + chr(first[-1])
    hex_form = first.hex()
    return hex_form[0] + hex_form[-1]


def _ja4_hash(items: list[str]) -> str:
    return hashlib.sha256(",".join(items).encode("ascii")).hexdigest()[:12]


def _ja4(fields: _Fields, transport: str) -> str:
    """JA4 of a whole parsed hello; `transport` is "t" (TCP), "q" (QUIC) or "d" (DTLS)."""
    versions = [v for v in fields.versions if not is_grease(v)]
    version = max(versions) if versions else fields.legacy_version
    ciphers = [f"{c:04x}" for c in fields.ciphers if not is_grease(c)]
    extensions = [e for e in fields.extensions if not is_grease(e)]
    part_a = "{}{}{}{:02d}{:02d}{}".format(
        transport,
        _JA4_VERSIONS.get(version, "00"),
        "d" if EXT_SERVER_NAME in extensions else "i",
        min(len(ciphers), 99),
        min(len(extensions), 99),
        _ja4_alpn(fields.alpn_first_raw),
    )
    part_b = _ja4_hash(sorted(ciphers)) if ciphers else "000000000000"
    hashed_ext = sorted(f"{e:04x}" for e in extensions if e not in (EXT_SERVER_NAME, EXT_ALPN))
    if hashed_ext:
        sigalgs = [f"{s:04x}" for s in fields.sigalgs if not is_grease(s)]
        text = ",".join(hashed_ext) + ("_" + ",".join(sigalgs) if sigalgs else "")
        part_c = hashlib.sha256(text.encode("ascii")).hexdigest()[:12]
    else:
        part_c = "000000000000"
    return f"{part_a}_{part_b}_{part_c}"
