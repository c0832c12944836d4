"""What a client sends before TLS (or a tunnelled request) on the same TCP stream.

* SOCKS4 / SOCKS4a CONNECT (the SOCKS 4 and 4A protocol notes of OpenSSH/Ying-Da Lee) and SOCKS5
  greeting, optional username/password sub-negotiation (RFC 1929) and CONNECT request (RFC 1928):
  the destination name or address is in clear, and the client's next bytes are the tunnelled
  stream (a ClientHello, an HTTP request).
* Upgrades to TLS after a plaintext exchange: SMTP and NNTP STARTTLS (RFC 3207, RFC 4642), IMAP
  `tag STARTTLS` (RFC 9051), POP3 STLS (RFC 2595), FTP AUTH TLS/SSL (RFC 4217), LDAP StartTLS
  (the ExtendedRequest 1.3.6.1.4.1.1466.20037, RFC 4511 4.14) and PostgreSQL's SSLRequest (the
  8-byte message with code 80877103). The ClientHello follows the client's upgrade command.

Only the client's direction is looked at: the server's answers (SOCKS reply, "220 ready") are in the
other direction. Bytes in, plain data out; never raises. Bounds: at most MAX_PROLOGUE bytes (4 KiB)
and MAX_LINES text lines are looked at; a prologue longer than that is not one.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from netwatch.protocols.common import Status, escape_name_bytes

MAX_PROLOGUE = 4096
MAX_LINES = 16

KIND_SOCKS4 = "socks4"
KIND_SOCKS4A = "socks4a"
KIND_SOCKS5 = "socks5"
KIND_STARTTLS = "starttls"  # SMTP, NNTP, IMAP, POP3 (STLS), FTP (AUTH TLS)
KIND_LDAP_STARTTLS = "ldap_starttls"
KIND_POSTGRESQL_SSL = "postgresql_ssl"

_POSTGRESQL_SSL_REQUEST = bytes.fromhex("0000000804d2162f")
_LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
_SOCKS_CONNECT = 0x01
# First words a client of a STARTTLS-capable text protocol sends before upgrading (upper-cased).
_TEXT_COMMANDS = frozenset({
    b"EHLO", b"HELO", b"LHLO", b"STARTTLS", b"NOOP", b"RSET",  # SMTP/LMTP
    b"CAPABILITY", b"ID", b"CAPABILITIES", b"MODE",  # IMAP (after its tag), NNTP
    b"CAPA", b"STLS",  # POP3
    b"AUTH", b"FEAT", b"SYST", b"OPTS", b"HOST",  # FTP
})
_UPGRADES = ((b"STARTTLS",), (b"STLS",), (b"AUTH", b"TLS"), (b"AUTH", b"SSL"), (b"AUTH", b"TLS-C"))
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t"


class Prologue(NamedTuple):
    status: Status  # OK: `end` is where the tunnelled or TLS stream starts; NEED_MORE; NOT_MINE
    kind: str = ""  # one of the KIND_* values
    end: int = 0
    host: str | None = None  # SOCKS destination: a name (escaped) or an address's text
    port: int | None = None
    is_address: bool = False  # `host` is an IP address, not a name


_NEED_MORE = Prologue(Status.NEED_MORE)
_NOT_MINE = Prologue(Status.NOT_MINE)


def parse_prologue(data: bytes) -> Prologue:
    """Recognise a SOCKS request or a TLS upgrade at the start of a client's stream. Never raises."""
    try:
        data = bytes(data[:MAX_PROLOGUE])
        if not data:
            return _NEED_MORE
        first = data[0]
        if first == 0x04:
            return _socks4(data)
        if first == 0x05:
            return _socks5(data)
        if first == 0x00:
            return _postgresql(data)
        if first == 0x30:
            return _ldap(data)
        return _text(data)
    except Exception:  # a parser of hostile bytes must not take the pipeline down
        return _NOT_MINE


def _prefix_of(data: bytes, whole: bytes) -> bool:
    return whole.startswith(data)


def _postgresql(data: bytes) -> Prologue:
    if len(data) < len(_POSTGRESQL_SSL_REQUEST):
        return _NEED_MORE if _prefix_of(data, _POSTGRESQL_SSL_REQUEST) else _NOT_MINE
    if data.startswith(_POSTGRESQL_SSL_REQUEST):
        return Prologue(Status.OK, KIND_POSTGRESQL_SSL, len(_POSTGRESQL_SSL_REQUEST))
    return _NOT_MINE


def _ldap(data: bytes) -> Prologue:
    """LDAPMessage ::= SEQUENCE { messageID, extendedReq [APPLICATION 23] { requestName [0] OID } }."""
    if len(data) < 2:
        return _NEED_MORE
    length, pos = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 2:
            return _NOT_MINE
        if len(data) < 2 + size:
            return _NEED_MORE
        length, pos = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    end = pos + length
    if end > MAX_PROLOGUE:
        return _NOT_MINE
    if len(data) < end:
        return _NEED_MORE
    message = data[pos:end]
    # messageID INTEGER (tag 0x02), then the ExtendedRequest (tag 0x77) whose name is the StartTLS OID.
    if message[:1] != b"\x02" or len(message) < 2:
        return _NOT_MINE
    rest = message[2 + message[1] :]
    if rest[:1] != b"\x77" or _LDAP_STARTTLS_OID not in rest[:64]:
        return _NOT_MINE
    return Prologue(Status.OK, KIND_LDAP_STARTTLS, end)


def _socks4(data: bytes) -> Prologue:
    """VN=4, CD=1 (CONNECT), DSTPORT, DSTIP, USERID NUL; SOCKS4a: DSTIP 0.0.0.x (x != 0), then the name NUL."""
    if len(data) < 2:
        return _NEED_MORE
    if data[1] != _SOCKS_CONNECT:
        return _NOT_MINE
    if len(data) < 9:
        return _NEED_MORE
    port = int.from_bytes(data[2:4], "big")
    address = data[4:8]
    user_end = data.find(b"\x00", 8)
    if user_end < 0:
        return _NEED_MORE if len(data) < 8 + 256 else _NOT_MINE
    if address[:3] == b"\x00\x00\x00" and address[3]:
        name_end = data.find(b"\x00", user_end + 1)
        if name_end < 0:
            return _NEED_MORE if len(data) < user_end + 1 + 256 else _NOT_MINE
        name = data[user_end + 1 : name_end]
        if not name:
            return _NOT_MINE
        return Prologue(Status.OK, KIND_SOCKS4A, name_end + 1, escape_name_bytes(name), port)
    return Prologue(Status.OK, KIND_SOCKS4, user_end + 1, str(ipaddress.IPv4Address(address)), port, True)


def _socks5(data: bytes) -> Prologue:
    """Greeting (VER=5, NMETHODS, METHODS), optional RFC 1929 auth, then VER=5 CMD=1 RSV=0 ATYP ADDR PORT."""
    if len(data) < 2:
        return _NEED_MORE
    methods = data[1]
    if not methods:
        return _NOT_MINE
    pos = 2 + methods
    if len(data) < pos + 1:
        return _NEED_MORE
    if data[pos] == 0x01:  # username/password sub-negotiation (RFC 1929 section 2)
        if len(data) < pos + 2:
            return _NEED_MORE
        pass_at = pos + 2 + data[pos + 1]
        if len(data) < pass_at + 1:
            return _NEED_MORE
        pos = pass_at + 1 + data[pass_at]
        if len(data) < pos + 1:
            return _NEED_MORE
    if data[pos] != 0x05:
        return _NOT_MINE
    if len(data) < pos + 5:
        return _NEED_MORE
    if data[pos + 1] != _SOCKS_CONNECT or data[pos + 2] != 0:
        return _NOT_MINE
    address_type, pos = data[pos + 3], pos + 4
    if address_type == 0x01:
        size, is_address = 4, True
    elif address_type == 0x04:
        size, is_address = 16, True
    elif address_type == 0x03:
        size, is_address = 1 + data[pos], False
    else:
        return _NOT_MINE
    end = pos + size + 2
    if len(data) < end:
        return _NEED_MORE
    raw = data[pos : pos + size]
    port = int.from_bytes(data[pos + size : end], "big")
    if is_address:
        host = str(ipaddress.ip_address(raw))
    else:
        if size == 1:
            return _NOT_MINE
        host = escape_name_bytes(raw[1:])
    return Prologue(Status.OK, KIND_SOCKS5, end, host, port, is_address)


def _text(data: bytes) -> Prologue:
    """Command lines of SMTP/NNTP/IMAP/POP3/FTP up to the one asking for TLS."""
    pos = 0
    for index in range(MAX_LINES):
        line_end = data.find(b"\n", pos)
        line = data[pos : line_end if line_end >= 0 else len(data)].rstrip(b"\r")
        if line.translate(None, _PRINTABLE):
            return _NOT_MINE
        words = line.upper().split()
        if index == 0 and words and len(words) > 1 and words[1] in _TEXT_COMMANDS:
            words = words[1:]  # an IMAP tag
        elif index == 0 and words and words[0] not in _TEXT_COMMANDS:
            return _NOT_MINE
        if line_end < 0:
            return _NEED_MORE if len(data) < MAX_PROLOGUE else _NOT_MINE
        if len(words) > 1 and words[0] not in _TEXT_COMMANDS and words[1] in _TEXT_COMMANDS:
            words = words[1:]  # a later tagged IMAP command
        if tuple(words[:2]) in _UPGRADES or tuple(words[:1]) in _UPGRADES:
            return Prologue(Status.OK, KIND_STARTTLS, line_end + 1)
        pos = line_end + 1
    return _NOT_MINE
