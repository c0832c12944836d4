"""Unbound `log-queries: yes` and `log-replies: yes`.

    [1764328237] unbound[4211:0] info: 10.0.0.2 www.example.com. A IN
    [1764328237] unbound[4211:0] reply: 10.0.0.2 www.example.com. A IN NOERROR 0.000000 0 45
    Nov 28 11:10:37 ns1 unbound: [4211:0] query: 10.0.0.2 www.example.com. A IN

(`log-tag-queryreply: yes` writes `query:`/`reply:` instead of `info:`; `log-time-ascii: yes` and
syslog change the time stamp). A reply line repeats its query, so it counts only when its query
was not logged (replies-only logging). Unbound's log names no addresses, so it gives `dns_query`
evidence only. Reference: unbound.conf(5), https://unbound.docs.nlnetlabs.nl/en/latest/manpages/unbound.conf.html
"""

from __future__ import annotations

import re
from collections import OrderedDict

from netwatch.logs.common import LogReader, is_ip, leading_time, looks_like_ip, observation
from netwatch.model import EVIDENCE_DNS_QUERY, Observation

_LINE = re.compile(r"unbound(?:\[\d+:\d+\]|: \[\d+:\d+\]) (?P<tag>info|query|reply): (?P<rest>.*)$")
_RECENT_QUERIES = 4096


class UnboundLogReader(LogReader):
    format = "unbound"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._recent: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            m = _LINE.search(line)
            if m is None:
                if "unbound" in line:
                    self.other += 1  # notice:/error: lines and the like
                else:
                    self.bad_line(lineno, line)
                continue
            parts = m["rest"].split(" ")
            if len(parts) not in (4, 8) or not looks_like_ip(parts[0]) or not is_ip(parts[0]):
                self.other += 1  # local-zone actions and other info: messages
                continue
            client, name, qtype, _qclass = parts[:4]
            key = (client, name, qtype)
            if len(parts) == 8:  # a reply line
                if key in self._recent:
                    del self._recent[key]
                    self.other += 1
                    continue
            else:
                self._recent[key] = None
                if len(self._recent) > _RECENT_QUERIES:
                    self._recent.popitem(last=False)
            ts, _ = leading_time(line)
            if ts is None:
                self.untimed += 1
                ts = self.default_ts
            detail = {"qtype": qtype}
            if len(parts) == 8:
                detail["rcode"] = parts[4]
            out.append(observation(EVIDENCE_DNS_QUERY, name, lineno, ts, client, "", 0, 53, "udp", "dns", None,
                                   detail))
            self.records += 1
