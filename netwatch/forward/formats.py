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

They run once per alert and per forwarder on the capture thread, so they are written for
speed (issue 5: >= 20,000 alerts/s): JSON through orjson, every field of a format read in one
pass over a precomputed path table (`_Fields`), and one clean-text check over all values of an
alert before any per-value escaping (almost every alert needs none).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from netwatch import __version__
from netwatch.outputs.ecs import clamp_event_time

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


class _Escaper:
    """One format's escaping: characters in `table` map to their escape, unsafe characters to
    `visible()` text whose own backslash is escaped again when the format escapes `\\`."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = dict(table)
        special = "".join(re.escape(c) for c in table if c not in "\n\r")
        self.pattern = re.compile(f"[{special}{_UNSAFE_CLASS}]")
        self.backslash = table.get("\\", "\\")
        # Controls (\n, \r) are caught by the isprintable() test; these are the printable ones.
        self.specials = tuple(c for c in table if c not in "\n\r")

    def _replace(self, match: re.Match[str]) -> str:
        char = match.group()
        escaped = self.table.get(char)
        if escaped is not None:
            return escaped
        return visible(char).replace("\\", self.backslash)

    def clean(self, value: str) -> bool:
        """True when `value` needs no escaping: printable ASCII without the format's specials."""
        if not (value.isascii() and value.isprintable()):
            return False
        for char in self.specials:  # noqa: SIM110 - a plain loop beats all() on this hot path
            if char in value:
                return False
        return True

    def __call__(self, value: str) -> str:
        if self.clean(value):  # the common case
            return value
        return self.pattern.sub(self._replace, value)

    def all(self, values: list[str]) -> list[str]:
        """Escape every value; one check over all of them first, since alerts rarely need any."""
        if self.clean("".join(values)):
            return values
        return [self(value) for value in values]


# RFC 5424 §6.3.3: inside PARAM-VALUE, '"', '\' and ']' MUST be escaped with a backslash.
escape_sd_value = _Escaper({"\\": "\\\\", '"': '\\"', "]": "\\]"})
# RFC 3164 has no structure; our key="value" pairs use the same quoting as logfmt.
escape_quoted = _Escaper({"\\": "\\\\", '"': '\\"'})
# CEF (ArcSight "Implementing ArcSight CEF" rev 25): header: escape '\' and '|';
# extension values: escape '\' and '=', newline as \n and carriage return as \r.
escape_cef_header = _Escaper({"\\": "\\\\", "|": "\\|"})
escape_cef_value = _Escaper({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
# LEEF 2.0 (IBM QRadar LEEF format guide): '|' in header fields is escaped with '\'. Attribute
# values have no escape mechanism; the delimiter (TAB) is a control character and so can never
# appear raw in a value (it becomes the text \x09); '=' is harmless after the first '='.
escape_leef_header = escape_cef_header
escape_leef_value = _Escaper({})


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
    """The canonical compact JSON text of an event (UTF-8 safe, no raw control characters).

    orjson does the work (~10x faster than json); whatever it refuses (lone surrogates from
    undecodable bytes, non-string keys, integers beyond 64 bits) goes through the standard
    library with surrogates made visible. Datetimes and dataclasses are passed through to
    `str`, as the standard library encoder did.
    """
    try:
        text = orjson.dumps(event, default=str, option=_ORJSON_OPTIONS).decode("utf-8")
    except (orjson.JSONEncodeError, RecursionError):
        return _event_json_slow(event)
    if text.isascii():
        return text.replace("\x7f", "\\u007f") if "\x7f" in text else text
    if _JSON_UNSAFE.search(text):
        text = _JSON_UNSAFE.sub(_json_escape, text)
    return text


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _event_json_slow(event: Mapping[str, Any]) -> str:
    text = _ENCODER.encode(event)
    if text.isascii():
        return text.replace("\x7f", "\\u007f") if "\x7f" in text else text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _ENCODER.encode(clean_strings(event))
    if _JSON_UNSAFE.search(text):
        text = _JSON_UNSAFE.sub(_json_escape, text)
    return text


def field(event: Mapping[str, Any], *path: str) -> Any:
    """Nested lookup that returns None instead of raising on missing or mistyped levels."""
    node: Any = event
    for key in path:
        if not isinstance(node, dict) and not isinstance(node, Mapping):  # dict first: fast path
            return None
        node = node.get(key)
    return node


def as_text(value: Any) -> str:
    """A field value as a string ("" for None); lists are joined with ','."""
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def text(event: Mapping[str, Any], *path: str) -> str:
    """Nested field as a string ("" when absent); lists are joined with ','."""
    return as_text(field(event, *path))


class _Fields:
    """The fields one format reads from an alert, looked up in a single pass.

    `layout` is a sequence of (output key, source): a source is an event path (tuple of keys)
    or a constant string (e.g. CEF's `cs1Label=app`). `values(event)` returns the texts in
    layout order, "" for absent fields, exactly like `text(event, *path)` would.
    """

    def __init__(self, layout: Sequence[tuple[str, tuple[str, ...] | str]]) -> None:
        self.keys = tuple(key for key, _ in layout)
        self.index = {key: number for number, key in enumerate(self.keys)}
        # Constants pre-filled; paths grouped by their top-level key, so that e.g. the
        # "netwatch" object is looked up once for all its fields.
        self._template = [source if isinstance(source, str) else "" for _, source in layout]
        groups: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for number, (_, source) in enumerate(layout):
            if not isinstance(source, str):
                groups.setdefault(source[0], []).append((tuple(source[1:]), number))
        self._groups = tuple((top, tuple(members)) for top, members in groups.items())
        # The same paths for the usual shape: a dict at the top key whose leaf is one key
        # below it (`single`); None where the path goes deeper.
        self._flat = tuple((top, tuple((rest[0] if len(rest) == 1 else None, rest, number)
                                       for rest, number in members))
                           for top, members in self._groups)

    def values(self, event: Mapping[str, Any]) -> list[str]:
        values = self._template.copy()
        if event.__class__ is not dict and not isinstance(event, Mapping):
            return values
        for top, members in self._flat:
            node = event.get(top)
            if node is None:
                continue
            if node.__class__ is dict:  # the usual case: no per-level type checks
                for single, rest, number in members:
                    value = node.get(single) if single is not None else _walk(node, rest)
                    if value.__class__ is str:
                        values[number] = value
                    elif value is not None:
                        values[number] = as_text(value)
                continue
            for _, rest, number in members:
                value: Any = node
                for key in rest:
                    if value.__class__ is dict or isinstance(value, Mapping):
                        value = value.get(key)
                    else:
                        value = None
                        break
                if value.__class__ is str:
                    values[number] = value
                elif value is not None:
                    values[number] = as_text(value)
        return values


def _walk(node: Any, path: tuple[str, ...]) -> Any:
    """`field()` below an already found node."""
    for key in path:
        if node.__class__ is dict or isinstance(node, Mapping):
            node = node.get(key)
        else:
            return None
    return node


def _join_present(prefixes: Sequence[str], values: Sequence[str], separator: str, suffix: str = "") -> str:
    """`separator`-joined `prefix + value + suffix` of the non-empty values."""
    return separator.join([prefix + value + suffix for prefix, value in zip(prefixes, values, strict=True)
                           if value])


def event_epoch(event: Mapping[str, Any]) -> float:
    """`@timestamp` as seconds since the epoch, clamped into 1970..9999 like every event time
    netwatch writes (netwatch.outputs.ecs.clamp_event_time); now only when it is missing or not a
    time at all (an event netwatch did not make)."""
    stamp = event.get("@timestamp")
    if isinstance(stamp, str):
        try:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return time.time()
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        epoch = parsed.timestamp()
    elif isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        try:
            epoch = float(stamp)
        except OverflowError:  # an int beyond float range
            return time.time()
    else:
        return time.time()
    return clamp_event_time(epoch)


def severity_0_100(event: Mapping[str, Any]) -> int:
    value = field(event, "event", "severity")
    if value.__class__ is int and 0 <= value <= 100:  # the usual case
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 50
    if value != value:  # NaN
        return 50
    return max(0, min(100, int(max(-1.0, min(101.0, value)))))


# ECS 0-100 severity -> syslog severity (RFC 5424 table 2): 90+ critical, 70+ error,
# 40+ warning, 20+ notice, else informational.
_SYSLOG_LEVELS = tuple(2 if sev >= 90 else 3 if sev >= 70 else 4 if sev >= 40 else 5 if sev >= 20 else 6
                       for sev in range(101))


def syslog_severity(event: Mapping[str, Any]) -> int:
    """ECS 0-100 severity -> syslog severity (RFC 5424 table 2): 90+ critical, 70+ error,
    40+ warning, 20+ notice, else informational."""
    return _SYSLOG_LEVELS[severity_0_100(event)]


def _printable_ascii(value: str, limit: int) -> str:
    """RFC 5424 header fields are PRINTUSASCII (33..126); anything else becomes '_'."""
    value = value[:limit]
    if value.isascii() and value.isprintable() and " " not in value:
        return value or "-"
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
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
        self._pri = tuple(f"<{facility * 8 + level}>" for level in range(8))
        # One-entry cache of the header host: alerts of one sensor carry the same observer name.
        self._host_seen: str | None = None
        self._host_clean = "-"
        self._build = {"rfc5424": self._rfc5424, "rfc3164": self._rfc3164, "cef": self._cef,
                       "leef": self._leef, "json": self._json}[fmt]

    def message(self, event: Mapping[str, Any], event_text: str) -> str:
        """The syslog message as text; `event_text` is `event_json(event)`."""
        return self._build(event, event_text)

    def format(self, event: Mapping[str, Any], event_text: str) -> bytes:
        return self._build(event, event_text).encode("utf-8")

    # -- headers -----------------------------------------------------------------------------
    def _host(self, event: Mapping[str, Any]) -> str:
        """The header HOSTNAME: printable ASCII, at most 255 characters (RFC 5424 §6.2.4)."""
        host = self.hostname or text(event, "observer", "hostname") or "-"
        if host != self._host_seen:
            self._host_clean = _printable_ascii(host, 255)
            self._host_seen = host
        return self._host_clean

    def _header5424(self, event: Mapping[str, Any]) -> str:
        stamp = event.get("@timestamp")
        if not (isinstance(stamp, str) and _RFC3339.match(stamp) and stamp[:4] >= "1970"):
            moment = datetime.fromtimestamp(event_epoch(event), tz=UTC)
            stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{self._pri[syslog_severity(event)]}1 {stamp} {self._host(event)} {APP_NAME} {self.procid} {MSGID}"

    def _header3164(self, event: Mapping[str, Any], epoch: float) -> str:
        moment = time.gmtime(epoch)
        stamp = (f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday:2d} "
                 f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}")
        return f"{self._pri[syslog_severity(event)]}{stamp} {self._host(event)}"

    # -- formats -----------------------------------------------------------------------------
    def _rfc5424(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header5424(event)} {structured_data(event)} {UTF8_BOM}{event_text}"

    def _json(self, event: Mapping[str, Any], event_text: str) -> str:
        return f"{self._header5424(event)} - {event_text}"

    def _rfc3164(self, event: Mapping[str, Any], event_text: str) -> str:
        values = escape_quoted.all(_SUMMARY.values(event))
        pairs = _join_present(_SUMMARY_PREFIXES, values, " ", '"')
        return f"{self._header3164(event, event_epoch(event))} {APP_NAME}: alert {pairs}"

    def _cef(self, event: Mapping[str, Any], event_text: str) -> str:
        epoch = event_epoch(event)
        return f"{self._header3164(event, epoch)} {cef_line(event, epoch=epoch)}"

    def _leef(self, event: Mapping[str, Any], event_text: str) -> str:
        epoch = event_epoch(event)
        return f"{self._header3164(event, epoch)} {leef_line(event, epoch=epoch)}"


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
_SD_FIELDS = _Fields([(name, path) for _, params in _SD_LAYOUT for name, path in params])
_SD_PREFIXES = tuple(f' {name}="' for name in _SD_FIELDS.keys)
_SD_ELEMENTS: tuple[tuple[str, int, int], ...] = tuple(
    (f"[{sd_name}@{SD_ENTERPRISE}", start, start + len(params))
    for (sd_name, params), start in zip(
        _SD_LAYOUT, (sum(len(p) for _, p in _SD_LAYOUT[:n]) for n in range(len(_SD_LAYOUT))), strict=True)
)


# STRUCTURED-DATA of an alert with every parameter present, "{}" per value (braces in the
# constant parts doubled for str.format).
_SD_FULL = "".join(
    opening.replace("{", "{{").replace("}", "}}")
    + "".join(_SD_PREFIXES[number].replace("{", "{{").replace("}", "}}") + '{}"' for number in range(start, stop))
    + "]"
    for opening, start, stop in _SD_ELEMENTS
)


def structured_data(event: Mapping[str, Any]) -> str:
    """RFC 5424 STRUCTURED-DATA with the app, device and evidence of one alert."""
    values = escape_sd_value.all(_SD_FIELDS.values(event))
    if all(values):  # the usual alert has every parameter: one format call
        return _SD_FULL.format(*values)
    parts = []
    for opening, start, stop in _SD_ELEMENTS:
        parts.append(opening)
        for number in range(start, stop):
            value = values[number]
            if value:
                parts += (_SD_PREFIXES[number], value, '"')
        parts.append("]")
    return "".join(parts)


_SUMMARY = _Fields((
    ("event_id", ("event", "id")), ("app", ("netwatch", "app")), ("app_name", ("netwatch", "app_name")),
    ("evidence", ("netwatch", "evidence")), ("name", ("netwatch", "name")),
    ("confidence", ("netwatch", "confidence")), ("device_id", ("netwatch", "device", "id")),
    ("device_hostname", ("netwatch", "device", "hostname")), ("src_ip", ("source", "ip")),
    ("dst_ip", ("destination", "ip")), ("dst_port", ("destination", "port")),
    ("protocol", ("network", "protocol")), ("severity", ("event", "severity")),
    ("signature", ("rule", "id")),
))
_SUMMARY_PREFIXES = tuple(f'{key}="' for key in _SUMMARY.keys)


def summary_pairs(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The alert's key facts as (key, value) pairs, present values only."""
    return [(key, value) for key, value in zip(_SUMMARY.keys, _SUMMARY.values(event), strict=True) if value]


# CEF header fields read from the event: signature id, app name (for Name), app id (fallback).
_CEF_HEADER = _Fields((("signature", ("rule", "id")), ("app_name", ("netwatch", "app_name")),
                       ("app", ("netwatch", "app"))))
# CEF extension after `rt` (computed); plain strings are constant labels.
_CEF_EXTENSION = _Fields((
    ("externalId", ("event", "id")), ("cat", ("rule", "category")),
    ("src", ("source", "ip")), ("spt", ("source", "port")), ("smac", ("source", "mac")),
    ("shost", ("netwatch", "device", "hostname")),
    ("dst", ("destination", "ip")), ("dpt", ("destination", "port")),
    ("dhost", ("netwatch", "name")), ("proto", ("network", "transport")),
    ("app", ("network", "protocol")), ("dvchost", ("observer", "hostname")),
    ("cs1Label", "app"), ("cs1", ("netwatch", "app")),
    ("cs2Label", "evidence"), ("cs2", ("netwatch", "evidence")),
    ("cs3Label", "confidence"), ("cs3", ("netwatch", "confidence")),
    ("cs4Label", "deviceId"), ("cs4", ("netwatch", "device", "id")),
    ("cs5Label", "policy"), ("cs5", ("netwatch", "policy")),
    ("msg", ("message",)),
))
_CEF_PREFIXES = tuple(f"{key}=" for key in _CEF_EXTENSION.keys)
_CEF_PROTO = _CEF_EXTENSION.index["proto"]


def cef_line(event: Mapping[str, Any], *, epoch: float | None = None) -> str:
    """`CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension` (severity 0-10).
    `epoch` is `event_epoch(event)` when the caller has it already."""
    signature, app_name, app = _CEF_HEADER.values(event)
    header = escape_cef_header.all([
        "netwatch", "netwatch", __version__, signature or "netwatch-alert",
        f"Device contacted banned app {app_name or app or 'unknown app'}",
        str(round(severity_0_100(event) / 10)),
    ])
    values = _CEF_EXTENSION.values(event)
    values[_CEF_PROTO] = values[_CEF_PROTO].upper()
    values = escape_cef_value.all(values)
    rt = int((event_epoch(event) if epoch is None else epoch) * 1000)
    ext = _join_present(_CEF_PREFIXES, values, " ")
    return f"CEF:0|{'|'.join(header)}|rt={rt}" + (f" {ext}" if ext else "")


LEEF_DELIMITER = "\t"
# LEEF attributes after devTime/devTimeFormat/cat/sev (computed or constant).
_LEEF_ATTRIBUTES = _Fields((
    ("cat", ("rule", "category")), ("sev", ""),
    ("src", ("source", "ip")), ("srcPort", ("source", "port")), ("srcMAC", ("source", "mac")),
    ("dst", ("destination", "ip")), ("dstPort", ("destination", "port")),
    ("proto", ("network", "transport")),
    ("identHostName", ("netwatch", "device", "hostname")), ("eventId", ("event", "id")),
    ("app", ("netwatch", "app")), ("appName", ("netwatch", "app_name")),
    ("evidence", ("netwatch", "evidence")), ("domain", ("netwatch", "name")),
    ("confidence", ("netwatch", "confidence")), ("signature", ("rule", "id")),
    ("deviceId", ("netwatch", "device", "id")), ("observer", ("observer", "hostname")),
    ("msg", ("message",)),
))
_LEEF_PREFIXES = tuple(f"{key}=" for key in _LEEF_ATTRIBUTES.keys)
_LEEF_SEV = _LEEF_ATTRIBUTES.index["sev"]
_LEEF_PROTO = _LEEF_ATTRIBUTES.index["proto"]
_LEEF_EVIDENCE = _LEEF_ATTRIBUTES.index["evidence"]


def leef_line(event: Mapping[str, Any], *, epoch: float | None = None) -> str:
    """`LEEF:2.0|Vendor|Product|Version|EventID|x09|key=value<TAB>...` (QRadar).
    `epoch` is `event_epoch(event)` when the caller has it already."""
    moment = datetime.fromtimestamp(event_epoch(event) if epoch is None else epoch, tz=UTC)
    values = _LEEF_ATTRIBUTES.values(event)
    event_id = escape_leef_header(values[_LEEF_EVIDENCE] or "alert")
    values[_LEEF_SEV] = str(max(1, min(10, round(severity_0_100(event) / 10))))
    values[_LEEF_PROTO] = values[_LEEF_PROTO].upper()
    values = escape_leef_value.all(values)
    dev_time = (f"devTime={_MONTHS[moment.month - 1]} {moment.day:02d} {moment.year:04d} "
                f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d} UTC"
                f"{LEEF_DELIMITER}devTimeFormat=MMM dd yyyy HH:mm:ss.SSS z")
    body = _join_present(_LEEF_PREFIXES, values, LEEF_DELIMITER)
    head = f"LEEF:2.0|netwatch|netwatch|{escape_leef_header(__version__)}|{event_id}|x09"
    return f"{head}|{dev_time}" + (f"{LEEF_DELIMITER}{body}" if body else "")


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
