"""BIND 9 query log (`logging { category queries { ...; }; }` or `rndc querylog on`).

One line per query received; the forms met in practice, all read:

    28-Nov-2026 11:10:37.123 queries: info: client @0x7f3a5c0a1b68 10.0.0.2#53421 (a.example): query: \
        a.example IN A +E(0)K (10.0.0.1)
    28-Nov-2026 11:10:37.123 client @0x7f3a5c0a1b68 10.0.0.2#53421 (a.example): view internal: query: \
        a.example IN A + (10.0.0.1)
    Nov 28 11:10:37 ns1 named[812]: client 10.0.0.2#53421 (a.example): query: a.example IN A + (10.0.0.1)

(with or without the client object address `@0x...` of BIND 9.10 and later, with or without a
view, with BIND's own or syslog's time stamp). The query log names no answers, so BIND gives
`dns_query` evidence only. Reference: BIND 9 Administrator Reference Manual, "The category phrase"
(https://bind9.readthedocs.io/en/latest/reference.html#namedconf-statement-category).
"""

from __future__ import annotations

import re

from netwatch.logs.common import LogReader, leading_time, observation, to_port
from netwatch.model import EVIDENCE_DNS_QUERY, Observation

_QUERY = re.compile(
    r"client (?:@0x[0-9a-fA-F]+ )?(?P<ip>[0-9A-Fa-f:.]+(?:%\S+)?)#(?P<port>\d+)(?: \([^)]*\))?:"
    r"(?: view (?P<view>[^:]+):)? query: (?P<name>\S+) (?P<qclass>\S+) (?P<qtype>\S+) (?P<flags>\S*)"
    r"(?: \((?P<server>[^)]*)\))?")


class BindQueryLogReader(LogReader):
    format = "bind"

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            at = line.find("query: ")
            if at < 0:
                self.other += 1  # another category's message (start-up, zone loading, ...)
                continue
            m = _QUERY.search(line)
            if m is None:
                self.bad_line(lineno, line)
                continue
            ts, _ = leading_time(line)
            if ts is None:
                self.untimed += 1
                ts = self.default_ts
            flags = m["flags"]
            transport = "tcp" if "T" in flags else "udp"
            detail = {"qtype": m["qtype"]}
            if m["view"]:
                detail["view"] = m["view"]
            out.append(observation(EVIDENCE_DNS_QUERY, m["name"], lineno, ts, m["ip"].split("%", 1)[0],
                                   m["server"] or "", to_port(m["port"]), 53, transport, "dns", None, detail))
            self.records += 1
