"""Which log family a file holds, told from its first lines (or forced with `--format`)."""

from __future__ import annotations

import re

import orjson

from netwatch.logs.bind import BindQueryLogReader
from netwatch.logs.common import LogReader
from netwatch.logs.dnsmasq import DnsmasqLogReader
from netwatch.logs.suricata import EveReader
from netwatch.logs.unbound import UnboundLogReader
from netwatch.logs.windows_dns import WindowsAnalyticalCsvReader, WindowsDebugLogReader
from netwatch.logs.zeek import ZeekJsonReader, ZeekTsvReader

FORMATS: dict[str, type[LogReader]] = {
    reader.format: reader for reader in (
        ZeekTsvReader, ZeekJsonReader, EveReader, BindQueryLogReader, UnboundLogReader, DnsmasqLogReader,
        WindowsDebugLogReader, WindowsAnalyticalCsvReader)
}
SNIFF_LINES = 200

_BIND = re.compile(r"client (?:@0x[0-9a-fA-F]+ )?[0-9A-Fa-f:.]+#\d+.*query: ")
_UNBOUND = re.compile(r"unbound(?:\[\d+:\d+\]|: \[\d+:\d+\]) \w+: ")
_DNSMASQ = re.compile(r"dnsmasq(?:-dhcp)?\[\d+\]: ")
_WINDOWS_DEBUG = re.compile(r" PACKET +[0-9A-Fa-f]+ (?:UDP|TCP) (?:Snd|Rcv) ")


def _json_format(line: str) -> str | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    if "event_type" in record and "timestamp" in record:
        return "suricata-eve"
    if "_path" in record or "id.orig_h" in record or "uid" in record:
        return "zeek-json"
    return None


def sniff(lines: list[str]) -> str | None:
    """The format name of the first line that only one family writes; None when none does."""
    for line in lines[:SNIFF_LINES]:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(("#separator", "#fields", "#path")):
            return "zeek-tsv"
        if stripped.startswith("{"):
            found = _json_format(stripped)
            if found:
                return found
            continue
        if _DNSMASQ.search(line):
            return "dnsmasq"
        if _UNBOUND.search(line):
            return "unbound"
        if _BIND.search(line):
            return "bind"
        if _WINDOWS_DEBUG.search(line) or stripped.startswith("DNS Server log file creation"):
            return "windows-dns-debug"
        if "QNAME=" in line or (stripped.count(",") >= 3 and ("Event ID" in line or "TimeCreated" in line)
                                and ("Date and Time" in line or "TimeCreated" in line)):
            return "windows-dns-csv"
    return None
