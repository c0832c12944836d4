"""SIEM formats: every field survives, and hostile names cannot forge lines, fields or keys."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.forward.formats import (
    SYSLOG_FORMATS,
    SyslogFormatter,
    bulk_lines,
    event_json,
    hec_event,
)
from netwatch.forward.testing import (
    FormatViolation,
    parse_cef,
    parse_leef,
    parse_rfc3164,
    parse_rfc5424,
)

EXAMPLE = Path(__file__).resolve().parent / "data" / "event_example.json"
BOM = "\ufeff"


def example_event() -> dict:
    return json.loads(EXAMPLE.read_text())


HOSTILE = [
    "evil.example\n<13>1 2026-01-01T00:00:00Z forged netwatch - alert - {}",
    'x" forged="1"] [evil@1 a="b',
    "a|b|c\\|d=e f=g msg=forged",
    "cs1=forged\r\nCEF:0|x|y|1|2|3|4|",
    "tab\tdevTime=forged\tsrc=6.6.6.6",
    "nul\x00byte\x7fdel\x85nel\u2028ls",
    '\\"]\\\\',
    "\"},\"event\":{\"id\":\"forged\"}",
]


def hostile_event(name: str) -> dict:
    event = example_event()
    event["netwatch"]["name"] = name
    event["netwatch"]["device"]["hostname"] = name
    event["message"] = f"{name} contacted Alipay"
    event["rule"]["id"] = name
    event["netwatch"]["evidence"] = name
    return event


def unvisible(text: str) -> str:
    r"""Undo the `\xNN` / `\uXXXX` stand-ins of control characters (test names hold no `\x`)."""
    return re.sub(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})",
                  lambda m: chr(int(m.group(1) or m.group(2), 16)), text)


def _line(fmt: str, event: dict) -> str:
    text = event_json(event)
    data = SyslogFormatter(fmt, facility=16).format(json.loads(text), text)
    decoded = data.decode("utf-8")
    assert "\n" not in decoded and "\r" not in decoded and "\x00" not in decoded
    return decoded


def check_rfc5424(event: dict, name: str) -> None:
    header, sd, msg = parse_rfc5424(_line("rfc5424", event))
    assert header[1:] == ["2026-01-05T09:00:03.250000Z", "sensor1", "netwatch", "-", "alert"]
    assert set(sd) == {"app@32473", "device@32473", "evidence@32473"}
    assert set(sd["evidence@32473"]) == {"event_id", "kind", "name", "confidence", "signature", "severity",
                                         "dst_ip", "dst_port", "transport", "protocol"}
    assert unvisible(sd["evidence@32473"]["name"]) == name
    assert unvisible(sd["device@32473"]["hostname"]) == event["netwatch"]["device"]["hostname"]
    assert msg.startswith(BOM)
    assert json.loads(msg[1:]) == event


def check_json(event: dict, name: str) -> None:
    _header, sd, msg = parse_rfc5424(_line("json", event))
    assert sd == {}
    assert json.loads(msg) == event


def check_rfc3164(event: dict, name: str) -> None:
    header, tag, pairs = parse_rfc3164(_line("rfc3164", event))
    assert header[1:] == ["Jan", " 5", "09:00:03", "sensor1"]
    assert tag == "netwatch"
    assert set(pairs) == {"event_id", "app", "app_name", "evidence", "name", "confidence", "device_id",
                          "device_hostname", "src_ip", "dst_ip", "dst_port", "protocol", "severity",
                          "signature"}
    assert unvisible(pairs["name"]) == name
    assert pairs["event_id"] == event["event"]["id"]


CEF_KEYS = {"rt", "externalId", "cat", "src", "spt", "smac", "shost", "dst", "dpt", "dhost", "proto", "app",
            "dvchost", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3", "cs4Label", "cs4",
            "cs5Label", "cs5", "msg"}


def check_cef(event: dict, name: str) -> None:
    header, ext = parse_cef(_line("cef", event))
    assert header[:4] == ["CEF:0", "netwatch", "netwatch", "0.1.0"]
    assert unvisible(header[4]) == event["rule"]["id"]
    assert header[6] == "7"
    assert set(ext) == CEF_KEYS
    assert unvisible(ext["dhost"]) == name
    assert unvisible(ext["cs2"]) == event["netwatch"]["evidence"]
    assert unvisible(ext["msg"]) == event["message"]
    assert ext["externalId"] == event["event"]["id"]
    assert ext["rt"] == "1767603603250"


LEEF_KEYS = {"devTime", "devTimeFormat", "cat", "sev", "src", "srcPort", "srcMAC", "dst", "dstPort", "proto",
             "identHostName", "eventId", "app", "appName", "evidence", "domain", "confidence", "signature",
             "deviceId", "observer", "msg"}


def check_leef(event: dict, name: str) -> None:
    header, attrs = parse_leef(_line("leef", event))
    assert header[:4] == ["LEEF:2.0", "netwatch", "netwatch", "0.1.0"]
    assert unvisible(header[4]) == event["netwatch"]["evidence"]
    assert header[5] == "x09"
    assert set(attrs) == LEEF_KEYS
    assert unvisible(attrs["domain"]) == name
    assert attrs["devTime"] == "Jan 05 2026 09:00:03.250 UTC"
    assert attrs["sev"] == "7"


CHECKS = {"rfc5424": check_rfc5424, "json": check_json, "rfc3164": check_rfc3164, "cef": check_cef,
          "leef": check_leef}


def test_every_syslog_format_has_a_check() -> None:
    assert set(CHECKS) == set(SYSLOG_FORMATS)


@pytest.mark.parametrize("fmt", SYSLOG_FORMATS)
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_cannot_forge(fmt: str, name: str) -> None:
    CHECKS[fmt](hostile_event(name), name)


@pytest.mark.parametrize("fmt", SYSLOG_FORMATS)
def test_plain_event_round_trips(fmt: str) -> None:
    event = example_event()
    CHECKS[fmt](event, event["netwatch"]["name"])


# Names without backslashes (so `\xNN` stand-ins are unambiguous), C1 and surrogates (tested below).
hostile_text = st.text(
    alphabet=st.one_of(st.sampled_from(list('\r\n\x00\t|=]["}{ \x7f\u2028')),
                       st.characters(blacklist_categories=("Cs",), blacklist_characters="\\",
                                     max_codepoint=0x2FFF).filter(lambda c: not 0x80 <= ord(c) <= 0x9F)),
    min_size=1, max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(name=hostile_text, fmt=st.sampled_from(SYSLOG_FORMATS))
def test_random_names_cannot_forge(name: str, fmt: str) -> None:
    CHECKS[fmt](hostile_event(name), name)


def test_undecodable_bytes_are_shown_not_lost() -> None:
    raw = b"caf\xe9.\xff\xfe.example"
    name = raw.decode("utf-8", "surrogateescape")
    event = hostile_event(name)
    text = event_json(event)
    text.encode("utf-8")  # must be encodable
    assert json.loads(text)["netwatch"]["name"] == "caf\\xe9.\\xff\\xfe.example"
    for fmt in SYSLOG_FORMATS:
        line = SyslogFormatter(fmt).format(json.loads(text), text).decode("utf-8")
        assert "\\xe9" in line and "\udce9" not in line


def test_json_never_carries_raw_control_or_separator_chars() -> None:
    event = hostile_event("a\x7fb\x85c\u2028d\u2029e\x00")
    text = event_json(event)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", text)
    assert json.loads(text) == event


def test_severity_maps_to_syslog_pri() -> None:
    event = example_event()
    for severity, pri in ((95, 16 * 8 + 2), (73, 16 * 8 + 3), (50, 16 * 8 + 4), (25, 16 * 8 + 5),
                          (5, 16 * 8 + 6)):
        event["event"]["severity"] = severity
        header, _, _ = parse_rfc5424(_line("rfc5424", event))
        assert int(header[0]) == pri


def test_missing_fields_do_not_break_formats() -> None:
    event = {"event": {"id": "nw-1"}, "@timestamp": "not a time"}
    text = event_json(event)
    for fmt in SYSLOG_FORMATS:
        line = SyslogFormatter(fmt, hostname="sensor-x").format(json.loads(text), text).decode()
        assert "sensor-x" in line
    header, sd, _msg = parse_rfc5424(SyslogFormatter("rfc5424").format(event, text).decode())
    assert header[2] == "-"  # no hostname known: NILVALUE
    assert sd["evidence@32473"] == {"event_id": "nw-1"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", header[1])


def test_rfc5424_hostname_is_printable_ascii() -> None:
    event = example_event()
    event["observer"]["hostname"] = "bad host\nname"
    header, _, _ = parse_rfc5424(_line("rfc5424", event))
    assert header[2] == "bad_host_name"


def test_hec_event_shape() -> None:
    event = hostile_event('"},"host":"forged')
    text = event_json(event)
    hec = json.loads(hec_event(event, text, host=None, index="netwatch"))
    assert hec == {"time": 1767603603.25, "host": "sensor1", "source": "netwatch",
                   "sourcetype": "netwatch:alert", "index": "netwatch", "event": event}


def test_bulk_lines_shape() -> None:
    event = hostile_event('"}}\n{"delete":{"_id":"x"}}')
    text = event_json(event)
    body = bulk_lines(event, text, index="alerts")
    lines = body.split("\n")
    assert lines[2] == "" and len(lines) == 3
    assert json.loads(lines[0]) == {"create": {"_index": "alerts", "_id": event["event"]["id"]}}
    assert json.loads(lines[1]) == event


def test_parsers_reject_forgeries() -> None:
    """The reference parsers are strict: the checks above would notice a forged field."""
    with pytest.raises(FormatViolation):
        parse_rfc5424('<131>1 - h a - m [x@1 a="b]"] msg')
    _header, ext = parse_cef("CEF:0|a|b|1|2|3|4|dhost=x cs1=forged")
    assert ext == {"dhost": "x", "cs1": "forged"}  # what an unescaped name would have produced
    with pytest.raises(FormatViolation):
        parse_leef("LEEF:2.0|a|b|1|2|x09|k=v\tnot a pair")
    with pytest.raises(FormatViolation):
        parse_rfc3164('<13>Jan  5 09:00:03 h netwatch: alert name="a" b" c="d"')


def test_formats_do_not_modify_the_event() -> None:
    event = hostile_event("x\ny")
    before = copy.deepcopy(event)
    text = event_json(event)
    for fmt in SYSLOG_FORMATS:
        SyslogFormatter(fmt).format(event, text)
    assert event == before
