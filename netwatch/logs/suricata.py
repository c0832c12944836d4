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
_DNS_ANSWER_TYPES = ("answer", "response")


def _mac(value: Any) -> str | None:
    return value.lower().replace("-", ":") if isinstance(value, str) and len(value) == 17 else None


class EveReader(LogReader):
    """One EVE record a line; other event types (flow, alert, stats, ...) are skipped unparsed."""

    format = "suricata-eve"

    def read(self, lines: list[str], first_lineno: int, out: Out) -> None:
        loads = orjson.loads
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            # The event type is read off the text first, so the many records netwatch has no use for
            # (flow, alert, stats, fileinfo, ...) cost a string search instead of a JSON parse.
            at = line.find(_MARK)
            if at >= 0:
                start = at + len(_MARK)
                if line[start:line.find('"', start)] not in WANTED:
                    self.other += 1
                    continue
            try:
                rec = loads(line)
                if not isinstance(rec, dict) or not isinstance(rec.get("event_type"), str):
                    raise TypeError("not an EVE record")
                if self._record(rec, lineno, out):
                    self.records += 1
                else:
                    self.other += 1
            except (ValueError, TypeError, KeyError, AttributeError, IndexError):
                self.bad_line(lineno, line)

    def _record(self, rec: dict[str, Any], lineno: int, out: Out) -> bool:
        kind = rec["event_type"]
        body = rec.get(kind)
        if kind not in WANTED or not isinstance(body, dict):
            return False
        stamp = rec.get("timestamp")
        ts = iso_ts(stamp) if isinstance(stamp, str) else None
        if ts is None:
            self.untimed += 1
            ts = self.default_ts
        src, dst = str(rec.get("src_ip") or ""), str(rec.get("dest_ip") or "")
        sport, dport = int(rec.get("src_port") or 0), int(rec.get("dest_port") or 0)
        transport = str(rec.get("proto") or "").lower()
        ether = rec.get("ether")
        mac = _mac(ether.get("src_mac")) if isinstance(ether, dict) else None
        if kind == "dns":
            self._dns(body, lineno, ts, src, dst, sport, dport, transport or "udp", mac, out)
        elif kind in ("tls", "quic"):
            sni = body.get("sni")
            if isinstance(sni, str) and sni:
                evidence = EVIDENCE_TLS_SNI if kind == "tls" else EVIDENCE_QUIC_SNI
                out.append(observation(evidence, sni, lineno, ts, src, dst, sport, dport,
                                       transport or ("tcp" if kind == "tls" else "udp"), kind, mac))
        elif kind == "http":
            host = body.get("hostname")
            if isinstance(host, str) and host:
                out.append(observation(EVIDENCE_HTTP_HOST, strip_host_port(host), lineno, ts, src, dst, sport,
                                       dport, transport or "tcp", "http", mac,
                                       {"method": body.get("http_method")}))
        else:
            self._dhcp(body, lineno, ts, src, dst, out)
        return True

    def _dns(self, dns: dict[str, Any], lineno: int, ts: float, src: str, dst: str, sport: int, dport: int,
             transport: str, mac: str | None, out: Out) -> None:
        kind = dns.get("type")
        if kind in _DNS_QUERY_TYPES:
            queries = dns.get("queries") or dns.get("query")  # v3 / v2-in-v8 arrays, else v1/v2 top level
            if isinstance(queries, list):
                for query in queries:
                    if isinstance(query, dict) and isinstance(query.get("rrname"), str):
                        out.append(observation(EVIDENCE_DNS_QUERY, query["rrname"], lineno, ts, src, dst, sport,
                                               dport, transport, "dns", mac, {"qtype": query.get("rrtype")}))
            elif isinstance(dns.get("rrname"), str):
                out.append(observation(EVIDENCE_DNS_QUERY, dns["rrname"], lineno, ts, src, dst, sport, dport,
                                       transport, "dns", mac, {"qtype": dns.get("rrtype")}))
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
