"""Windows Server DNS: the debug log (text) and the analytical event log exported as CSV.

No Windows server can run where netwatch is tested; both readers follow Microsoft's documented
formats, and the test samples are built from those documents:

* Debug log ("Debug Logging" tab, file `%systemroot%\\system32\\dns\\dns.log`; "DNS Logging and
  Diagnostics", link below, section "Debug logging"). The "Message logging key" header the server
  writes at the top of the file documents the fields: date, time, thread, context, packet id,
  UDP/TCP, Snd/Rcv, remote IP, xid, R (response) or blank (query), opcode, [flags hex, flag
  letters, response code], question type, question name in `(3)www(7)example(3)com(0)` form.
      11/28/2026 11:10:37 AM 0E70 PACKET  000000D5A3F2B1C0 UDP Rcv 10.0.0.2        8d1e   Q \
          [0001   D   NOERROR] A      (3)www(7)example(3)com(0)
  Only received queries count: a query the server itself sends (Snd) goes to an upstream server
  and names no device of the network.
* Analytical log (Microsoft-Windows-DNSServer/Analytical) saved as CSV from Event Viewer or with
  `Get-WinEvent ... | Export-Csv`. Event 256 QUERY_RECEIVED names the client (`Source=`) and
  the name (`QNAME=`); event 257 RESPONSE_SUCCESS carries the answer's wire bytes (`PacketData=`),
  read with netwatch's DNS parser for the answer's addresses.
  https://learn.microsoft.com/en-us/previous-versions/windows/it-pro/windows-server-2012-r2-and-2012/dn800669(v=ws.11)
Dates are read month first (en-US), day first when the first number is above 12, or ISO.
"""

from __future__ import annotations

import csv
import re

from netwatch.logs.common import LogReader, add_answer, iso_ts, local_ts, observation, to_port
from netwatch.model import EVIDENCE_DNS_QUERY, Observation
from netwatch.protocols import dns as dns_wire

_PACKET = re.compile(
    r"(?P<date>\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}) (?P<clock>\d{1,2}:\d{2}:\d{2})(?: (?P<ampm>[AP]M))? +"
    r"[0-9A-Fa-f]+ PACKET +[0-9A-Fa-f]+ (?P<proto>UDP|TCP) (?P<dir>Snd|Rcv) (?P<ip>[0-9A-Fa-f.:]+) +"
    r"[0-9A-Fa-f]+ (?P<qr>[R ]) (?P<op>[QNU?]) \[[^\]]*\] (?P<qtype>\S+) +(?P<qname>\S+)")
_LABEL = re.compile(r"\(\d+\)")


def wire_name(text: str) -> str:
    """`(3)www(7)example(3)com(0)` -> `www.example.com`."""
    return ".".join(part for part in _LABEL.split(text) if part)


def windows_time(date: str, clock: str, ampm: str | None) -> float | None:
    """A local date and time as the server's locale wrote it."""
    try:
        parts = [int(p) for p in re.split(r"[/.-]", date)]
        if parts[0] > 31:
            year, month, day = parts
        elif parts[0] > 12:
            day, month, year = parts
        else:
            month, day, year = parts
        hour, minute, second = (int(p) for p in clock.split(":"))
        if ampm == "PM" and hour < 12:
            hour += 12
        elif ampm == "AM" and hour == 12:
            hour = 0
        return local_ts(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        return None


class WindowsDebugLogReader(LogReader):
    format = "windows-dns-debug"

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            if " PACKET " not in line:
                self.other += 1  # the header, EVENT lines and the detail lines of "Details" logging
                continue
            m = _PACKET.match(line)
            if m is None:
                self.bad_line(lineno, line)
                continue
            self.records += 1
            if m["dir"] != "Rcv" or m["qr"] == "R" or m["op"] != "Q":
                continue
            ts = windows_time(m["date"], m["clock"], m["ampm"])
            if ts is None:
                self.untimed += 1
                ts = self.default_ts
            out.append(observation(EVIDENCE_DNS_QUERY, wire_name(m["qname"]), lineno, ts, m["ip"], "", 0, 53,
                                   m["proto"].lower(), "dns", None, {"qtype": m["qtype"]}))


def _fields(message: str) -> dict[str, str]:
    """`QUERY_RECEIVED: TCP=0; Source=10.0.0.2; QNAME=www.example.com.; ...` -> a dict."""
    body = message.split(":", 1)[1] if ":" in message.split(";", 1)[0] else message
    out = {}
    for item in body.split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key] = value
    return out


class WindowsAnalyticalCsvReader(LogReader):
    """Rows of an exported analytical log; the columns are found from the header line."""

    format = "windows-dns-csv"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.header: list[str] | None = None
        self._time_col: int | None = None

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        lineno = first_lineno - 1
        for row in csv.reader(lines):
            lineno += 1
            if not row:
                continue
            if self.header is None:
                self.header = [c.strip().lower() for c in row]
                self._time_col = next((i for i, c in enumerate(self.header)
                                       if c in ("date and time", "timecreated", "time created")), None)
                continue
            message = next((cell for cell in row if "QNAME=" in cell), None)
            if message is None:
                if any(cell.strip() for cell in row):
                    self.other += 1
                continue
            try:
                self._event(row, message, lineno, out)
                self.records += 1
            except (ValueError, IndexError, KeyError):
                self.bad_line(lineno, ",".join(row))

    def _time(self, row: list[str]) -> float:
        ts = None
        if self._time_col is not None and self._time_col < len(row):
            text = row[self._time_col].strip()
            ts = iso_ts(text.replace(" ", "T")) if text[:4].isdigit() and "-" in text[:5] else None
            if ts is None:
                m = re.match(r"(\S+) (\d{1,2}:\d{2}:\d{2})(?: ([AP]M))?", text)
                ts = windows_time(m[1], m[2], m[3]) if m else None
        if ts is None:
            self.untimed += 1
            return self.default_ts
        return ts

    def _event(self, row: list[str], message: str, lineno: int, out: list[Observation]) -> None:
        kind = message.split(":", 1)[0].strip()
        fields = _fields(message)
        name = fields["QNAME"].rstrip(".")
        transport = "tcp" if fields.get("TCP") == "1" else "udp"
        if kind == "QUERY_RECEIVED":
            out.append(observation(EVIDENCE_DNS_QUERY, name, lineno, self._time(row), fields["Source"],
                                   fields.get("InterfaceIP", ""), to_port(fields.get("Port", "")), 53, transport,
                                   "dns", None, {"qtype": fields.get("QTYPE")}))
        elif kind == "RESPONSE_SUCCESS" and fields.get("PacketData", "").startswith("0x"):
            message_wire = dns_wire.parse_message(bytes.fromhex(fields["PacketData"][2:]))
            if message_wire is None or message_wire.rcode != 0:
                return
            addresses = [a.value for a in message_wire.answers if a.rtype in (1, 28)]
            add_answer(self.ctx, name, addresses, lineno, self._time(row), fields.get("InterfaceIP", ""),
                       fields.get("Destination", ""), out)
