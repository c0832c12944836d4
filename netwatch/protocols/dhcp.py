"""DHCPv4 message parser (RFC 2131 / RFC 2132): who a device says it is.

Reads the BOOTP header and the options a device inventory needs. Options split into
several instances are joined (RFC 3396), and the `file`/`sname` fields are read as
options when option 52 (overload) says so. Bounds: input beyond MAX_MESSAGE_LENGTH is
ignored; an option whose length runs past its area ends that area (what parsed before
is kept, `truncated` is set). Text fields go through escape_name_bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.protocols.common import escape_name_bytes
from netwatch.protocols.dns import labels_to_text

MAX_MESSAGE_LENGTH = 65535
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 section 3
_FIXED_HEADER_LENGTH = 236
_OPTIONS_START = _FIXED_HEADER_LENGTH + len(MAGIC_COOKIE)
_SNAME = slice(44, 108)
_FILE = slice(108, 236)

OPT_PAD = 0
OPT_HOSTNAME = 12
OPT_REQUESTED_IP = 50
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_PARAMETER_REQUEST_LIST = 55
OPT_VENDOR_CLASS = 60
OPT_CLIENT_ID = 61
OPT_CLIENT_FQDN = 81  # RFC 4702
OPT_END = 255

HTYPE_ETHERNET = 1
_FQDN_FLAG_E = 0x04  # RFC 4702 section 2.1: the name is in DNS wire format


@dataclass(slots=True)
class DhcpInfo:
    op: int  # 1 BOOTREQUEST, 2 BOOTREPLY
    xid: int
    client_mac: str | None  # "aa:bb:cc:dd:ee:ff" when htype=1 and hlen=6
    ciaddr: str
    yiaddr: str
    msg_type: int | None = None  # option 53 (1 DISCOVER ... 8 INFORM)
    hostname: str | None = None  # option 12
    vendor_class: str | None = None  # option 60
    requested_ip: str | None = None  # option 50
    client_id: str | None = None  # option 61, lowercase hex
    fqdn: str | None = None  # option 81, presentation format
    param_request_list: tuple[int, ...] | None = None  # option 55
    truncated: bool = False  # an option ran past the end of its area


def _dotted(raw: bytes) -> str:
    return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"


def _text(raw: bytes, *, keep_space: bool = False) -> str | None:
    """Escaped text of a name option; trailing NULs (C strings from some clients) are dropped."""
    raw = raw.rstrip(b"\x00")
    return escape_name_bytes(raw, keep_space=keep_space) if raw else None


def _read_options(area: bytes, options: dict[int, list[bytes]]) -> bool:
    """Collect the options of one area into `options` (RFC 3396 concatenation); True if cut short."""
    pos = 0
    end = len(area)
    while pos < end:
        code = area[pos]
        if code == OPT_PAD:
            pos += 1
            continue
        if code == OPT_END:
            return False
        if pos + 1 >= end:
            return True
        value_end = pos + 2 + area[pos + 1]
        if value_end > end:
            return True
        options.setdefault(code, []).append(area[pos + 2 : value_end])
        pos = value_end
    return False


def _fqdn(value: bytes) -> str | None:
    """Name of option 81: DNS wire labels when the E flag is set (also partial names), else ASCII."""
    if len(value) < 3:
        return None
    name = value[3:]
    if value[0] & _FQDN_FLAG_E:
        labels: list[bytes] = []
        pos = 0
        while pos < len(name) and name[pos] != 0:
            length = name[pos]
            if length > 63 or pos + 1 + length > len(name):
                labels = []  # not wire format after all: fall back to ASCII below
                break
            labels.append(name[pos + 1 : pos + 1 + length])
            pos += 1 + length
        else:
            return labels_to_text(labels) if labels else None
    name = name.rstrip(b"\x00").rstrip(b".")
    return escape_name_bytes(name) if name else None


def parse_dhcp(data: bytes) -> DhcpInfo | None:
    """Parse a DHCP message (UDP payload on port 67/68); None when it is not one.

    Needs op 1 or 2, the full 236-byte BOOTP header and the magic cookie. Never raises.
    """
    try:
        return _parse(data[:MAX_MESSAGE_LENGTH])
    except Exception:  # last line of defence for a parser of hostile bytes
        return None


def _parse(data: bytes) -> DhcpInfo | None:
    if len(data) < _OPTIONS_START or data[_FIXED_HEADER_LENGTH:_OPTIONS_START] != MAGIC_COOKIE:
        return None
    op, htype, hlen = data[0], data[1], data[2]
    if op not in (1, 2):
        return None
    client_mac = None
    if htype == HTYPE_ETHERNET and hlen == 6:
        client_mac = data[28:34].hex(":")
    info = DhcpInfo(
        op=op,
        xid=int.from_bytes(data[4:8], "big"),
        client_mac=client_mac,
        ciaddr=_dotted(data[12:16]),
        yiaddr=_dotted(data[16:20]),
    )
    parts: dict[int, list[bytes]] = {}
    info.truncated = _read_options(data[_OPTIONS_START:], parts)
    overload_value = b"".join(parts.get(OPT_OVERLOAD, ()))
    overload = overload_value[0] if overload_value else 0
    # RFC 2131 section 4.1: read the options field, then `file`, then `sname`.
    if overload & 1:
        info.truncated |= _read_options(data[_FILE], parts)
    if overload & 2:
        info.truncated |= _read_options(data[_SNAME], parts)
    options = {code: b"".join(chunks) for code, chunks in parts.items()}

    if value := options.get(OPT_MESSAGE_TYPE):
        info.msg_type = value[0]
    if value := options.get(OPT_HOSTNAME):
        info.hostname = _text(value, keep_space=True)
    if value := options.get(OPT_VENDOR_CLASS):
        info.vendor_class = _text(value, keep_space=True)
    value = options.get(OPT_REQUESTED_IP)
    if value is not None and len(value) == 4:
        info.requested_ip = _dotted(value)
    if value := options.get(OPT_CLIENT_ID):
        info.client_id = value.hex()
    if value := options.get(OPT_CLIENT_FQDN):
        info.fqdn = _fqdn(value)
    if OPT_PARAMETER_REQUEST_LIST in options:
        info.param_request_list = tuple(options[OPT_PARAMETER_REQUEST_LIST])
    return info
