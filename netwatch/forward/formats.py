"""SIEM wire formats for netwatch alerts (ECS event dicts).

Every string inside an event may come off the wire and is attacker-controlled (CR, LF, NUL,
`|`, `=`, `\\`, `]`, `"`, lone surrogates from undecodable bytes). Each format below escapes
with the rules of that format, so a hostile name can never start a second syslog line, a
second CEF/LEEF field or a second JSON key:

* JSON (ECS line, HEC, `_bulk`, webhook, syslog MSG): `json.dumps` escapes quotes and
  control characters; DEL, C1 controls and U+2028/U+2029 are additionally written as
  `\\uXXXX` so that no relay or viewer sees a raw control byte.
* Text formats (RFC 5424 SD-PARAM values, RFC 3164 key="value", CEF, LEEF): control
  characters (C0, DEL, C1, U+2028/U+2029) and lone surrogates are shown as the visible text
  `\\xNN` (or `\\uXXXX`), then the format's own escapes are applied. The exact value is
  always in the JSON event.

The formatters are pure functions of (event, its JSON text); they never raise on odd events
(missing or mistyped fields become "-" or are left out).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from netwatch import __version__

SYSLOG_FORMATS = ("rfc5424", "rfc3164", "cef", "leef", "json")

# RFC 5424 §7.2.2: SD-IDs with an "@" need an IANA Private Enterprise Number. 32473 is the
# PEN reserved for documentation (RFC 5612); replace it once netwatch has its own PEN.
SD_ENTERPRISE = "32473"
APP_NAME = "netwatch"
MSGID = "alert"
UTF8_BOM = "\ufeff"

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21,
    "local6": 22, "local7": 23,
}  # RFC 5424 §6.2.1 table 1

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)\Z")

# Characters no text format may carry raw: C0, DEL, C1, line/paragraph separators, surrogates.
_UNSAFE_CLASS = "\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def visible(char: str) -> str:
    r"""Visible stand-in for one unsafe character: `\xNN` for bytes, `\uXXXX` otherwise.

    Lone surrogates U+DC80..U+DCFF are what `surrogateescape` makes of undecodable bytes, so
    they are shown as the original byte.
    """
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def _escaper(table: Mapping[str, str]) -> Callable[[str], str]:
    """Build a one-pass escaper: characters in `table` map to their escape, unsafe characters
    to `visible()` text whose own backslash is escaped again when the format escapes `\\`."""
    special = "".join(re.escape(c) for c in table if c not in "\n\r")
    pattern = re.compile(f"[{special}{_UNSAFE_CLASS}]")
    backslash = table.get("\\", "\\")

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        escaped = table.get(char)
        if escaped is not None:
            return escaped
        return visible(char).replace("\\", backslash)

    specials = tuple(c for c in table if c not in "\n\r")

    def escape(value: str) -> str:
        # Fast path (the common case): printable ASCII without any of the format's specials.
        if value.isascii() and value.isprintable():
            for char in specials:
                if char in value:
                    break
            else:
                return value
        return pattern.sub(replace, value)

    return escape


# RFC 5424 §6.3.3: inside PARAM-VALUE, '"', '\' and ']' MUST be escaped with a backslash.
escape_sd_value = _escaper({"\\": "\\\\", '"': '\\"', "]": "\\]"})
# RFC 3164 has no structure; our key="value" pairs use the same quoting as logfmt.
escape_quoted = _escaper({"\\": "\\\\", '"': '\\"'})
# CEF (ArcSight "Implementing ArcSight CEF" rev 25): header: escape '\' and '|';
# extension values: escape '\' and '=', newline as \n and carriage return as \r.
escape_cef_header = _escaper({"\\": "\\\\", "|": "\\|"})
escape_cef_value = _escaper({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
# LEEF 2.0 (IBM QRadar LEEF format guide): '|' in header fields is escaped with '\'. Attribute
# values have no escape mechanism; the delimiter (TAB) is a control character and so can never
# appear raw in a value (it becomes the text \x09); '=' is harmless after the first '='.
escape_leef_header = escape_cef_header
escape_leef_value = _escaper({})


def clean_strings(value: Any) -> Any:
    """Copy of a JSON-like value with lone surrogates replaced by visible `\\xNN` text, so that
    the event can be encoded as UTF-8 (the exact-bytes view an analyst needs)."""
    if isinstance(value, str):
        return _SURROGATE.sub(lambda m: visible(m.group()), value)
    if isinstance(value, Mapping):
        return {clean_strings(k): clean_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_strings(v) for v in value]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def event_json(event: Mapping[str, Any]) -> str:
    """The canonical compact JSON text of an event (UTF-8 safe, no raw control characters)."""
    text = _ENCODER.encode(event)
    if text.isascii():
        if "\x7f" in text:
            text = text.replace("\x7f", "\\u007f")
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _ENCODER.encode(clean_strings(event))
    if _JSON_UNSAFE.search(text):
        text = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def field(event: Mapping[str, Any], *path: str) -> Any:
    """Nested lookup that returns None instead of raising on missing or mistyped levels."""
    node: Any = event
    for key in path:
        if not isinstance(node, dict) and not isinstance(node, Mapping):  # dict first: fast path
            return None
        node = node.get(key)
    return node


def text(event: Mapping[str, Any], *path: str) -> str:
    """Nested field as a string ("" when absent); lists are joined with ','."""
    value = field(event, *path)
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def event_epoch(event: Mapping[str, Any]) -> float:
    """`@timestamp` as seconds since the epoch (now, when it is missing or malformed)."""
    stamp = event.get("@timestamp")
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return time.time()
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return time.time()


def severity_0_100(event: Mapping[str, Any]) -> int:
    value = field(event, "event", "severity")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 50
    return max(0, min(100, int(value)))


def syslog_severity(event: Mapping[str, Any]) -> int:
    """ECS 0-100 severity -> syslog severity (RFC 5424 table 2): 90+ critical, 70+ error,
    40+ warning, 20+ notice, else informational."""
    sev = severity_0_100(event)
    for floor, level in ((90, 2), (70, 3), (40, 4), (20, 5)):
        if sev >= floor:
            return level
    return 6


def _printable_ascii(value: str, limit: int) -> str:
    """RFC 5424 header fields are PRINTUSASCII (33..126); anything else becomes '_'."""
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value[:limit])
    return cleaned or "-"


class SyslogFormatter:
    """Builds one syslog message (without transport framing) per event.

    `fmt` is one of SYSLOG_FORMATS; `hostname` overrides the event's observer.hostname.
    """

    def __init__(self, fmt: str = "rfc5424", *, facility: int = 16, hostname: str | None = None,
                 procid: str = "-") -> None:
        if fmt not in SYSLOG_FORMATS:
            raise ValueError(f"unknown syslog format {fmt!r}")
        self.fmt = fmt
        self.facility = facility
        self.hostname = hostname
        self.procid = _printable_ascii(procid, 128)
        self._build = {"rfc5424": self._rfc5424, "rfc3164": self._rfc3164, "cef": self._cef,
                       "leef": self._leef, "json": self._json}[fmt]

    def message(self, event: Mapping[str, Any], event_text: str) -> str:
        """The syslog message as text; `event_text` is `event_json(event)`."""
        return self._build(event, event_text)

    def format(self, event: Mapping[str, Any], event_text: str) -> bytes:
        return self._build(event, event_text).encode("utf-8")

    # -- headers -----------------------------------------------------------------------------
    def _pri(self, event: Mapping[str, Any]) -> str:
        return f"<{self.facility * 8 + syslog_severity(event)}>"

    def _host(self, event: Mapping[str, Any]) -> str:
        return self.hostname or text(event, "observer", "hostname") or "-"

    def _header5424(self, event: Mapping[str, Any]) -> str:
        stamp = event.get("@timestamp")
        if not (isinstance(stamp, str) and _RFC3339.match(stamp)):
            moment = datetime.fromtimestamp(event_epoch(event), tz=UTC)
            stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        host = _printable_ascii(self._host(event), 255)
        return f"{self._pri(event)}1 {stamp} {host} {APP_NAME} {self.procid} {MSGID}"

    def _header3164(self, event: Mapping[str, Any]) -> str:
        moment = time.gmtime(event_epoch(event))
        stamp = f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} {time.strftime('%H:%M:%S', moment)}"
        host = _printable_ascii(self._host(event), 255)
        return f"{self._pri(event)}{stamp} {host}"

    # -- formats -----------------------------------------------------------------------------
    def _rfc5424(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header5424(event)} {structured_data(event)} {UTF8_BOM}{event_text}"

    def _json(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header5424(event)} - {event_text}"

    def _rfc3164(self, event: Mapping[str, Any], event_text: str) -> str:
        pairs = " ".join(f'{key}="{escape_quoted(value)}"' for key, value in summary_pairs(event))
        return f"{self._header3164(event)} {APP_NAME}: alert {pairs}"

    def _cef(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header3164(event)} {cef_line(event)}"

    def _leef(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header3164(event)} {leef_line(event)}"


# (SD-ID, [(PARAM-NAME, event path)]) -- RFC 5424 §6.3: app, device and evidence elements.
_SD_LAYOUT: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("app", (("id", ("netwatch", "app")), ("name", ("netwatch", "app_name")),
             ("vendor", ("netwatch", "vendor")), ("policy", ("netwatch", "policy")))),
    ("device", (("id", ("netwatch", "device", "id")), ("hostname", ("netwatch", "device", "hostname")),
                ("ip", ("source", "ip")), ("mac", ("source", "mac")))),
    ("evidence", (("event_id", ("event", "id")), ("kind", ("netwatch", "evidence")),
                  ("name", ("netwatch", "name")), ("confidence", ("netwatch", "confidence")),
                  ("signature", ("rule", "id")), ("severity", ("event", "severity")),
                  ("dst_ip", ("destination", "ip")), ("dst_port", ("destination", "port")),
                  ("transport", ("network", "transport")), ("protocol", ("network", "protocol")))),
)


def structured_data(event: Mapping[str, Any]) -> str:
    """RFC 5424 STRUCTURED-DATA with the app, device and evidence of one alert."""
    elements = []
    for sd_name, params in _SD_LAYOUT:
        body = "".join(
            f' {name}="{escape_sd_value(value)}"'
            for name, path in params
            if (value := text(event, *path))
        )
        elements.append(f"[{sd_name}@{SD_ENTERPRISE}{body}]")
    return "".join(elements)


_SUMMARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event_id", ("event", "id")), ("app", ("netwatch", "app")), ("app_name", ("netwatch", "app_name")),
    ("evidence", ("netwatch", "evidence")), ("name", ("netwatch", "name")),
    ("confidence", ("netwatch", "confidence")), ("device_id", ("netwatch", "device", "id")),
    ("device_hostname", ("netwatch", "device", "hostname")), ("src_ip", ("source", "ip")),
    ("dst_ip", ("destination", "ip")), ("dst_port", ("destination", "port")),
    ("protocol", ("network", "protocol")), ("severity", ("event", "severity")),
    ("signature", ("rule", "id")),
)


def summary_pairs(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The alert's key facts as (key, value) pairs, present values only."""
    return [(key, value) for key, path in _SUMMARY if (value := text(event, *path))]


def cef_line(event: Mapping[str, Any]) -> str:
    """`CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension` (severity 0-10)."""
    app_name = text(event, "netwatch", "app_name") or text(event, "netwatch", "app") or "unknown app"
    header = [
        "CEF:0", "netwatch", "netwatch", __version__,
        text(event, "rule", "id") or "netwatch-alert",
        f"Device contacted banned app {app_name}",
        str(round(severity_0_100(event) / 10)),
    ]
    extension = [
        ("rt", str(int(event_epoch(event) * 1000))),
        ("externalId", text(event, "event", "id")),
        ("cat", text(event, "rule", "category")),
        ("src", text(event, "source", "ip")), ("spt", text(event, "source", "port")),
        ("smac", text(event, "source", "mac")),
        ("shost", text(event, "netwatch", "device", "hostname")),
        ("dst", text(event, "destination", "ip")), ("dpt", text(event, "destination", "port")),
        ("dhost", text(event, "netwatch", "name")),
        ("proto", text(event, "network", "transport").upper()),
        ("app", text(event, "network", "protocol")),
        ("dvchost", text(event, "observer", "hostname")),
        ("cs1Label", "app"), ("cs1", text(event, "netwatch", "app")),
        ("cs2Label", "evidence"), ("cs2", text(event, "netwatch", "evidence")),
        ("cs3Label", "confidence"), ("cs3", text(event, "netwatch", "confidence")),
        ("cs4Label", "deviceId"), ("cs4", text(event, "netwatch", "device", "id")),
        ("cs5Label", "policy"), ("cs5", text(event, "netwatch", "policy")),
        ("msg", text(event, "message")),
    ]
    head = "|".join([header[0], *(escape_cef_header(h) for h in header[1:])])
    ext = " ".join(f"{key}={escape_cef_value(value)}" for key, value in extension if value)
    return f"{head}|{ext}"


LEEF_DELIMITER = "\t"


def leef_line(event: Mapping[str, Any]) -> str:
    """`LEEF:2.0|Vendor|Product|Version|EventID|x09|key=value<TAB>...` (QRadar)."""
    moment = datetime.fromtimestamp(event_epoch(event), tz=UTC)
    sev = severity_0_100(event)
    attributes = [
        ("devTime", moment.strftime("%b %d %Y %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"),
        ("devTimeFormat", "MMM dd yyyy HH:mm:ss.SSS z"),
        ("cat", text(event, "rule", "category")),
        ("sev", str(max(1, min(10, round(sev / 10))))),
        ("src", text(event, "source", "ip")), ("srcPort", text(event, "source", "port")),
        ("srcMAC", text(event, "source", "mac")),
        ("dst", text(event, "destination", "ip")), ("dstPort", text(event, "destination", "port")),
        ("proto", text(event, "network", "transport").upper()),
        ("identHostName", text(event, "netwatch", "device", "hostname")),
        ("eventId", text(event, "event", "id")),
        ("app", text(event, "netwatch", "app")), ("appName", text(event, "netwatch", "app_name")),
        ("evidence", text(event, "netwatch", "evidence")), ("domain", text(event, "netwatch", "name")),
        ("confidence", text(event, "netwatch", "confidence")),
        ("signature", text(event, "rule", "id")),
        ("deviceId", text(event, "netwatch", "device", "id")),
        ("observer", text(event, "observer", "hostname")),
        ("msg", text(event, "message")),
    ]
    header = ["netwatch", "netwatch", __version__, text(event, "netwatch", "evidence") or "alert"]
    head = "|".join(["LEEF:2.0", *(escape_leef_header(h) for h in header), "x09"])
    body = LEEF_DELIMITER.join(f"{key}={escape_leef_value(value)}" for key, value in attributes if value)
    return f"{head}|{body}"


def hec_event(event: Mapping[str, Any], event_text: str, *, host: str | None, source: str = "netwatch",
              sourcetype: str = "netwatch:alert", index: str | None = None) -> str:
    """One Splunk HEC event object (`/services/collector/event`), as JSON text."""
    meta: dict[str, Any] = {
        "time": round(event_epoch(event), 6),
        "host": host or text(event, "observer", "hostname") or "netwatch",
        "source": source,
        "sourcetype": sourcetype,
    }
    if index:
        meta["index"] = index
    head = event_json(meta)
    return f'{head[:-1]},"event":{event_text}}}'


def bulk_lines(event: Mapping[str, Any], event_text: str, *, index: str | None) -> str:
    """Elasticsearch/OpenSearch `_bulk` action + source lines. `create` with `_id` = event.id
    makes a redelivered alert a 409 conflict instead of a duplicate document."""
    action: dict[str, Any] = {}
    if index:
        action["_index"] = index
    event_id = text(event, "event", "id")
    if event_id:
        action["_id"] = event_id
    return f'{event_json({"create": action})}\n{event_text}\n'
