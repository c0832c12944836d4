"""dnsmasq `log-queries` (and its DHCP lines, which name a device's MAC and host name).

    Nov 28 11:10:37 dnsmasq[1234]: query[A] www.example.com from 10.0.0.2
    Nov 28 11:10:37 dnsmasq[1234]: forwarded www.example.com to 10.0.0.1
    Nov 28 11:10:37 dnsmasq[1234]: reply www.example.com is 93.184.216.34
    Nov 28 11:10:37 dnsmasq[1234]: cached www.example.com is 93.184.216.34
    Nov 28 11:10:37 dnsmasq[1234]: 7 10.0.0.2/53421 query[A] www.example.com from 10.0.0.2   (log-queries=extra)
    Nov 28 11:10:37 dnsmasq-dhcp[1234]: DHCPACK(eth0) 10.0.0.5 aa:bb:cc:dd:ee:ff laptop

`query[...]` lines give `dns_query` evidence; `reply`, `cached`, `config` and hosts-file lines give
the addresses of an answer (for `resolved_ip`); `DHCPACK` lines tie an address to a MAC and a
host name. Reference: dnsmasq(8), --log-queries, https://thekelleys.org.uk/dnsmasq/docs/dnsmasq-man.html
"""

from __future__ import annotations

import re

from netwatch.logs.common import LogReader, add_answer, leading_time, observation
from netwatch.model import EVIDENCE_DHCP_HOSTNAME, EVIDENCE_DNS_QUERY, Observation

_LINE = re.compile(r"(?P<prog>dnsmasq(?:-dhcp)?)\[\d+\]: (?:(?P<serial>\d+) (?P<client>[^ /]+)/(?P<cport>\d+) )?"
                   r"(?P<msg>.*)$")
_QUERY = re.compile(r"query\[(?P<qtype>[^\]]*)\] (?P<name>\S+) from (?P<ip>\S+)$")
_ANSWER = re.compile(r"(?P<source>reply|cached|config|cached-stale|\S*hosts\S*|DHCP) (?P<name>\S+) is (?P<value>\S+)$")
_DHCP = re.compile(r"(?:\d+ )?DHCP(?:ACK|REQUEST|INFORM)\([^)]*\) (?P<ip>[0-9a-fA-F.:]+) "
                   r"(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})(?: (?P<host>\S+))?$")


class DnsmasqLogReader(LogReader):
    format = "dnsmasq"

    def read(self, lines: list[str], first_lineno: int, out: list[Observation]) -> None:
        lineno = first_lineno - 1
        last_asker = self.ctx.last_asker
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            m = _LINE.search(line)
            if m is None:
                self.bad_line(lineno, line)
                continue
            msg = m["msg"]
            if m["prog"] == "dnsmasq-dhcp":
                self._dhcp(msg, line, lineno, out)
                continue
            if msg.startswith("query["):
                q = _QUERY.match(msg)
                if q is None:
                    self.bad_line(lineno, line)
                    continue
                name, client = q["name"], q["ip"]
                last_asker[name] = client
                if len(last_asker) > 65536:
                    last_asker.clear()
                out.append(observation(EVIDENCE_DNS_QUERY, name, lineno, self._ts(line), client, "",
                                       int(m["cport"]) if m["cport"] else 0, 53, "udp", "dns", None,
                                       {"qtype": q["qtype"]}))
                self.records += 1
                continue
            a = _ANSWER.match(msg)
            if a is None:
                self.other += 1  # forwarded, validation, start-up and cache-size messages
                continue
            name = a["name"]
            client = m["client"] or last_asker.get(name, "")
            add_answer(self.ctx, name, [a["value"]], lineno, self._ts(line), "", client, out)
            self.records += 1

    def _ts(self, line: str) -> float:
        ts, _ = leading_time(line)
        if ts is None:
            self.untimed += 1
            return self.default_ts
        return ts

    def _dhcp(self, msg: str, line: str, lineno: int, out: list[Observation]) -> None:
        d = _DHCP.search(msg)
        if d is None:
            self.other += 1
            return
        ip = d["ip"]
        out.append(observation(EVIDENCE_DHCP_HOSTNAME, d["host"], lineno, self._ts(line), ip, "", 68, 67, "udp",
                               "dhcp", d["mac"].lower(), {"client_ip": ip}))
        self.records += 1
