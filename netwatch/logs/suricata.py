"""Suricata EVE JSON: the `dns`, `tls`, `quic`, `http` and `dhcp` event types.

DNS comes in three shapes, all read: version 1 (one record per query and per answer RR,
`type` query/answer with `rrname`, `rdata` at the top), version 2 (`type` query/answer, an
answer's records in `answers` or grouped by type in `grouped`) and version 3 (Suricata 8:
`type` request/response with `queries` and `answers` arrays). A query record's source is the
client; an answer's destination is.
Field reference: https://docs.suricata.io/en/latest/output/eve/eve-json-format.html
"""

from __future__ import annotations

from typing import Any

import orjson

from netwatch.logs.common import LogReader, add_answer, iso_ts, observation, strip_host_port
from netwatch.model import (
    EVIDENCE_DHCP_HOSTNAME,
    EVIDENCE_DNS_QUERY,
    EVIDENCE_HTTP_HOST,
    EVIDENCE_QUIC_SNI,
    EVIDENCE_TLS_SNI,
    Observation,
)

Out = list[Observation]
WANTED = frozenset({"dns", "tls", "quic", "http", "dhcp"})
_MARK = '"event_type":"'
_DNS_QUERY_TYPES = ("query", "request")
_TRANSPORTS = {"UDP": "udp", "TCP": "tcp", "SCTP": "sctp"}
_DNS_ANSWER_TYPES = ("answer", "response")


def _mac(value: Any) -> str | None:
    return value.lower().replace("-", ":") if isinstance(value, str) and len(value) == 17 else None


class EveReader(LogReader):
    """One EVE record a line; other event types (flow, alert, stats, ...) are skipped unparsed."""

    format = "suricata-eve"

    def read(self, lines: list[str], first_lineno: int, out: Out) -> None:
        loads = orjson.loads
        record = self._record
        mark, skip = _MARK, len(_MARK)
        lineno = first_lineno - 1
        records = other = 0
        for line in lines:
            lineno += 1
            if not line or (line[0] != "{" and line.isspace()):
                continue
            # The event type is read off the text first, so the many records netwatch has no use for
            # (flow, alert, stats, fileinfo, ...) cost a string search instead of a JSON parse.
            at = line.find(mark)
            if at >= 0:
                start = at + skip
                if line[start:line.find('"', start)] not in WANTED:
                    other += 1
                    continue
            try:
                rec = loads(line)
                if rec.__class__ is not dict or rec.get("event_type").__class__ is not str:
                    raise TypeError("not an EVE record")
                if record(rec, lineno, out):
                    records += 1
                else:
                    other += 1
            except (ValueError, TypeError, KeyError, AttributeError, IndexError):
                self.bad_line(lineno, line)
        self.records += records
        self.other += other

    def _record(self, rec: dict[str, Any], lineno: int, out: Out) -> bool:
        kind = rec["event_type"]
        body = rec.get(kind)
        if kind not in WANTED or body.__class__ is not dict:
            return False
        get = rec.get
        stamp = get("timestamp")
        ts = iso_ts(stamp) if stamp.__class__ is str else None
        if ts is None:
            self.untimed += 1
            ts = self.default_ts
        src, dst = get("src_ip") or "", get("dest_ip") or ""
        if src.__class__ is not str or dst.__class__ is not str:
            raise TypeError("addresses are not strings")
        sport, dport = int(get("src_port") or 0), int(get("dest_port") or 0)
        proto = get("proto")
        transport = _TRANSPORTS.get(proto) or str(proto or "").lower()
        ether = get("ether")
        mac = _mac(ether.get("src_mac")) if ether.__class__ is dict else None
        if kind == "dns":
            rrname = body.get("rrname")
            if rrname.__class__ is str and body.get("type") == "query":  # v1/v2 query: the usual record
                out.append(Observation(EVIDENCE_DNS_QUERY, rrname, lineno, ts, src, dst, sport, dport,
                                       transport or "udp", "dns", mac, False, {"qtype": body.get("rrtype")}))
            else:
                self._dns(body, lineno, ts, src, dst, sport, dport, transport or "udp", mac, out)
        elif kind == "tls" or kind == "quic":
            sni = body.get("sni")
            if sni.__class__ is str and sni:
                if kind == "tls":
                    out.append(Observation(EVIDENCE_TLS_SNI, sni, lineno, ts, src, dst, sport, dport,
                                           transport or "tcp", "tls", mac, False, {}))
                else:
                    out.append(Observation(EVIDENCE_QUIC_SNI, sni, lineno, ts, src, dst, sport, dport,
                                           transport or "udp", "quic", mac, False, {}))
        elif kind == "http":
            host = body.get("hostname")
            if host.__class__ is str and host:
                out.append(Observation(EVIDENCE_HTTP_HOST, strip_host_port(host), lineno, ts, src, dst, sport,
                                       dport, transport or "tcp", "http", mac, False,
                                       {"method": body.get("http_method")}))
        else:
            self._dhcp(body, lineno, ts, src, dst, out)
        return True

    def _dns(self, dns: dict[str, Any], lineno: int, ts: float, src: str, dst: str, sport: int, dport: int,
             transport: str, mac: str | None, out: Out) -> None:
        kind = dns.get("type")
        if kind in _DNS_QUERY_TYPES:
            rrname = dns.get("rrname")
            if rrname.__class__ is str:  # v1 and v2: the query at the top level (the usual case)
                out.append(Observation(EVIDENCE_DNS_QUERY, rrname, lineno, ts, src, dst, sport, dport, transport,
                                       "dns", mac, False, {"qtype": dns.get("rrtype")}))
                return
            queries = dns.get("queries") or dns.get("query")  # v3, and v2 arrays in Suricata 8
            if isinstance(queries, list):
                for query in queries:
                    if isinstance(query, dict) and isinstance(query.get("rrname"), str):
                        out.append(observation(EVIDENCE_DNS_QUERY, query["rrname"], lineno, ts, src, dst, sport,
                                               dport, transport, "dns", mac, {"qtype": query.get("rrtype")}))
            return
        if kind not in _DNS_ANSWER_TYPES or dns.get("rcode", "NOERROR") != "NOERROR":
            return
        name = dns.get("rrname")
        if not isinstance(name, str):
            queries = dns.get("queries") or dns.get("query")
            name = queries[0].get("rrname") if isinstance(queries, list) and queries and isinstance(
                queries[0], dict) else None
        if not isinstance(name, str):
            return
        addresses: list[str] = []
        answers = dns.get("answers")
        if isinstance(answers, list):  # v2 detailed, v3
            addresses = [str(a["rdata"]) for a in answers
                         if isinstance(a, dict) and a.get("rrtype") in ("A", "AAAA") and "rdata" in a]
        grouped = dns.get("grouped")
        if isinstance(grouped, dict):  # v2 grouped
            for rrtype in ("A", "AAAA"):
                values = grouped.get(rrtype)
                if isinstance(values, list):
                    addresses.extend(str(v) for v in values)
        if dns.get("rrtype") in ("A", "AAAA") and isinstance(dns.get("rdata"), str):  # v1: one RR a record
            addresses.append(dns["rdata"])
        add_answer(self.ctx, name, addresses, lineno, ts, src, dst, out)

    def _dhcp(self, dhcp: dict[str, Any], lineno: int, ts: float, src: str, dst: str, out: Out) -> None:
        mac = _mac(dhcp.get("client_mac"))
        if mac is None:
            return
        assigned = dhcp.get("assigned_ip")
        client_ip = dhcp.get("client_ip")
        ip = assigned if assigned and assigned != "0.0.0.0" else (
            client_ip if client_ip and client_ip != "0.0.0.0" else None)
        hostname = dhcp.get("hostname") if dhcp.get("type") != "reply" else None
        out.append(observation(EVIDENCE_DHCP_HOSTNAME, hostname if isinstance(hostname, str) else None, lineno, ts,
                               ip or "", dst, 68, 67, "udp", "dhcp", mac,
                               {"client_ip": ip, "requested_ip": dhcp.get("requested_ip"),
                                "vendor_class": dhcp.get("vendor_class_identifier"),
                                "msg_type": dhcp.get("dhcp_type")}))
