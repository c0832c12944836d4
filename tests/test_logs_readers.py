"""Log readers on real Zeek logs and on records built from the documented formats.

Zeek: the real logs of Zeek's own test baselines (../shared/ecosystem/zeek, used by path).
Suricata: every EVE record the tests feed is first validated against Suricata's own JSON schema
(../shared/ecosystem/suricata-eve-schema.json), so the reader is tested on what Suricata writes.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.logs.common import ReadContext, leading_time
from netwatch.logs.engine import read_logs
from netwatch.logs.sniff import FORMATS, sniff
from netwatch.logs.zeek import unescape
from netwatch.pipeline import Pipeline
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
ECOSYSTEM = REPO.parent / "shared" / "ecosystem"
ZEEK = ECOSYSTEM / "zeek"
EVE_SCHEMA = ECOSYSTEM / "suricata-eve-schema.json"

BANNED = "mobilegw.alipay.com"  # Alipay in the bundled signatures
BANNED_SNI = "pay.weixin.qq.com"  # WeChat Pay
NEUTRAL = "www.example.org"


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def zeek_dir() -> Path:
    if not ZEEK.is_dir():
        pytest.skip(f"Zeek baseline logs not found at {ZEEK}")
    return ZEEK


def run(paths, sigset, **kw):
    pipeline = Pipeline(sigset, emit_all=kw.pop("emit_all", True))
    events: list[dict] = []
    summary = read_logs([str(p) for p in paths], pipeline, events.append, **kw)
    return summary, events, pipeline


def names(events, evidence):
    return [e["netwatch"]["name"] for e in events if e["netwatch"]["evidence"] == evidence]


def cli(*args, cwd=REPO, input_bytes=None):
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", *map(str, args)], cwd=cwd,
                          capture_output=True, input=input_bytes, timeout=120)


# -- Zeek: the real baselines ------------------------------------------------------------------

def test_every_real_zeek_log_reads_without_a_bad_line(sigset):
    root = zeek_dir()
    summary, _, _ = run([root], sigset)
    read = [f for f in summary.files if f.format]
    # One baseline (dns.max-queries/conn.log) is zeek-cut output without the #fields header: not a log.
    with_header = [p for p in root.rglob("*.log") if "#fields" in p.read_text()]
    assert len(read) == len(with_header) >= 30
    assert all(f.format == "zeek-tsv" for f in read)
    assert summary.bad == 0, [(f.path, f.bad_samples) for f in summary.files if f.bad]
    assert summary.records > 60


def test_real_zeek_dns_ssl_quic_http_dhcp_values(sigset):
    root = zeek_dir()
    _, events, _ = run([root / "scripts.base.protocols.dns.binds"], sigset)
    assert names(events, "dns_query") == ["example.net"]
    _, events, _ = run([root / "scripts.base.protocols.ssl.tls13-encrypted-client-hello"], sigset)
    assert names(events, "tls_sni") == ["cloudflare-ech.com"] * 2
    # Zeek writes a QUIC handshake to quic.log and to ssl.log; it must count once, as QUIC.
    _, events, _ = run([root / "scripts.base.protocols.quic.chromium"], sigset)
    assert names(events, "quic_sni") == ["api.cirrus-ci.com"] and names(events, "tls_sni") == []
    assert events[0]["source"]["ip"] == "82.239.54.117" and events[0]["destination"]["port"] == 443
    _, events, _ = run([root / "scripts.base.protocols.http.http-methods"], sigset)
    assert len(names(events, "http_host")) == 26
    _, events, pipeline = run([root / "scripts.base.protocols.dhcp.dhcp-all-msg-types"], sigset)
    device = pipeline.inventory.get("90:b1:1c:99:49:29")
    assert device is not None and device.hostname == "btest.is.cool" and "128.2.6.189" in device.ips


def test_zeek_escapes_separators_empty_and_unset(sigset, tmp_path):
    head = (ZEEK / "scripts.base.protocols.dns.binds" / "dns.log").read_text() if ZEEK.is_dir() else None
    if head is None:
        pytest.skip("Zeek baseline logs not found")
    header = "\n".join(line for line in head.splitlines() if line.startswith("#") and not line.startswith("#close"))
    fields = header.split("#fields\t")[1].split("\n")[0].split("\t")

    def row(**values):
        base = {f: "-" for f in fields}
        base.update({"ts": "1764320000.5", "uid": "C1", "id.orig_h": "10.1.1.5", "id.orig_p": "5353",
                     "id.resp_h": "10.1.1.1", "id.resp_p": "53", "proto": "udp", "rcode_name": "NOERROR",
                     "qtype_name": "A", "auth": "(empty)"})
        base.update(values)
        return "\t".join(base[f] for f in fields)

    log = tmp_path / "dns.log"
    log.write_text("\n".join([
        header,
        row(query=BANNED, answers="1.2.3.4,cname\\x2cwith-comma.example"),
        row(query="odd\\x09name.example"),  # an escaped tab inside a value
        row(query="-"),  # unset: no name, no event
        row(query="(empty)"),
        "only\tthree\tfields",  # damaged
        "#close\t2026-11-28-10-00-00",
    ]) + "\n")
    summary, events, _ = run([log], sigset)
    assert names(events, "dns_query") == [BANNED, "odd\\009name.example"]
    assert summary.bad == 1 and summary.files[0].bad_samples[0][0] == header.count("\n") + 6
    alert = next(e for e in events if e["event"]["kind"] == "alert")
    assert alert["netwatch"]["app"] == "alipay" and alert["source"]["ip"] == "10.1.1.5"
    assert alert["netwatch"]["capture"] == {"file": str(log), "frame": header.count("\n") + 2}
    assert unescape("a\\x2cb") == "a,b"


def test_zeek_custom_separator_and_json_agree(sigset, tmp_path):
    tsv = tmp_path / "ssl.log"
    tsv.write_text("#separator \\x7c\n#set_separator|,\n#empty_field|(empty)\n#unset_field|-\n#path|ssl\n"
                   "#fields|ts|uid|id.orig_h|id.orig_p|id.resp_h|id.resp_p|version|server_name\n"
                   "#types|time|string|addr|port|addr|port|string|string\n"
                   f"1764320000.25|Cx|10.1.1.7|50000|203.0.113.9|443|TLSv13|{BANNED_SNI}\n")
    js = tmp_path / "ssl.json"
    js.write_text(json.dumps({"ts": "2025-11-28T08:53:20.250000Z", "uid": "Cx", "id.orig_h": "10.1.1.7",
                              "id.orig_p": 50000, "id.resp_h": "203.0.113.9", "id.resp_p": 443,
                              "version": "TLSv13", "server_name": BANNED_SNI}) + "\n")
    _, a, _ = run([tsv], sigset)
    _, b, _ = run([js], sigset)
    strip = [{k: v for k, v in e.items() if k not in ("event",)} | {"id": e["event"]["id"]} for e in a]
    assert [e["netwatch"]["app"] for e in a] == ["wechat_pay"]
    assert [x["@timestamp"] for x in strip] == [e["@timestamp"] for e in b] == ["2025-11-28T08:53:20.250000Z"]
    assert a[0]["netwatch"]["name"] == b[0]["netwatch"]["name"] and a[0]["source"] == b[0]["source"]


def test_zeek_answers_and_unnamed_connection_give_resolved_ip(sigset, tmp_path):
    dns = tmp_path / "dns.log"
    conn = tmp_path / "conn.log"
    dns.write_text(json.dumps({"_path": "dns", "ts": 1764320000.0, "uid": "D1", "id.orig_h": "10.1.1.8",
                               "id.orig_p": 4000, "id.resp_h": "10.1.1.1", "id.resp_p": 53, "proto": "udp",
                               "query": BANNED, "qtype_name": "A", "rcode_name": "NOERROR",
                               "answers": ["198.51.100.77"]}) + "\n")
    conn.write_text("\n".join(json.dumps({"_path": "conn", "ts": 1764320001.0, "uid": uid, "id.orig_h": "10.1.1.9",
                                          "id.orig_p": 5000 + i, "id.resp_h": "198.51.100.77", "id.resp_p": 443,
                                          "proto": "tcp", "service": svc, "conn_state": "SF"})
                              for i, (uid, svc) in enumerate((("C1", None), ("C2", "ssl")))) + "\n")
    ssl = tmp_path / "ssl.log"  # C2 has its own name in ssl.log, so it is not 'unnamed'
    ssl.write_text(json.dumps({"_path": "ssl", "ts": 1764320001.0, "uid": "C2", "id.orig_h": "10.1.1.9",
                               "id.orig_p": 5001, "id.resp_h": "198.51.100.77", "id.resp_p": 443,
                               "server_name": NEUTRAL}) + "\n")
    _, events, _ = run([tmp_path], sigset, emit_all=False)
    resolved = [e for e in events if e["netwatch"]["evidence"] == "resolved_ip"]
    assert len(resolved) == 1 and resolved[0]["source"]["port"] == 5000
    assert resolved[0]["netwatch"]["resolved_from"] == BANNED and resolved[0]["netwatch"]["confidence"] == "medium"


def test_rotated_and_gzip_files_are_read_oldest_first(sigset, tmp_path):
    def line(ts, name):
        return json.dumps({"_path": "dns", "ts": ts, "uid": "U", "id.orig_h": "10.1.1.3", "id.orig_p": 1,
                           "id.resp_h": "10.1.1.1", "id.resp_p": 53, "query": name}) + "\n"

    (tmp_path / "dns.log").write_text(line(3.0, "c.example"))
    (tmp_path / "dns.log.1").write_text(line(2.0, "b.example"))
    with gzip.open(tmp_path / "dns.log.2.gz", "wt") as fh:
        fh.write(line(1.0, "a.example"))
    (tmp_path / "notes.txt").write_text("not a log\n")
    summary, events, _ = run([tmp_path], sigset)
    assert names(events, "dns_query") == ["a.example", "b.example", "c.example"]
    assert [f.skipped for f in summary.files].count("not a known log format") == 1


# -- Suricata EVE --------------------------------------------------------------------------------

def eve_validator():
    jsonschema = pytest.importorskip("jsonschema")
    if not EVE_SCHEMA.is_file():
        pytest.skip(f"Suricata EVE schema not found at {EVE_SCHEMA}")
    schema = json.loads(EVE_SCHEMA.read_text())
    return jsonschema.Draft202012Validator(schema) if "$defs" in schema else jsonschema.Draft7Validator(schema)


def eve(event_type, body, *, src="10.2.0.5", dst="10.2.0.1", sport=40000, dport=53, proto="UDP", **extra):
    rec = {"timestamp": "2026-11-28T10:00:01.250000+0000", "flow_id": 1234, "in_iface": "eth0",
           "event_type": event_type, "src_ip": src, "src_port": sport, "dest_ip": dst, "dest_port": dport,
           "proto": proto, event_type: body}
    rec.update(extra)
    return rec


def eve_records() -> list[dict]:
    return [
        # DNS v2: a query, then the answer with detailed and grouped records
        eve("dns", {"version": 2, "type": "query", "id": 1, "rrname": BANNED, "rrtype": "A", "tx_id": 0,
                    "opcode": 0}, ether={"src_mac": "02:aa:bb:cc:dd:01"}),
        eve("dns", {"version": 2, "type": "answer", "id": 1, "flags": "8180", "qr": True, "rd": True, "ra": True,
                    "opcode": 0, "rrname": BANNED, "rrtype": "A", "rcode": "NOERROR",
                    "answers": [{"rrname": BANNED, "rrtype": "A", "ttl": 60, "rdata": "198.51.100.10"}],
                    "grouped": {"A": ["198.51.100.11"]}}, src="10.2.0.1", dst="10.2.0.5", sport=53, dport=40000),
        # DNS v3 (Suricata 8): request with queries[]
        eve("dns", {"version": 3, "type": "request", "id": 2, "queries": [{"rrname": NEUTRAL, "rrtype": "AAAA"}]}),
        # DNS v1: one record per query (v1 answers carried rdata at the top level; see the next test)
        eve("dns", {"version": 1, "type": "query", "id": 3, "rrname": "v4.camscanner.com", "rrtype": "A",
                    "tx_id": 1}),
        eve("tls", {"sni": BANNED_SNI, "version": "TLS 1.3"}, sport=40001, dport=443, proto="TCP"),
        eve("quic", {"sni": "qpay.qq.com", "version": "1"}, sport=40002, dport=443),
        eve("http", {"hostname": "dl.wps.cn:8080", "url": "/", "http_method": "GET", "protocol": "HTTP/1.1"},
            sport=40003, dport=80, proto="TCP"),
        eve("dhcp", {"type": "request", "id": 99, "client_mac": "02:aa:bb:cc:dd:01", "assigned_ip": "0.0.0.0",
                     "client_ip": "0.0.0.0", "dhcp_type": "request", "hostname": "kiosk-7",
                     "requested_ip": "10.2.0.5"}, src="0.0.0.0", dst="255.255.255.255", sport=68, dport=67),
        eve("dhcp", {"type": "reply", "id": 99, "client_mac": "02:aa:bb:cc:dd:01", "assigned_ip": "10.2.0.5",
                     "client_ip": "0.0.0.0", "dhcp_type": "ack"}, src="10.2.0.1", dst="10.2.0.5", sport=67, dport=68),
        eve("flow", {"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 60, "bytes_toclient": 60,
                     "start": "2026-11-28T10:00:01.000000+0000", "end": "2026-11-28T10:00:02.000000+0000",
                     "age": 1, "state": "closed", "reason": "timeout", "alerted": False}),
    ]


def test_eve_records_are_valid_and_read(sigset, tmp_path):
    validator = eve_validator()
    records = eve_records()
    for rec in records:
        errors = [e.message for e in validator.iter_errors(rec)]
        assert not errors, (rec["event_type"], errors)
    path = tmp_path / "eve.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "{not json\n")
    summary, events, pipeline = run([path], sigset)
    assert summary.files[0].format == "suricata-eve"
    assert names(events, "dns_query") == [BANNED, NEUTRAL, "v4.camscanner.com"]
    assert names(events, "tls_sni") == [BANNED_SNI] and names(events, "quic_sni") == ["qpay.qq.com"]
    assert names(events, "http_host") == ["dl.wps.cn"]
    assert summary.bad == 1 and summary.files[0].other == 1  # the broken line; the flow record
    device = pipeline.inventory.get("02:aa:bb:cc:dd:01")
    assert device is not None and device.hostname == "kiosk-7"
    assert {"alipay", "camscanner", "wechat_pay", "qq_wallet", "wps_office"} <= set(device.apps) | {
        a for d in pipeline.inventory.devices() for a in d.apps}
    assert events[0]["@timestamp"] == "2026-11-28T10:00:01.250000Z"
    # The v2 answer's addresses are remembered: a later unnamed connection to one is resolved_ip.
    assert pipeline.detector.interesting_address("198.51.100.10")
    assert pipeline.detector.interesting_address("198.51.100.11")


def test_eve_dns_v1_answer_and_v3_response(sigset, tmp_path):
    v1_answer = eve("dns", {"type": "answer", "id": 5, "rcode": "NOERROR", "rrname": BANNED, "rrtype": "A",
                            "ttl": 60, "rdata": "198.51.100.20"})
    v3_response = eve("dns", {"version": 3, "type": "response", "id": 6, "rcode": "NOERROR",
                              "queries": [{"rrname": BANNED, "rrtype": "AAAA"}],
                              "answers": [{"rrname": BANNED, "rrtype": "AAAA", "rdata": "2001:db8::20"}]})
    validator = eve_validator()
    assert not list(validator.iter_errors(v3_response))
    # Today's schema describes version 2 and 3 DNS records only; a v1 answer (rdata at the top level,
    # Suricata before 5.0) is outside it, and the reader still takes it.
    assert list(validator.iter_errors(v1_answer))
    path = tmp_path / "eve.json"
    path.write_text(json.dumps(v1_answer) + "\n" + json.dumps(v3_response) + "\n")
    summary, events, pipeline = run([path], sigset)
    assert summary.bad == 0 and names(events, "dns_query") == []  # answers are no queries
    assert pipeline.detector.interesting_address("198.51.100.20")
    assert pipeline.detector.interesting_address("2001:db8::20")


# -- sniffing, hostile input, time stamps ---------------------------------------------------------

@pytest.mark.parametrize(("line", "fmt"), [
    ("#separator \\x09", "zeek-tsv"),
    ('{"ts":1.0,"uid":"C","id.orig_h":"10.0.0.1","query":"a"}', "zeek-json"),
    ('{"timestamp":"2026-11-28T10:00:00.000000+0000","event_type":"dns"}', "suricata-eve"),
    ("28-Nov-2026 11:10:37.123 client @0x7f3a5c0a1b68 10.0.0.2#53421 (a.example): query: a.example IN A + (10.0.0.1)",
     "bind"),
    ("[1764328237] unbound[4211:0] info: 10.0.0.2 a.example. A IN", "unbound"),
    ("Nov 28 11:10:37 dnsmasq[1234]: query[A] a.example from 10.0.0.2", "dnsmasq"),
    ("11/28/2026 11:10:37 AM 0E70 PACKET  000000D5A3F2B1C0 UDP Rcv 10.0.0.2        8d1e   Q [0001   D   NOERROR] A"
     "      (1)a(7)example(0)", "windows-dns-debug"),
    ("Level,Date and Time,Source,Event ID,Task Category", "windows-dns-csv"),
    ("just some text", None),
])
def test_sniff(line, fmt):
    assert sniff([line]) == fmt


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_hostile_lines_never_raise(fmt):
    rng = random.Random(fmt)
    reader = FORMATS[fmt](ReadContext(wants_answers=lambda _n: True, interesting_address=lambda _a: True))
    seeds = ["#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tquery", '{"event_type":"dns","dns":{}}',
             "client 1.2.3.4#5 (x): query: x IN A + (y)", "unbound[1:0] info: 1.2.3.4 x. A IN",
             "dnsmasq[1]: query[A] x from 1.2.3.4", "1/1/2026 1:00:00 PM 0 PACKET 0 UDP Rcv 1.2.3.4 0 R Q [] A (1)x(0)",
             "a,QNAME=x;Source=1.2.3.4", '{"_path":"dns","id.orig_h":[],"id.resp_h":{},"query":7}']
    lines = []
    for _ in range(400):
        base = list(rng.choice(seeds))
        for _ in range(rng.randint(0, 6)):
            if base:
                odd = [0, 9, 10, 34, 44, 58, 91, 123, 0xFFFD, rng.randrange(32, 127)]
                base[rng.randrange(len(base))] = chr(rng.choice(odd))
        lines.append("".join(base).replace("\n", " "))
    out: list = []
    reader.read(lines, 1, out)  # must not raise
    assert reader.records + reader.bad + reader.other <= len(lines)


def test_leading_time_forms():
    utc = leading_time("2026-11-28T10:00:01.500Z named[1]: x")[0]
    assert utc == pytest.approx(1795860001.5)
    assert leading_time("[1764328237] unbound[1:0] info: x")[0] == 1764328237.0
    assert leading_time("28-Nov-2026 11:10:37.250 client x")[0] is not None
    assert leading_time("Nov 28 11:10:37 dnsmasq[1]: x")[0] is not None
    assert leading_time("garbage")[0] is None


# -- the command -------------------------------------------------------------------------------

def test_cli_exit_codes_formats_and_warnings(tmp_path):
    log = tmp_path / "eve.json"
    log.write_text("".join(json.dumps(r) + "\n" for r in eve_records()) + "\x00\xff garbage\n")
    done = cli(log, "--format", "jsonl")
    assert done.returncode == 1, done.stderr
    events = [json.loads(x) for x in done.stdout.splitlines()]
    assert {e["netwatch"]["app"] for e in events if e["event"]["kind"] == "alert"} >= {"alipay", "wechat_pay"}
    err = done.stderr.decode()
    assert "1 line(s) not readable as suricata-eve" in err and "line 11" in err and "Traceback" not in err
    table = cli(log, "--format", "table")
    text = table.stdout.decode()
    assert table.returncode == 1 and text.startswith("netwatch logs") and "kiosk-7" in text and "ALERT" in text
    assert "lines/s" in text
    csv_out = cli(log, "--format", "csv").stdout.decode().splitlines()
    assert csv_out[0].startswith("@timestamp,") and len(csv_out) > 3
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps(eve("dns", {"version": 2, "type": "query", "id": 1, "rrname": NEUTRAL})) + "\n")
    assert cli(clean, "--format", "jsonl").returncode == 0
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    done = cli(junk)
    assert done.returncode == 2 and b"not a log format netwatch reads" in done.stderr
    assert b"Traceback" not in done.stderr
    forced = cli(junk, "--input-format", "bind", "--format", "jsonl")
    assert forced.returncode == 0
    missing = cli(tmp_path / "nope.log")
    assert missing.returncode == 2 and b"No such file" in missing.stderr
    assert cli("-", "--format", "jsonl", input_bytes=log.read_bytes()).returncode == 1


# -- server log variants that the real-server tests cannot produce here ---------------------------

def read_lines(fmt: str, lines: list[str], **ctx):
    reader = FORMATS[fmt](ReadContext(**ctx))
    out: list = []
    reader.read(lines, 1, out)
    return reader, out


def test_bind_variants_without_client_object_and_via_syslog():
    lines = [
        "Nov 28 11:10:37 ns1 named[812]: client 10.0.0.2#53421 (Mobilegw.Alipay.com): query: Mobilegw.Alipay.com IN "
        "A + (10.0.0.1)",
        "28-Nov-2026 11:10:38.001 client @0x7f3a5c0a1b68 2001:db8::5#4242 (a.example): view ext: query: a.example IN "
        "AAAA +TE(0)K (2001:db8::1)",
        "28-Nov-2026 11:10:38.002 general: info: zone example.org/IN: loaded serial 1",
        "28-Nov-2026 11:10:38.003 client @0x1 bogus query: ???",
    ]
    reader, out = read_lines("bind", lines)
    assert [(o.src_ip, o.name, o.transport, o.detail.get("view")) for o in out] == [
        ("10.0.0.2", "Mobilegw.Alipay.com", "udp", None), ("2001:db8::5", "a.example", "tcp", "ext")]
    assert (reader.records, reader.other, reader.bad) == (2, 1, 1)


def test_unbound_replies_only_and_tagged():
    lines = ["Nov 28 11:10:37 ns1 unbound: [4211:0] reply: 10.0.0.2 pay.weixin.qq.com. A IN NOERROR 0.1 0 45",
             "[1764328237] unbound[4211:0] query: 10.0.0.3 a.example. A IN",
             "[1764328237] unbound[4211:0] info: a.example. static 10.0.0.3@5353 a.example. A IN",
             "[1764328237] unbound[4211:0] notice: init module 0: iterator"]
    reader, out = read_lines("unbound", lines)
    assert [(o.src_ip, o.name, o.detail.get("rcode")) for o in out] == [
        ("10.0.0.2", "pay.weixin.qq.com.", "NOERROR"), ("10.0.0.3", "a.example.", None)]
    assert reader.other == 2 and reader.bad == 0


def test_dnsmasq_replies_cached_forwarded_and_dhcp():
    lines = ["Nov 28 11:10:37 dnsmasq[1234]: query[AAAA] mobilegw.alipay.com from 10.0.0.2",
             "Nov 28 11:10:37 dnsmasq[1234]: forwarded mobilegw.alipay.com to 10.0.0.1",
             "Nov 28 11:10:37 dnsmasq[1234]: reply mobilegw.alipay.com is 2001:db8::77",
             "Nov 28 11:10:38 dnsmasq[1234]: cached mobilegw.alipay.com is 198.51.100.77",
             "Nov 28 11:10:38 dnsmasq[1234]: reply mobilegw.alipay.com is <CNAME>",
             "Nov 28 11:10:39 dnsmasq-dhcp[1234]: DHCPACK(eth0) 10.0.0.2 02:aa:bb:cc:dd:02 reception-pc",
             "random text"]
    reader, out = read_lines("dnsmasq", lines, wants_answers=lambda name: "alipay" in name)
    assert [o.evidence for o in out] == ["dns_query", "dns_answer", "dns_answer", "dhcp_hostname"]
    assert out[1].detail["addresses"] == ["2001:db8::77"] and out[1].dst_ip == "10.0.0.2"
    assert out[3].src_mac == "02:aa:bb:cc:dd:02" and out[3].name == "reception-pc"
    assert reader.bad == 1 and reader.bad_samples == [(7, "random text")]


# Windows DNS: no Windows server runs here. These samples follow Microsoft's documentation:
# the "Message logging key" header a debug log starts with, and the analytical events of
# "DNS Logging and Diagnostics" (learn.microsoft.com ... dn800669), event 256 QUERY_RECEIVED and
# 257 RESPONSE_SUCCESS, as Event Viewer's "Save All Events As... CSV" writes them.
def _packet(stamp: str, proto: str, direction: str, ip: str, xid: str, response: bool, flags: str, qtype: str,
            qname: str) -> str:
    """One PACKET line laid out as the header's field table says (fixed-width remote IP and type)."""
    return (f"{stamp} 0E70 PACKET  000000D5A3F2B1C0 {proto} {direction} {ip:<15} {xid} {'R' if response else ' '} Q "
            f"[{flags}] {qtype:<6} {qname}")


WINDOWS_DEBUG = "\n".join([
    "DNS Server log file creation at 11/28/2026 11:00:00 AM",
    "Log file wrap at 11/28/2026 11:00:00 AM",
    "",
    "Message logging key (for packets - other items use a subset of these fields):",
    "\tField #  Information         Values",
    "\t-------  -----------         ------",
    "\t   1     Date",
    "\t   2     Time",
    "\t   8     Remote IP",
    "\t  10     Query/Response      R = Response",
    "\t                             blank = Query",
    "",
    _packet("11/28/2026 11:10:37 AM", "UDP", "Rcv", "10.0.0.21", "8d1e", False, "0001   D   NOERROR", "A",
            "(8)mobilegw(6)alipay(3)com(0)"),
    _packet("11/28/2026 11:10:37 AM", "UDP", "Snd", "10.0.0.1", "4a2b", False, "0001   D   NOERROR", "A",
            "(8)mobilegw(6)alipay(3)com(0)"),
    _packet("11/28/2026 11:10:37 AM", "UDP", "Snd", "10.0.0.21", "8d1e", True, "8081   DR  NOERROR", "A",
            "(8)mobilegw(6)alipay(3)com(0)"),
    _packet("28/11/2026 23:10:38", "TCP", "Rcv", "10.0.0.22", "8d1f", False, "0001   D   NOERROR", "AAAA",
            "(3)www(7)example(3)org(0)"),
    "11/28/2026 11:10:39 AM 0E70 EVENT   The DNS server has finished the background loading of zones.",
    "11/28/2026 11:10:40 AM 0E70 PACKET  garbage",
    "",
])


def test_windows_debug_log():
    lines = WINDOWS_DEBUG.replace("\n", "\r\n").split("\n")
    assert sniff(lines) == "windows-dns-debug"
    reader, out = read_lines("windows-dns-debug", [line.rstrip("\r") for line in lines])
    assert [(o.src_ip, o.name, o.transport) for o in out] == [("10.0.0.21", "mobilegw.alipay.com", "udp"),
                                                              ("10.0.0.22", "www.example.org", "tcp")]
    assert reader.bad == 1 and reader.records == 4
    import time as _time
    assert _time.localtime(out[1].ts)[:6] == (2026, 11, 28, 23, 10, 38)
    assert _time.localtime(out[0].ts)[3] == 11


def _response_hex(name: str, address: str) -> str:
    import dns.message
    import dns.rrset

    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", address))
    return "0x" + response.to_wire().hex().upper()


def test_windows_analytical_csv(sigset, tmp_path):
    rows = [
        "Level,Date and Time,Source,Event ID,Task Category",
        'Information,11/28/2026 11:10:37 AM,Microsoft-Windows-DNSServer,256,QUERY_RECEIVED,"QUERY_RECEIVED: TCP=0; '
        'InterfaceIP=10.0.0.1; Source=10.0.0.21; RD=1; QNAME=mobilegw.alipay.com.; QTYPE=1; XID=36126; Port=53421; '
        'Flags=256; PacketData=0x8D1E01000001000000000000"',
        'Information,11/28/2026 11:10:37 AM,Microsoft-Windows-DNSServer,257,RESPONSE_SUCCESS,"RESPONSE_SUCCESS: TCP=0; '
        'InterfaceIP=10.0.0.1; Destination=10.0.0.21; AA=0; AD=0; QNAME=mobilegw.alipay.com.; QTYPE=1; XID=36126; '
        f'DNSSEC=0; RCODE=0; Port=53421; Flags=33152; Scope=Default; Zone=..Cache; PolicyName=NULL; '
        f'PacketData={_response_hex("mobilegw.alipay.com", "198.51.100.99")}"',
        'Information,11/28/2026 11:10:38 AM,Microsoft-Windows-DNSServer,256,QUERY_RECEIVED,"QUERY_RECEIVED: TCP=1; '
        'InterfaceIP=10.0.0.1; Source=10.0.0.22; RD=1; QNAME=www.example.org.; QTYPE=28; XID=1; Port=1; Flags=256; '
        'PacketData=0x00"',
        'Information,11/28/2026 11:10:39 AM,Microsoft-Windows-DNSServer,256,QUERY_RECEIVED,"QUERY_RECEIVED: TCP=0; '
        'QNAME=no-source.example."',  # damaged: no Source
    ]
    path = tmp_path / "dns-analytical.csv"
    path.write_text("\r\n".join(rows) + "\r\n", encoding="utf-8")
    summary, events, pipeline = run([path], sigset)
    assert summary.files[0].format == "windows-dns-csv"
    assert [(e["source"]["ip"], e["netwatch"]["name"]) for e in events] == [
        ("10.0.0.21", "mobilegw.alipay.com"), ("10.0.0.22", "www.example.org")]
    assert events[0]["netwatch"]["app"] == "alipay" and events[1]["network"]["transport"] == "tcp"
    assert pipeline.detector.interesting_address("198.51.100.99")  # read from the response's PacketData
    assert summary.bad == 1


def test_cli_output_error_and_ctrl_c(tmp_path):
    log = tmp_path / "eve.json"
    log.write_text("".join(json.dumps(r) + "\n" for r in eve_records()))
    done = cli(log, "-o", tmp_path / "no" / "such" / "dir" / "out.jsonl")
    assert done.returncode == 2 and b"cannot write" in done.stderr and b"Traceback" not in done.stderr
    # Ctrl-C: the lines read so far are reported, then the run ends (input from a FIFO that stays open).
    import os
    import signal
    import time

    fifo = tmp_path / "eve.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "netwatch.cli", "logs", "--format", "jsonl", str(fifo)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = os.open(fifo, os.O_WRONLY)
    try:
        os.write(writer, "".join(json.dumps(r) + "\n" for r in eve_records()).encode())
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        # Ctrl-C ends netwatch's wait for more input at once, with the writer still open.
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 1, err
    assert b"interrupted (Ctrl-C)" in err and b"Traceback" not in err
    assert b'"app":"alipay"' in out


def test_overlong_line_is_one_bad_line_and_memory_stays_bounded(sigset, tmp_path):
    import io

    from netwatch.logs.source import MAX_LINE_BYTES, read_chunks

    data = b"a\n" + b"x" * (3 * MAX_LINE_BYTES) + b"\nb\nc"
    for final, expected in ((True, len(data)), (False, len(data) - 1)):
        chunks = list(read_chunks(io.BufferedReader(io.BytesIO(data)), final=final))
        assert sum(span for _, span in chunks) == expected  # --follow resumes at exact line boundaries
        assert max(len(line) for lines, _ in chunks for line in lines) < 300
    log = tmp_path / "eve.json"
    records = eve_records()
    log.write_bytes(json.dumps(records[0]).encode() + b"\n" + b"{" * (2 * MAX_LINE_BYTES) + b"\n"
                    + json.dumps(records[4]).encode() + b"\n")
    summary, events, _ = run([log], sigset)
    assert summary.bad == 1 and names(events, "dns_query") == [BANNED] and names(events, "tls_sni") == [BANNED_SNI]


def test_cli_empty_log_is_not_an_error(tmp_path):
    empty = tmp_path / "querylog"
    empty.write_bytes(b"")
    done = cli(empty, "--format", "jsonl")
    assert done.returncode == 0 and done.stdout == b"" and b"1 file(s)" in done.stderr


def test_cli_forwards_the_alerts_it_prints(tmp_path):
    log = tmp_path / "eve.json"
    log.write_text("".join(json.dumps(r) + "\n" for r in eve_records()))
    target = tmp_path / "forwarded.jsonl"
    done = cli(log, "--format", "jsonl", "--forward", f"file://{target}", "--forward-state-dir", tmp_path / "q")
    assert done.returncode == 1, done.stderr
    printed = [e["event"]["id"] for e in map(json.loads, done.stdout.splitlines()) if e["event"]["kind"] == "alert"]
    forwarded = [json.loads(line)["event"]["id"] for line in target.read_text().splitlines()]
    assert forwarded == printed and len(printed) == 5


@pytest.mark.system
def test_cli_forwards_to_rsyslog(tmp_path):
    import shutil

    from netwatch.forward.testing import RsyslogServer

    if not (shutil.which("rsyslogd") or Path("/usr/sbin/rsyslogd").exists()):
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog)")
    log = tmp_path / "eve.json"
    log.write_text("".join(json.dumps(r) + "\n" for r in eve_records()))
    server = RsyslogServer(tmp_path / "rsyslog")
    server.start()
    try:
        done = cli(log, "--format", "jsonl", "--forward", server.url("tcp", "json"), "--forward-state-dir",
                   tmp_path / "q")
        lines = server.wait_lines("tcp", 5)
    finally:
        server.stop()
    assert done.returncode == 1
    apps = {json.loads(line.decode()[line.decode().index("{"):])["netwatch"]["app"] for line in lines}
    assert apps == {"alipay", "camscanner", "wechat_pay", "qq_wallet", "wps_office"}
