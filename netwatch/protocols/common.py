"""Vocabulary shared by the protocol parsers."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """How far a parser got with the bytes it was given."""

    OK = "ok"  # parsed; the result's fields are valid
    NEED_MORE = "need_more"  # a valid prefix of this protocol: call again with more bytes
    NOT_MINE = "not_mine"  # these bytes are not this protocol
    INVALID = "invalid"  # starts like this protocol but is malformed (counted as malformed)


# DNS presentation format (RFC 1035 section 5.1) escapes these with a backslash; dnspython does the same.
_SPECIAL = frozenset(b'"();\\@$')
# Bytes that stay as they are; a name made only of these needs no escaping at all (the usual case).
_VERBATIM = bytes(b for b in range(0x21, 0x7F) if b not in _SPECIAL)
_VERBATIM_NO_DOT = _VERBATIM.replace(b".", b"")


def escape_name_bytes(raw: bytes, *, escape_dot: bool = False, keep_space: bool = False) -> str:
    """Render wire bytes of a host name as printable text that can never break an output format.

    Printable ASCII stays as it is; the RFC 1035 specials get a backslash; every other byte
    (controls, spaces, non-ASCII) becomes `\\DDD` (decimal), as in DNS presentation format.
    `escape_dot` is for DNS labels, where a literal dot inside a label must not read as a separator;
    `keep_space` is for free text such as a DHCP vendor class ("MSFT 5.0").
    """
    if not raw.translate(None, _VERBATIM_NO_DOT if escape_dot else _VERBATIM):
        return raw.decode("ascii")
    out: list[str] = []
    for byte in raw:
        if byte in _SPECIAL or (escape_dot and byte == 0x2E):
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E or (keep_space and byte == 0x20):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return "".join(out)
