"""Zeek logs: dns, ssl, quic, http, dhcp and conn, as ASCII/TSV (with `#fields` headers) or JSON.

TSV: the `#separator`, `#set_separator`, `#empty_field` and `#unset_field` headers say how to
split; `#path` names the log and `#fields` the columns, so a file may switch logs part-way (as
concatenated or streamed logs do). JSON: one object per line with the same field names; the log
is `_path` when present, otherwise told by its fields.

Zeek writes one dns.log line per transaction (query and answer together), ssl.log and quic.log
one line per handshake; conn.log adds the connections no other log named, for `resolved_ip`.
Field reference: https://docs.zeek.org/en/current/logs/index.html
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from netwatch.extract import OBS_CONN_START, OBS_CONN_UNNAMED
from netwatch.logs.common import LogReader, ReadContext, add_answer, iso_ts, observation, strip_host_port, to_port
from netwatch.model import (
    EVIDENCE_DHCP_HOSTNAME,
    EVIDENCE_DNS_QUERY,
    EVIDENCE_HTTP_HOST,
    EVIDENCE_QUIC_SNI,
    EVIDENCE_TLS_SNI,
    Observation,
)
from netwatch.protocols.common import escape_name_bytes

Out = list[Observation]
LOG_PATHS = ("dhcp", "dns", "quic", "ssl", "http", "conn")  # the order a run reads them in (joins need it)


def unescape(value: str) -> str:
    """Zeek writes separators and unprintable bytes as `\\xNN`; names keep netwatch's `\\DDD` form."""
    if "\\x" not in value:
        return value
    raw = bytearray()
    i, n = 0, len(value)
    while i < n:
        if value.startswith("\\x", i) and i + 4 <= n:
            try:
                raw.append(int(value[i + 2:i + 4], 16))
                i += 4
                continue
            except ValueError:
                pass
        raw.extend(value[i].encode("utf-8"))
        i += 1
    return escape_name_bytes(bytes(raw))


def _mac(value: str | None) -> str | None:
    return value.lower().replace("-", ":") if value and len(value) == 17 else None


# -- one function per log: plain values in, observations out (shared by TSV and JSON) ----------

def dns_record(ctx: ReadContext, lineno: int, ts: float, orig_h: str, orig_p: int, resp_h: str, resp_p: int,
               proto: str, query: str, qtype: str | None, rcode: str | None, answers: list[str] | None,
               out: Out) -> None:
    out.append(observation(EVIDENCE_DNS_QUERY, query, lineno, ts, orig_h, resp_h, orig_p, resp_p, proto, "dns",
                           None, {"qtype": qtype}))
    if answers and rcode in ("NOERROR", None):
        add_answer(ctx, query, answers, lineno, ts, resp_h, orig_h, out)


def sni_record(ctx: ReadContext, lineno: int, ts: float, uid: str, orig_h: str, orig_p: int, resp_h: str,
               resp_p: int, server_name: str, quic: bool, out: Out) -> None:
    if quic:
        ctx.quic_uids.add(uid)
    elif uid in ctx.quic_uids:
        return  # the QUIC handshake Zeek also writes to ssl.log: quic.log already gave it
    ctx.named_uids.add(uid)
    if quic:
        out.append(observation(EVIDENCE_QUIC_SNI, server_name, lineno, ts, orig_h, resp_h, orig_p, resp_p,
                               "udp", "quic"))
    else:
        out.append(observation(EVIDENCE_TLS_SNI, server_name, lineno, ts, orig_h, resp_h, orig_p, resp_p,
                               "tcp", "tls"))


def http_record(ctx: ReadContext, lineno: int, ts: float, uid: str, orig_h: str, orig_p: int, resp_h: str,
                resp_p: int, host: str, method: str | None, out: Out) -> None:
    ctx.named_uids.add(uid)
    out.append(observation(EVIDENCE_HTTP_HOST, strip_host_port(host), lineno, ts, orig_h, resp_h, orig_p, resp_p,
                           "tcp", "http", None, {"method": method}))


def dhcp_record(lineno: int, ts: float, client_addr: str | None, server_addr: str | None, mac: str | None,
                host_name: str | None, requested: str | None, assigned: str | None, out: Out) -> None:
    mac = _mac(mac)
    if mac is None:
        return
    client_ip = assigned or client_addr
    out.append(observation(EVIDENCE_DHCP_HOSTNAME, host_name, lineno, ts, client_ip or "", server_addr or "", 68,
                           67, "udp", "dhcp", mac, {"client_ip": client_ip, "requested_ip": requested}))


def conn_record(ctx: ReadContext, lineno: int, ts: float, uid: str, orig_h: str, orig_p: int, resp_h: str,
                resp_p: int, proto: str, service: str | None, mac: str | None, out: Out) -> None:
    if not ctx.interesting_address(resp_h):
        return
    protocol = service.split(",", 1)[0] if service else proto
    out.append(observation(OBS_CONN_START, None, lineno, ts, orig_h, resp_h, orig_p, resp_p, proto, protocol,
                           _mac(mac)))
    if uid not in ctx.named_uids:
        out.append(observation(OBS_CONN_UNNAMED, None, lineno, ts, orig_h, resp_h, orig_p, resp_p, proto, protocol,
                               _mac(mac)))


# -- TSV ------------------------------------------------------------------------------------

def _header_value(line: str, separator: str) -> str | None:
    """`#separator \\x09` (space after the key) or `#path<TAB>dns`: the value, escapes decoded.

    None for a damaged escape (`\\x9`, `\\xZZ`): the header line is unreadable, not fatal.
    """
    value = line.split(" ", 1)[-1] if line.startswith("#separator") else line.split(separator, 1)[-1]
    try:
        return bytes(value, "utf-8").decode("unicode_escape") if "\\x" in value else value
    except UnicodeDecodeError:
        return None


_VALUE_HEADERS = ("#separator", "#set_separator", "#empty_field", "#unset_field", "#path")


class ZeekTsvReader(LogReader):
    """Zeek's ASCII writer (the default): tab-separated, typed by its header lines."""

    format = "zeek-tsv"

    def __init__(self, ctx: ReadContext | None = None, default_ts: float = 0.0) -> None:
        super().__init__(ctx, default_ts)
        self.separator = "\t"
        self.set_separator = ","
        self.empty = "(empty)"
        self.unset = "-"
        self.path = ""
        self.fields: list[str] = []
        self._row: Callable[[list[str], int, Out], None] | None = None
        self._width = 0

    def _header(self, line: str) -> bool:
        """Apply one header line; False when it is damaged (the settings stay as they were)."""
        key = line.split(self.separator if not line.startswith("#separator") else " ", 1)[0]
        value = _header_value(line, self.separator) if key in _VALUE_HEADERS else ""
        if value is None or (key == "#separator" and not value):
            return False
        if key == "#separator":
            self.separator = value
        elif key == "#set_separator":
            self.set_separator = value
        elif key == "#empty_field":
            self.empty = value
        elif key == "#unset_field":
            self.unset = value
        elif key == "#path":
            self.path = value
            self._row = None
        elif key == "#fields":
            self.fields = line.split(self.separator)[1:]
            self._width = len(self.fields)
            self._row = self._make_row()
        return True

    def read(self, lines: list[str], first_lineno: int, out: Out) -> None:
        separator = self.separator
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line:
                continue
            if line[0] == "#":
                if not self._header(line):
                    self.bad_line(lineno, line)
                separator = self.separator
                continue
            row = self._row
            fields = line.split(separator)
            if row is None or len(fields) != self._width:
                if row is None and not self.fields:
                    self.bad_line(lineno, line)
                elif row is None:
                    self.other += 1  # a log this reader has no use for (files.log, weird.log, ...)
                else:
                    self.bad_line(lineno, line)
                continue
            try:
                row(fields, lineno, out)
                self.records += 1
            except (ValueError, IndexError, TypeError):
                self.bad_line(lineno, line)

    # Row functions close over the column positions of the current #fields header.
    def _make_row(self) -> Callable[[list[str], int, Out], None] | None:
        path = self.path or _guess_path(self.fields)
        col = {name: i for i, name in enumerate(self.fields)}
        needed = _COLUMNS.get(path)
        if needed is None or any(name not in col for name in needed):
            return None
        ctx, unset, empty, set_sep = self.ctx, self.unset, self.empty, self.set_separator
        missing = (unset, empty)

        def opt(fields: list[str], index: int | None) -> str | None:
            if index is None:
                return None
            value = fields[index]
            return None if value in missing else unescape(value)

        def timestamp(value: str) -> float:
            try:
                return float(value)
            except ValueError:
                self.untimed += 1
                return self.default_ts

        its, iuid = col.get("ts", 0), col.get("uid")
        ioh, iop, irh, irp = (col.get(k, 0) for k in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"))

        def ends(f: list[str]) -> tuple[str, int, str, int]:
            return f[ioh], to_port(f[iop]), f[irh], to_port(f[irp])

        if path == "dns":
            # The hot path (dns.log is most of a Zeek sensor's lines): everything inline.
            iq, iqt, ircode, ians = col["query"], col.get("qtype_name"), col.get("rcode_name"), col.get("answers")
            iproto = col.get("proto")
            wants = ctx.wants_answers

            def row(f: list[str], lineno: int, out: Out) -> None:
                query = f[iq]
                if query in missing:
                    return
                if "\\x" in query:
                    query = unescape(query)
                try:
                    ts = float(f[its])
                except ValueError:
                    ts = timestamp(f[its])
                sport, dport = f[iop], f[irp]  # type: ignore[index]
                out.append(Observation(
                    EVIDENCE_DNS_QUERY, query, lineno, ts, f[ioh], f[irh],  # type: ignore[index]
                    int(sport) if sport.isdigit() else 0, int(dport) if dport.isdigit() else 0,
                    f[iproto] if iproto is not None else "udp", "dns", None, False,
                    {"qtype": f[iqt] if iqt is not None and f[iqt] not in missing else None}))
                if ians is None:
                    return
                answers = f[ians]
                if answers not in missing and (ircode is None or f[ircode] == "NOERROR") and wants(query):
                    add_answer(ctx, query, [unescape(a) for a in answers.split(set_sep)], lineno, ts,
                               f[irh], f[ioh], out)  # type: ignore[index]
        elif path in ("ssl", "quic"):
            iname, quic = col["server_name"], path == "quic"

            def row(f: list[str], lineno: int, out: Out) -> None:
                name = f[iname]
                if name not in missing:
                    sni_record(ctx, lineno, timestamp(f[its]), f[iuid], *ends(f), unescape(name), quic, out)  # type: ignore[index]
        elif path == "http":
            ihost, imethod = col["host"], col.get("method")

            def row(f: list[str], lineno: int, out: Out) -> None:
                host = f[ihost]
                if host not in missing:
                    http_record(ctx, lineno, timestamp(f[its]), f[iuid], *ends(f), unescape(host),  # type: ignore[index]
                                opt(f, imethod), out)
        elif path == "dhcp":
            c = [col.get(k) for k in ("client_addr", "server_addr", "mac", "host_name", "requested_addr",
                                      "assigned_addr")]

            def row(f: list[str], lineno: int, out: Out) -> None:
                dhcp_record(lineno, timestamp(f[its]), *(opt(f, i) for i in c), out)  # type: ignore[arg-type]
        else:  # conn
            iproto, iservice, imac = col["proto"], col.get("service"), col.get("orig_l2_addr")

            def row(f: list[str], lineno: int, out: Out) -> None:
                conn_record(ctx, lineno, timestamp(f[its]), f[iuid], *ends(f), f[iproto],  # type: ignore[index]
                            opt(f, iservice), opt(f, imac), out)
        return row


_ENDPOINTS = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
_COLUMNS: dict[str, tuple[str, ...]] = {
    "dns": (*_ENDPOINTS, "query"),
    "ssl": (*_ENDPOINTS, "uid", "server_name"),
    "quic": (*_ENDPOINTS, "uid", "server_name"),
    "http": (*_ENDPOINTS, "uid", "host"),
    "dhcp": ("ts", "mac"),
    "conn": (*_ENDPOINTS, "uid", "proto"),
}


def _guess_path(fields: Any) -> str:
    """The log a set of field names belongs to, when no `#path`/`_path` says it."""
    if "query" in fields and "qtype_name" in fields:
        return "dns"
    if "server_name" in fields:
        return "quic" if ("client_initial_dcid" in fields or "client_scid" in fields) else "ssl"
    if "host" in fields and "method" in fields:
        return "http"
    if "mac" in fields and ("msg_types" in fields or "assigned_addr" in fields or "host_name" in fields):
        return "dhcp"
    if "conn_state" in fields or ("proto" in fields and "service" in fields):
        return "conn"
    return ""


# -- JSON -----------------------------------------------------------------------------------

class ZeekJsonReader(LogReader):
    """Zeek's JSON writer (`LogAscii::use_json=T`, or JSON streamed to a file): one object a line."""

    format = "zeek-json"

    def __init__(self, ctx: ReadContext | None = None, default_ts: float = 0.0, path: str = "") -> None:
        super().__init__(ctx, default_ts)
        self.path = path  # from the file name (dns.log, dns.json), used when a line has no _path

    def read(self, lines: list[str], first_lineno: int, out: Out) -> None:
        loads = orjson.loads
        lineno = first_lineno - 1
        for line in lines:
            lineno += 1
            if not line or line.isspace():
                continue
            try:
                rec = loads(line)
                if not isinstance(rec, dict):
                    raise TypeError("not an object")
                if self._record(rec, lineno, out):
                    self.records += 1
                else:
                    self.other += 1
            except (ValueError, TypeError, KeyError, AttributeError, IndexError):
                self.bad_line(lineno, line)

    def _ts(self, value: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        parsed = iso_ts(value) if isinstance(value, str) else None
        if parsed is None:
            self.untimed += 1
            return self.default_ts
        return parsed

    def _record(self, rec: dict[str, Any], lineno: int, out: Out) -> bool:
        path = rec.get("_path") or self.path or _guess_path(rec)
        if path not in _COLUMNS:
            path = _guess_path(rec)
            if path not in _COLUMNS:
                return False
        ctx = self.ctx
        get = rec.get
        if path == "dhcp":
            dhcp_record(lineno, self._ts(get("ts")), get("client_addr"), get("server_addr"), get("mac"),
                        get("host_name"), get("requested_addr"), get("assigned_addr"), out)
            return True
        ts = self._ts(get("ts"))
        ends = (str(rec["id.orig_h"]), int(get("id.orig_p") or 0), str(rec["id.resp_h"]), int(get("id.resp_p") or 0))
        if path == "dns":
            query = get("query")
            if isinstance(query, str) and query:
                answers = get("answers")
                dns_record(ctx, lineno, ts, *ends, get("proto") or "udp", query, get("qtype_name"),
                           get("rcode_name"), [str(a) for a in answers] if isinstance(answers, list) else None, out)
        elif path in ("ssl", "quic"):
            name = get("server_name")
            if isinstance(name, str) and name:
                sni_record(ctx, lineno, ts, str(get("uid")), *ends, name, path == "quic", out)
        elif path == "http":
            host = get("host")
            if isinstance(host, str) and host:
                http_record(ctx, lineno, ts, str(get("uid")), *ends, host, get("method"), out)
        else:
            conn_record(ctx, lineno, ts, str(get("uid")), *ends, str(get("proto") or ""), get("service"),
                        get("orig_l2_addr"), out)
        return True
