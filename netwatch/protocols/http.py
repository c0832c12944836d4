"""HTTP/1.x request-head parser: the request line, Host and User-Agent (RFC 9110, RFC 9112).

Works on the first bytes of a client's TCP stream. Bounds: at most MAX_HEAD_LENGTH
(16 KiB) of the head are looked at; a method token is at most 32 bytes; header lines
beyond the bound are not read. Host names and other text are never decoded blindly:
host names go through escape_name_bytes, other text through `_printable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.protocols.common import Status, escape_name_bytes

MAX_HEAD_LENGTH = 16 * 1024
MAX_METHOD_LENGTH = 32
# Extra empty lines a server should ignore before the request line (RFC 9112 section 2.2).
_MAX_LEADING_NEWLINES = 8

HOST_FROM_HEADER = "host_header"
HOST_FROM_ABSOLUTE_URI = "absolute_uri"
HOST_FROM_CONNECT = "connect"

_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Method tokens: letters, plus '-' and '_' after the first (WebDAV's VERSION-CONTROL etc.).
_METHOD_BYTES = _LETTERS + b"-_"
_SCHEME_BYTES = _LETTERS + b"0123456789+-."
_PRINTABLE = bytes(range(0x20, 0x7F))
_SUPPORTED_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1")
# RFC 9110 section 9 methods and the common WebDAV ones: a request line without a version counts as
# HTTP only with one of these.
_KNOWN_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
                            b"PATCH", b"PROPFIND", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK"})
_TOKEN_BYTES = _LETTERS + b"0123456789!#$%&'*+-.^_`|~"


@dataclass(slots=True)
class HttpRequestResult:
    status: Status
    method: str | None = None
    target: str | None = None  # request-target as sent, made printable
    version: str | None = None  # "HTTP/1.0" | "HTTP/1.1"
    host: str | None = None  # port and IPv6 brackets removed, case preserved
    port: int | None = None
    host_source: str | None = None  # HOST_FROM_* or None when no host is known
    user_agent: str | None = None
    complete: bool = False  # the end of the head was seen (False: cut at MAX_HEAD_LENGTH)
    head_length: int = 0  # bytes up to and including the empty line, when complete
    content_length: int | None = None  # Content-Length, when sent
    chunked: bool = False  # a Transfer-Encoding was sent


def _printable(raw: bytes) -> str:
    """ASCII text as is; a backslash and every byte outside 0x20..0x7E as `\\xHH`."""
    if not raw.translate(None, _PRINTABLE) and b"\\" not in raw:
        return raw.decode("ascii")
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def _split_host_port(authority: bytes) -> tuple[str | None, int | None]:
    """Split `host[:port]`, `[v6]:port` or a bare IPv6 literal; userinfo is dropped."""
    authority = authority.rpartition(b"@")[2].strip(b" \t")
    port_text = b""
    if authority.startswith(b"["):
        close = authority.find(b"]")
        if close < 0:
            host = authority[1:]
        else:
            host = authority[1:close]
            rest = authority[close + 1 :]
            if rest.startswith(b":"):
                port_text = rest[1:]
    elif authority.count(b":") == 1:
        host, _, port_text = authority.partition(b":")
    else:
        host = authority  # a name, or an IPv6 literal sent without brackets
    port = None
    if port_text.isdigit() and len(port_text) <= 5 and int(port_text) <= 65535:
        port = int(port_text)
    if not host:
        return None, port
    return escape_name_bytes(host), port


def _authority_of_absolute_uri(target: bytes) -> bytes | None:
    """The authority of `scheme://authority/...`, or None when the target is not absolute-form."""
    scheme_end = target.find(b"://")
    if scheme_end <= 0 or target[0:1] not in _LETTERS or target[:scheme_end].translate(None, _SCHEME_BYTES):
        return None
    rest = target[scheme_end + 3 :]
    end = len(rest)
    for delimiter in (b"/", b"?", b"#"):
        found = rest.find(delimiter)
        if 0 <= found < end:
            end = found
    return rest[:end]


def _is_authority(target: bytes) -> bool:
    """CONNECT's authority-form target (RFC 9110 section 9.3.6): host and port, no path."""
    return bool(target) and not target.startswith((b"/", b"*")) and b"/" not in target


def _header_line_follows(data: bytes, line_end: int) -> bool:
    """Whether the line after the request line is a `name: value` header."""
    next_end = data.find(b"\n", line_end + 1)
    line = data[line_end + 1 : next_end if next_end >= 0 else len(data)]
    name, colon, _ = line.partition(b":")
    return bool(colon) and bool(name) and not name.translate(None, _TOKEN_BYTES)


def _method_prefix_status(data: bytes) -> tuple[Status, int]:
    """Check that `data` starts with a method token and a space; return (status, method end)."""
    limit = min(len(data), MAX_METHOD_LENGTH + 1)
    if not limit:
        return Status.NEED_MORE, 0
    if data[0:1] not in _LETTERS:
        return Status.NOT_MINE, 0
    space = data.find(b" ", 0, limit)
    token = data[:space] if space > 0 else data[:limit]
    if token.translate(None, _METHOD_BYTES):
        return Status.NOT_MINE, 0
    if space > 0:
        return Status.OK, space
    return (Status.NEED_MORE if len(data) <= MAX_METHOD_LENGTH else Status.NOT_MINE), 0


def parse_request_head(data: bytes) -> HttpRequestResult:
    """Parse the head of an HTTP/1.0 or 1.1 request from the start of a client stream.

    NOT_MINE: the bytes do not start with `METHOD SP` or the version is not HTTP
    (RTSP, SIP, the HTTP/2 preface). NEED_MORE: a valid prefix without the end of the
    head, below the 16 KiB bound. INVALID: a broken request line or an HTTP version
    other than 1.0/1.1, or 16 KiB without the end of the head and no host known.
    OK: fields filled; `complete` is False when the head was cut at the bound.
    Bare LF line ends are accepted. Never raises.
    """
    try:
        return _parse(data)
    except Exception:  # last line of defence for a parser of hostile bytes
        return HttpRequestResult(Status.INVALID)


def _parse(data: bytes) -> HttpRequestResult:
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1
        if start > _MAX_LEADING_NEWLINES:
            return HttpRequestResult(Status.NOT_MINE)
    data = data[start : start + MAX_HEAD_LENGTH]
    status, method_end = _method_prefix_status(data)
    if status is not Status.OK:
        return HttpRequestResult(status)

    line_end = data.find(b"\n")
    if line_end < 0:
        if len(data) >= MAX_HEAD_LENGTH:
            return HttpRequestResult(Status.INVALID)
        return HttpRequestResult(Status.NEED_MORE)
    request_line = data[:line_end].rstrip(b"\r")
    method = request_line[:method_end]
    target, _, version = request_line[method_end + 1 :].strip(b" ").rpartition(b" ")
    target = target.strip(b" ")
    if method == b"PRI":
        return HttpRequestResult(Status.NOT_MINE)  # the HTTP/2 preface
    if not version.startswith(b"HTTP/"):
        # No version (an HTTP/0.9-style line that real clients still follow with headers): HTTP only
        # for a known method whose line is followed by a header line.
        if target or method not in _KNOWN_METHODS or not _header_line_follows(data, line_end):
            return HttpRequestResult(Status.NOT_MINE)
        target, version = version, b""
    elif version not in _SUPPORTED_VERSIONS:
        return HttpRequestResult(Status.INVALID)

    result = HttpRequestResult(
        Status.OK,
        method=method.decode("ascii"),
        target=_printable(target) if target else None,
        version=version.decode("ascii") if version else None,
    )
    if method == b"CONNECT":
        if _is_authority(target):
            result.host, result.port = _split_host_port(target)
            result.host_source = HOST_FROM_CONNECT
    else:
        authority = _authority_of_absolute_uri(target)
        if authority is not None:
            result.host, result.port = _split_host_port(authority)
            result.host_source = HOST_FROM_ABSOLUTE_URI
    host_from_line = result.host_source is not None

    host_seen = False
    pos = line_end + 1
    last_header = b""
    while True:
        next_end = data.find(b"\n", pos)
        if next_end < 0:
            break  # the head goes on beyond what we have
        line = data[pos:next_end].rstrip(b"\r")
        pos = next_end + 1
        if not line:
            if not result.host and (not result.target or not result.version):
                return HttpRequestResult(Status.INVALID)  # no version or no target, and no Host either
            result.complete = True
            result.head_length = start + pos
            return result
        if line[0] in b" \t":  # obsolete line folding (RFC 9112 section 5.2): continues the last field
            if last_header == b"user-agent" and result.user_agent is not None:
                result.user_agent += " " + _printable(line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            last_header = b""
            continue
        last_header = name.strip(b" \t").lower()
        value = value.strip(b" \t")
        if last_header == b"host" and not host_seen:
            host_seen = True
            if not host_from_line:  # RFC 9112 section 3.2.2: the absolute-form target wins
                result.host, result.port = _split_host_port(value)
                result.host_source = HOST_FROM_HEADER if result.host else None
        elif last_header == b"user-agent" and result.user_agent is None:
            result.user_agent = _printable(value)
        elif last_header == b"content-length" and value.isdigit() and len(value) <= 12:
            result.content_length = int(value)
        elif last_header == b"transfer-encoding":
            result.chunked = True  # a body whose end only a chunk walk finds: no request after it is read

    if len(data) < MAX_HEAD_LENGTH:
        return HttpRequestResult(Status.NEED_MORE)
    if host_seen or host_from_line:
        return result  # cut at the bound: keep what the first 16 KiB gave
    return HttpRequestResult(Status.INVALID)
