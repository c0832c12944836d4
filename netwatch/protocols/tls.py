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

Speed matters here (one call per TLS flow, several per flow whose hello spans segments): the
fields are read by direct indexing and `struct.unpack_from`, the extension walk decodes only what
netwatch reports or JA4 needs, and JA4 is computed on first access to `ClientHello.ja4` and
memoised by its inputs (at most 4096 fingerprints kept: client stacks repeat their lists).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

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

# RFC 8701 section 2: the sixteen GREASE values 0x0A0A, 0x1A1A, ... 0xFAFA.
_GREASE = frozenset(0x0A0A + 0x1010 * index for index in range(16))


def is_grease(value: int) -> bool:
    """GREASE code points (RFC 8701 section 2): 0x0A0A, 0x1A1A, ... 0xFAFA."""
    return value in _GREASE


@dataclass(slots=True)
class ClientHello:
    """What a ClientHello says; the fields are valid as far as `status` says the parse got.

    `ja4` is a property: the fingerprint is computed from the stored lists the first time it is
    read (most callers of a partial or NOT_MINE result never need it) and then kept.
    """

    status: Status  # OK, NEED_MORE (valid prefix), NOT_MINE, INVALID
    sni: str | None = None  # first server_name host_name entry, escaped with escape_name_bytes
    ech: bool = False  # encrypted_client_hello (0xfe0d) present: the SNI is then a cover name
    alpn: tuple[str, ...] = ()
    legacy_version: int = 0
    supported_versions: tuple[int, ...] = ()
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()  # extension types in wire order
    needed: int = 0  # with NEED_MORE: total bytes needed (a lower bound), if known
    signature_algorithms: tuple[int, ...] = ()  # signature_algorithms (0x000d) list, a JA4 input
    alpn_first_raw: bytes = b""  # raw bytes of the first ALPN value: JA4 looks at them, not the escape
    ja4_transport: str = ""  # first JA4 character ("t", "q"); set only when the whole hello parsed
    _ja4: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ja4(self) -> str | None:
        """FoxIO JA4, only when the whole hello was parsed (None otherwise)."""
        if self._ja4 is None and self.ja4_transport:
            self._ja4 = _ja4(self)
        return self._ja4

    @ja4.setter
    def ja4(self, value: str | None) -> None:
        self._ja4 = value


class _Truncated(Exception):
    """The data ended inside a field: NEED_MORE if more can come, INVALID if the message is whole."""


class _Malformed(Exception):
    """A length or value that no valid ClientHello has."""


_UNPACK_TWO_U16 = struct.Struct(">HH").unpack_from

# Bytes that escape_name_bytes keeps as they are (printable ASCII except the RFC 1035 specials).
# Host names and ALPN ids are nearly always made of these only, and then decoding them is the
# same text at a fraction of the cost of the per-byte walk.
_VERBATIM = bytes(byte for byte in range(0x21, 0x7F) if byte not in b'"();\\@$')
_PARSED_EXTENSIONS = frozenset(
    (EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_SIGNATURE_ALGORITHMS, EXT_ENCRYPTED_CLIENT_HELLO)
)


def _escape(raw: bytes) -> str:
    """escape_name_bytes(raw), with a fast path for the usual all-printable name."""
    if not raw.translate(None, _VERBATIM):
        return raw.decode("ascii")
    return escape_name_bytes(raw)


def _u16_tuple(data: bytes, pos: int, length: int) -> tuple[int, ...]:
    """`length` bytes at `pos` as big-endian 16-bit values; an odd trailing byte is ignored."""
    return struct.unpack_from(f">{length >> 1}H", data, pos)


def _vector(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A 2-byte length-prefixed vector at `pos` (RFC 8446 3.4): where its items start and end."""
    if pos + 2 > end:
        raise _Malformed
    list_end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if list_end > end:
        raise _Malformed
    return pos + 2, list_end


def _server_name(data: bytes, pos: int, end: int, hello: ClientHello) -> None:
    """RFC 6066 section 3: a list of (name_type, name); the first non-empty host_name entry wins."""
    pos, list_end = _vector(data, pos, end)
    while pos < list_end:
        if pos + 3 > list_end:
            raise _Malformed
        name_type = data[pos]
        name_end = pos + 3 + ((data[pos + 1] << 8) | data[pos + 2])
        if name_end > list_end:
            raise _Malformed
        if name_type == _SNI_HOST_NAME and hello.sni is None and name_end > pos + 3:
            hello.sni = _escape(data[pos + 3 : name_end])
        pos = name_end


def _alpn(data: bytes, pos: int, end: int, hello: ClientHello, alpn: list[str]) -> None:
    """RFC 7301 section 3.1: a list of length-prefixed protocol ids (opaque bytes, escaped)."""
    pos, list_end = _vector(data, pos, end)
    while pos < list_end:
        value_end = pos + 1 + data[pos]
        if value_end > list_end:
            raise _Malformed
        protocol = data[pos + 1 : value_end]
        if not alpn:
            hello.alpn_first_raw = protocol
        if len(alpn) < MAX_ALPN:
            alpn.append(_escape(protocol))
        pos = value_end


def _parse_body(
    data: bytes, pos: int, end: int, complete: bool, hello: ClientHello, extensions: list[int], alpn: list[str]
) -> None:
    """ClientHello body in data[pos:end], RFC 8446 section 4.1.2 (RFC 5246 7.4.1.2: extensions optional).

    Raises _Truncated where the data ends and _Malformed on impossible values; `hello`,
    `extensions` and `alpn` keep everything parsed up to that point. `complete` says the body is
    the whole message body.
    """
    if pos + 2 > end:
        raise _Truncated
    hello.legacy_version = legacy_version = (data[pos] << 8) | data[pos + 1]
    if legacy_version >> 8 != 3:
        raise _Malformed
    pos += 34  # legacy_version, random
    if pos + 1 > end:
        raise _Truncated
    session_id_len = data[pos]
    if session_id_len > 32:
        raise _Malformed
    pos += 1 + session_id_len
    if pos + 2 > end:
        raise _Truncated
    cipher_len = (data[pos] << 8) | data[pos + 1]
    if cipher_len < 2 or cipher_len & 1:
        raise _Malformed
    pos += 2
    if pos + cipher_len > end:
        raise _Truncated
    hello.cipher_suites = _u16_tuple(data, pos, cipher_len)
    pos += cipher_len
    if pos + 1 > end:
        raise _Truncated
    compression_len = data[pos]
    if compression_len < 1:
        raise _Malformed
    pos += 1 + compression_len
    if pos > end:
        raise _Truncated
    if complete and pos == end:
        return  # a hello without extensions (TLS 1.0 era)
    if pos + 2 > end:
        raise _Truncated
    block_len = (data[pos] << 8) | data[pos + 1]
    pos += 2
    # An incomplete hello still yields every extension that arrived whole (the SNI usually does).
    available = block_len if complete else min(block_len, end - pos)
    block_end = pos + available
    if block_end > end:
        raise _Truncated
    append = extensions.append
    for count in range(MAX_EXTENSIONS + 1):
        if pos >= block_end:
            break
        if count == MAX_EXTENSIONS or pos + 4 > block_end:
            raise _Malformed if count == MAX_EXTENSIONS else _Truncated
        ext_type, ext_len = _UNPACK_TWO_U16(data, pos)
        append(ext_type)
        pos += 4
        ext_end = pos + ext_len
        if ext_end > block_end:
            raise _Truncated
        if ext_type not in _PARSED_EXTENSIONS:
            pos = ext_end
            continue
        # The extension's own length says its data is all there: an inner length that overruns
        # it is a lie (_Malformed), not a truncation.
        if ext_type == EXT_SERVER_NAME:
            _server_name(data, pos, ext_end, hello)
        elif ext_type == EXT_ALPN:
            _alpn(data, pos, ext_end, hello, alpn)
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            if pos + 1 > ext_end or pos + 1 + data[pos] > ext_end:
                raise _Malformed
            hello.supported_versions = _u16_tuple(data, pos + 1, data[pos])
        elif ext_type == EXT_SIGNATURE_ALGORITHMS:
            if pos + 2 > ext_end:
                raise _Malformed
            list_len = (data[pos] << 8) | data[pos + 1]
            if pos + 2 + list_len > ext_end:
                raise _Malformed
            hello.signature_algorithms = _u16_tuple(data, pos + 2, list_len)
        elif ext_type == EXT_ENCRYPTED_CLIENT_HELLO:
            hello.ech = True
        pos = ext_end
    if available < block_len:
        raise _Truncated
    if complete and block_end < end:
        raise _Malformed  # bytes after the extensions block


def _parse_message(data: bytes, start: int, transport: str) -> ClientHello:
    """The Handshake message that starts at data[start]; trailing bytes after it are ignored."""
    present = len(data) - start
    if present < 1:
        return ClientHello(Status.NEED_MORE, needed=_HANDSHAKE_HEADER)
    if data[start] != _HANDSHAKE_CLIENT_HELLO:
        return ClientHello(Status.NOT_MINE)
    if present < _HANDSHAKE_HEADER:
        return ClientHello(Status.NEED_MORE, needed=_HANDSHAKE_HEADER)
    length = (data[start + 1] << 16) | (data[start + 2] << 8) | data[start + 3]
    if length > MAX_CLIENT_HELLO:
        return ClientHello(Status.INVALID)
    total = _HANDSHAKE_HEADER + length
    complete = present >= total
    hello = ClientHello(Status.OK)
    extensions: list[int] = []
    alpn: list[str] = []
    try:
        end = start + total if complete else len(data)
        _parse_body(data, start + _HANDSHAKE_HEADER, end, complete, hello, extensions, alpn)
        if complete:
            hello.ja4_transport = transport
        else:
            # Everything present parsed cleanly but the header promises more bytes.
            hello.status = Status.NEED_MORE
            hello.needed = total
    except _Truncated:
        if complete:
            hello.status = Status.INVALID
        else:
            hello.status = Status.NEED_MORE
            hello.needed = total
    except _Malformed:
        hello.status = Status.INVALID
    hello.extensions = tuple(extensions)
    hello.alpn = tuple(alpn)
    return hello


def parse_client_hello_message(msg: bytes, *, transport: str = "q") -> ClientHello:
    """Parse a bare Handshake message (type 1, 3-byte length, body), e.g. from QUIC CRYPTO frames.

    `transport` is the first JA4 character: "q" (QUIC, the default) or "t" (TLS over TCP).
    NEED_MORE means `msg` is a valid prefix; `needed` is the message's total length once known.
    Never raises.
    """
    try:
        return _parse_message(msg if type(msg) is bytes else bytes(msg), 0, transport)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return ClientHello(Status.INVALID)


MAX_PIECES = 256  # pieces (CRYPTO frames, TCP segments) of one hello with holes


def _merged_ranges(pieces: list[tuple[int, bytes]], total: int) -> tuple[bytearray, list[tuple[int, int]]]:
    """The pieces laid out in a buffer of `total` bytes (holes zero), and the sorted covered ranges."""
    buffer = bytearray(total)
    ranges: list[tuple[int, int]] = []
    for offset, data in sorted(pieces)[:MAX_PIECES]:
        end = min(total, offset + len(data))
        if offset < 0 or offset >= end:
            continue
        buffer[offset:end] = data[: end - offset]
        if ranges and offset <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((offset, end))
    return buffer, ranges


def _covered(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether every byte of [start, end) was seen (ranges are merged, so one range must hold it)."""
    return any(first <= start and end <= last for first, last in ranges)


def parse_client_hello_pieces(pieces: list[tuple[int, bytes]], *, transport: str = "q") -> ClientHello | None:
    """A ClientHello handshake message of which only some byte ranges were seen (a lost packet).

    `pieces` are (offset in the handshake message, bytes). The message is walked structurally:
    every length field on the way (session id, cipher suites, compression, extensions block, each
    extension header) must have been seen; the body of an extension is only needed when it is one
    netwatch reads (server_name, ALPN, supported_versions, signature_algorithms) and is skipped by its
    length when its bytes are missing. A field is reported only when all its bytes were seen: there is
    no guessing. The walk stops at the first length field that lies in a hole. The result's status is
    NEED_MORE (OK via `parse_client_hello_message` when the pieces cover the whole message), never JA4;
    None when the handshake header itself is missing. Bounds: MAX_CLIENT_HELLO, MAX_PIECES pieces,
    MAX_EXTENSIONS extensions. Never raises.
    """
    try:
        return _parse_pieces(pieces, transport)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return ClientHello(Status.INVALID)


def _parse_pieces(pieces: list[tuple[int, bytes]], transport: str) -> ClientHello | None:
    header = next((data for offset, data in pieces if offset == 0 and len(data) >= _HANDSHAKE_HEADER), None)
    if header is None:
        return None
    if header[0] != _HANDSHAKE_CLIENT_HELLO:
        return ClientHello(Status.NOT_MINE)
    length = (header[1] << 16) | (header[2] << 8) | header[3]
    if length > MAX_CLIENT_HELLO:
        return ClientHello(Status.INVALID)
    total = _HANDSHAKE_HEADER + length
    data, ranges = _merged_ranges(pieces, total)
    if _covered(ranges, 0, total):
        return parse_client_hello_message(bytes(data), transport=transport)
    data = bytes(data)
    hello = ClientHello(Status.NEED_MORE, needed=total)
    extensions: list[int] = []
    alpn: list[str] = []
    try:
        _walk_pieces(data, ranges, total, hello, extensions, alpn)
    except _Malformed:
        return ClientHello(Status.INVALID)
    hello.extensions = tuple(extensions)
    hello.alpn = tuple(alpn)
    return hello


def _walk_pieces(data: bytes, ranges: list[tuple[int, int]], end: int, hello: ClientHello,
                 extensions: list[int], alpn: list[str]) -> None:
    """The ClientHello body of `_parse_body`, reading only bytes in `ranges`; returns where a hole stops it."""
    pos = _HANDSHAKE_HEADER
    if not _covered(ranges, pos, pos + 2):
        return
    hello.legacy_version = (data[pos] << 8) | data[pos + 1]
    if hello.legacy_version >> 8 != 3:
        raise _Malformed
    pos += 34  # legacy_version, random (not needed)
    if not _covered(ranges, pos, pos + 1):
        return
    if data[pos] > 32:
        raise _Malformed
    pos += 1 + data[pos]
    if not _covered(ranges, pos, pos + 2):
        return
    cipher_len = (data[pos] << 8) | data[pos + 1]
    if cipher_len < 2 or cipher_len & 1 or pos + 2 + cipher_len > end:
        raise _Malformed
    if _covered(ranges, pos + 2, pos + 2 + cipher_len):
        hello.cipher_suites = _u16_tuple(data, pos + 2, cipher_len)
    pos += 2 + cipher_len
    if not _covered(ranges, pos, pos + 1):
        return
    if data[pos] < 1:
        raise _Malformed
    pos += 1 + data[pos]
    if not _covered(ranges, pos, pos + 2):
        return
    block_end = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if block_end != end:
        raise _Malformed  # the extensions block must end where the message does
    pos += 2
    for _ in range(MAX_EXTENSIONS):
        if pos >= block_end or not _covered(ranges, pos, pos + 4):
            return
        ext_type, ext_len = _UNPACK_TWO_U16(data, pos)
        pos += 4
        ext_end = pos + ext_len
        if ext_end > block_end:
            raise _Malformed
        extensions.append(ext_type)
        if ext_type == EXT_ENCRYPTED_CLIENT_HELLO:
            hello.ech = True
        elif ext_type in _PARSED_EXTENSIONS and _covered(ranges, pos, ext_end):
            if ext_type == EXT_SERVER_NAME:
                _server_name(data, pos, ext_end, hello)
            elif ext_type == EXT_ALPN:
                _alpn(data, pos, ext_end, hello, alpn)
        pos = ext_end


def _stream_needed(record_end: int, missing_after_record: int) -> int:
    """Smallest stream length that could complete the message: a later record adds a header."""
    if missing_after_record <= 0:
        return record_end
    return record_end + _RECORD_HEADER + missing_after_record


def _partial(message: bytearray, needed: int) -> ClientHello:
    """The stream ended before the hello did: report what the prefix holds."""
    result = _parse_message(bytes(message), 0, "t") if message else ClientHello(Status.NEED_MORE)
    if result.status is Status.NEED_MORE:
        result.needed = needed
    return result


def _parse_stream(data: bytes) -> ClientHello:
    if not data:
        return ClientHello(Status.NEED_MORE, needed=_RECORD_HEADER)
    if data[0] != _CONTENT_HANDSHAKE:
        return ClientHello(Status.NOT_MINE)  # also SSLv2-compatible hellos (high bit set)
    if len(data) >= _RECORD_HEADER + _HANDSHAKE_HEADER and data[1] == 3 and data[2] <= 4:
        # The usual case: the first record holds the whole hello, parsed in place without a copy.
        record_len = (data[3] << 8) | data[4]
        hello_len = (data[6] << 16) | (data[7] << 8) | data[8]
        in_first_record = min(record_len, len(data) - _RECORD_HEADER) - _HANDSHAKE_HEADER
        if (
            data[5] == _HANDSHAKE_CLIENT_HELLO
            and record_len <= _MAX_RECORD_PAYLOAD
            and hello_len <= min(MAX_CLIENT_HELLO, in_first_record)
        ):
            return _parse_message(data, _RECORD_HEADER, "t")
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
                return _parse_message(bytes(message), 0, "t")
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
        return _parse_stream(data if type(data) is bytes else bytes(data))
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


_NO_HASH = "000000000000"
_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_JA4_CACHE_SIZE = 4096  # distinct fingerprints remembered; real traffic repeats a few client stacks
_ja4_cache: dict[tuple, str] = {}


def _ja4_alpn(first: bytes) -> str:
    """First and last character of the first ALPN value; its hex form's when not alphanumeric."""
    if not first:
        return "00"
    if first[0] in _ALNUM and first[-1] in _ALNUM:
        return chr(first[0]) + chr(first[-1])
    hex_form = first.hex()
    return hex_form[0] + hex_form[-1]


def _hex_list(values: list[int]) -> str:
    """"1301,1302,..." for 16-bit values: packed big-endian, hex with a comma every two bytes."""
    return struct.pack(f">{len(values)}H", *values).hex(",", 2)


def _without_grease(values: tuple[int, ...]) -> tuple[int, ...] | list[int]:
    """`values` minus GREASE; most lists hold none or one, so test before building a copy."""
    if _GREASE.isdisjoint(values):
        return values
    return [value for value in values if value not in _GREASE]


def _sha256_12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _compute_ja4(
    transport: str,
    legacy_version: int,
    supported_versions: tuple[int, ...],
    cipher_suites: tuple[int, ...],
    extensions: tuple[int, ...],
    signature_algorithms: tuple[int, ...],
    alpn_first_raw: bytes,
) -> str:
    """JA4 from the hello's lists, without GREASE; the hashed lists are sorted as numbers."""
    versions = _without_grease(supported_versions)
    version = max(versions) if versions else legacy_version
    # Sorting the 4-digit hex forms equals sorting the numbers, so sort ints and format once.
    ciphers = sorted(_without_grease(cipher_suites))
    exts = _without_grease(extensions)
    part_a = "{}{}{}{:02d}{:02d}{}".format(
        transport,
        _JA4_VERSIONS.get(version, "00"),
        "d" if EXT_SERVER_NAME in exts else "i",
        min(len(ciphers), 99),
        min(len(exts), 99),
        _ja4_alpn(alpn_first_raw),
    )
    part_b = _sha256_12(_hex_list(ciphers)) if ciphers else _NO_HASH
    hashed_ext = sorted(e for e in exts if e != EXT_SERVER_NAME and e != EXT_ALPN)
    if hashed_ext:
        sigalgs = _without_grease(signature_algorithms)
        text = _hex_list(hashed_ext) + ("_" + _hex_list(sigalgs) if sigalgs else "")
        part_c = _sha256_12(text)
    else:
        part_c = _NO_HASH
    return f"{part_a}_{part_b}_{part_c}"


def _ja4(hello: ClientHello) -> str:
    """JA4 of a whole parsed hello (its `ja4_transport`: "t" TCP, "q" QUIC, "d" DTLS), memoised:
    the same client stack sends the same lists on every connection."""
    key = (
        hello.ja4_transport,
        hello.legacy_version,
        hello.supported_versions,
        hello.cipher_suites,
        hello.extensions,
        hello.signature_algorithms,
        hello.alpn_first_raw,
    )
    value = _ja4_cache.get(key)
    if value is None:
        value = _compute_ja4(*key)
        if len(_ja4_cache) >= _JA4_CACHE_SIZE:
            _ja4_cache.clear()
        _ja4_cache[key] = value
    return value
