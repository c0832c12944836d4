"""What every log reader shares: the reader contract, bad-line bookkeeping and time parsing.

A reader gets decoded text lines and appends Observations to a list. It never raises: a line it
cannot read is counted and a few are kept as samples for the warning the user sees. Per-line
work is kept small (plain `str` operations, one `Observation` per finding), because logs come in
hundreds of thousands of lines per second.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from collections.abc import Callable
from datetime import datetime

from netwatch.extract import OBS_DNS_ANSWER
from netwatch.model import Observation
from netwatch.protocols.common import escape_name_bytes

MAX_BAD_SAMPLES = 5
MAX_SAMPLE_CHARS = 160

# (name) -> whether the addresses a DNS answer gives for it matter; the detector's own test.
WantsAnswers = Callable[[str], bool]


class RecentSet:
    """The most recent `limit` keys (insertion order); bounded memory for cross-log joins."""

    def __init__(self, limit: int = 200_000) -> None:
        self._keys: dict[str, None] = {}
        self._limit = limit

    def add(self, key: str) -> None:
        keys = self._keys
        keys[key] = None
        if len(keys) > self._limit:
            for old in list(keys)[: self._limit // 4]:
                del keys[old]

    def __contains__(self, key: object) -> bool:
        return key in self._keys


class ReadContext:
    """State shared by all readers of one run: the detector's tests and cross-log joins."""

    def __init__(self, wants_answers: WantsAnswers | None = None,
                 interesting_address: Callable[[str], bool] | None = None) -> None:
        self.wants_answers: WantsAnswers = wants_answers or (lambda _name: False)
        self.interesting_address: Callable[[str], bool] = interesting_address or (lambda _ip: False)
        # Zeek: connections whose name another log (ssl/http/quic) already gave, and QUIC connections,
        # whose ClientHello Zeek also writes to ssl.log.
        self.named_uids = RecentSet()
        self.quic_uids = RecentSet()
        # dnsmasq without log-queries=extra: which client last asked for a name (replies name no client).
        self.last_asker: dict[str, str] = {}


class LogReader:
    """Base of the readers: counts records, bad lines and lines without a readable time.

    Readers of server logs skip lines that are the server's own messages (start-up, errors):
    those are neither records nor damage and are only counted as `other`.
    """

    format = ""

    def __init__(self, ctx: ReadContext | None = None, default_ts: float = 0.0) -> None:
        self.ctx = ctx or ReadContext()
        self.default_ts = default_ts  # used when a record carries no time of its own
        self.records = 0
        self.other = 0
        self.bad = 0
        self.untimed = 0
        self.bad_samples: list[tuple[int, str]] = []

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        """Parse `lines` (numbered from `first_lineno`) into `out`."""
        raise NotImplementedError

    def bad_line(self, lineno: int, line: str) -> None:
        self.bad += 1
        if len(self.bad_samples) < MAX_BAD_SAMPLES:
            text = line if len(line) <= MAX_SAMPLE_CHARS else line[:MAX_SAMPLE_CHARS] + "..."
            self.bad_samples.append((lineno, text))


def read_printable(reader: LogReader, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
    """`reader.read`, then names in the packet path's printable form.

    JSON logs (Suricata EVE, Zeek JSON) carry raw control characters in names (`"\\u001b[31m"`); left
    as they are they would reach a terminal table as escape sequences. Unprintable names get the
    `\\DDD` escapes the capture path gives the same bytes, so both paths report one name.
    """
    start = len(out)
    reader.read(lines, first_lineno, out)
    for index in range(start, len(out)):
        name = out[index].name
        if name and not name.isprintable():
            out[index].name = escape_name_bytes(name.encode("utf-8", "replace"))


def observation(evidence: str, name: str | None, lineno: int, ts: float, src_ip: str, dst_ip: str,
                src_port: int, dst_port: int, transport: str, protocol: str, src_mac: str | None = None,
                detail: dict | None = None) -> Observation:
    """An Observation built positionally (the fastest way to build the slots dataclass)."""
    return Observation(evidence, name, lineno, ts, src_ip, dst_ip, src_port, dst_port, transport, protocol,
                       src_mac, False, detail if detail is not None else {})


def to_port(text: str) -> int:
    """A port number from log text; 0 when absent or not a number."""
    return int(text) if text.isdigit() and len(text) <= 5 else 0


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def strip_host_port(host: str) -> str:
    """`example.com:8080` -> `example.com`; `[2001:db8::1]:80` -> `2001:db8::1`; bare IPv6 stays."""
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


# -- time ------------------------------------------------------------------------------------

_SECOND_CACHE: dict[str, float] = {}
_UTC_SECONDS: dict[str, float] = {}  # "2026-01-05T09:00:01" -> its second, for the fast path of iso_ts
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}


def _cached(key: str, compute: Callable[[], float]) -> float:
    value = _SECOND_CACHE.get(key)
    if value is None:
        if len(_SECOND_CACHE) > 65536:
            _SECOND_CACHE.clear()
        value = _SECOND_CACHE[key] = compute()
    return value


def iso_ts(text: str) -> float | None:
    """RFC 3339 / ISO 8601 with a zone (`2026-01-05T09:00:01.123456+0000`, `...Z`, `+00:00`); no zone = local."""
    if len(text) == 31 and text.endswith("+0000"):  # Suricata's form, in UTC: the fast path
        second = _UTC_SECONDS.get(text[:19])
        if second is not None:
            try:
                return second + float(text[19:26])  # ".123456"
            except ValueError:
                pass
    try:
        base = text[:19]
        rest = text[19:]
        frac = 0.0
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            frac = float("0" + rest[:end])
            rest = rest[end:]
        if rest in ("Z", "z", "+0000", "+00:00", "-0000", "-00:00"):
            offset = 0
            zone = True
        elif rest[:1] in ("+", "-") and len(rest) in (5, 6):
            digits = rest[1:].replace(":", "")
            offset = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (1 if rest[0] == "+" else -1)
            zone = True
        elif not rest:
            offset, zone = 0, False
        else:
            return None
        key = ("Z" if zone else "L") + base
        second = _cached(key, lambda: _parse_iso_second(base, zone))
        if zone and len(_UTC_SECONDS) < 65536:
            _UTC_SECONDS[base] = second
        return second - offset + frac
    except (ValueError, IndexError):
        return None


def _parse_iso_second(base: str, utc: bool) -> float:
    moment = datetime.strptime(base.replace(" ", "T"), "%Y-%m-%dT%H:%M:%S")
    if utc:
        return float(calendar.timegm(moment.timetuple()))
    return time.mktime(moment.timetuple())


def local_ts(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """Seconds since the epoch of a wall-clock time in this machine's zone (servers log local time)."""
    key = f"{year}-{month}-{day} {hour}:{minute}:{second}"
    return _cached(key, lambda: time.mktime((year, month, day, hour, minute, second, 0, 0, -1)))


def syslog_ts(month: str, day: str, clock: str, now: float | None = None) -> float | None:
    """`Nov 28 11:10:37`: local time, year not written (the latest such moment not in the future)."""
    mon = _MONTHS.get(month)
    if mon is None:
        return None
    try:
        hour, minute, second = (int(p) for p in clock.split(":"))
        day_n = int(day)
    except ValueError:
        return None
    current = time.localtime(now)
    year = current.tm_year
    if (mon, day_n) > (current.tm_mon, current.tm_mday + 1):
        year -= 1  # December lines read in January
    try:
        return local_ts(year, mon, day_n, hour, minute, second)
    except (OverflowError, ValueError):
        return None


def month_number(name: str) -> int | None:
    return _MONTHS.get(name[:3].title())


def add_answer(ctx: ReadContext, name: str, answers: list[str], lineno: int, ts: float, server: str,
               client: str, out: list[Observation]) -> None:
    """The A/AAAA addresses of an answer for a banned name, for later `resolved_ip` evidence."""
    if not answers or not ctx.wants_answers(name):
        return
    addresses = [a for a in answers if is_ip(a)]
    if addresses:
        out.append(observation(OBS_DNS_ANSWER, name, lineno, ts, server, client, 53, 0, "udp", "dns",
                               None, {"addresses": addresses}))


# The time stamps servers put in front of their lines: BIND's own (print-time yes / iso8601 /
# iso8601-utc), syslog's (RFC 3164 and the RFC 3339 form rsyslog writes) and Unbound's `[epoch]`.
_LEADING_TIME = re.compile(
    r"(?:(?P<bind>(?P<bd>\d{2})-(?P<bm>[A-Z][a-z]{2})-(?P<by>\d{4}) (?P<bclock>\d{2}:\d{2}:\d{2})(?P<bfrac>\.\d+)?)"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"|(?P<sm>[A-Z][a-z]{2}) +(?P<sd>\d{1,2}) (?P<sclock>\d{2}:\d{2}:\d{2})"
    r"|\[(?P<unix>\d{9,11}(?:\.\d+)?)\])\s")


def leading_time(line: str) -> tuple[float | None, int]:
    """(seconds since the epoch or None, index after the time stamp) of a server log line."""
    m = _LEADING_TIME.match(line)
    if m is None:
        return None, 0
    if m["unix"]:
        return float(m["unix"]), m.end()
    if m["iso"]:
        return iso_ts(m["iso"].replace(" ", "T")), m.end()
    if m["bind"]:
        mon = _MONTHS.get(m["bm"])
        if mon is None:
            return None, m.end()
        hour, minute, second = (int(p) for p in m["bclock"].split(":"))
        ts = local_ts(int(m["by"]), mon, int(m["bd"]), hour, minute, second)
        return ts + (float("0" + m["bfrac"]) if m["bfrac"] else 0.0), m.end()
    return syslog_ts(m["sm"], m["sd"], m["sclock"]), m.end()


def looks_like_ip(text: str) -> bool:
    """A cheap first test before `is_ip`: digits and dots, or a colon."""
    return bool(text) and (":" in text or text[0].isdigit())
