"""Forwarding to a real rsyslogd on loopback: UDP, TCP (octet counting) and TLS with a test CA."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netwatch.forward import ForwardError, ForwarderSet
from netwatch.forward.testing import (
    RsyslogServer,
    make_test_ca,
    numbered_copies,
    parse_cef,
    parse_leef,
    parse_rfc3164,
    parse_rfc5424,
)

pytestmark = pytest.mark.system

EXAMPLE = Path(__file__).resolve().parent / "data" / "event_example.json"
FORMATS = ("rfc5424", "rfc3164", "cef", "leef", "json")
HOSTILE_NAME = 'evil.example\n<13>1 - forged - - - -\r|x=y\t"]\\\x00'


def make_events(count: int, prefix: str, name: str | None = None) -> list[dict]:
    events = numbered_copies(json.loads(EXAMPLE.read_text()), count, prefix)
    if name is not None:
        for event in events:
            event["netwatch"]["name"] = name
            event["netwatch"]["device"]["hostname"] = name
    return events


def event_id_of(fmt: str, line: bytes) -> str:
    """Parse one received line strictly with the format's grammar and return its event id."""
    text = line.decode("utf-8")
    if fmt == "rfc5424":
        _, sd, msg = parse_rfc5424(text)
        event = json.loads(msg.removeprefix("\ufeff"))
        assert sd["evidence@32473"]["event_id"] == event["event"]["id"]
        return event["event"]["id"]
    if fmt == "json":
        return json.loads(parse_rfc5424(text)[2])["event"]["id"]
    if fmt == "rfc3164":
        return parse_rfc3164(text)[2]["event_id"]
    if fmt == "cef":
        return parse_cef(text)[1]["externalId"]
    return parse_leef(text)[1]["eventId"]


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory):
    if not (shutil.which("rsyslogd") or Path("/usr/sbin/rsyslogd").exists()):
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)")
    if not Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists() and not list(
            Path("/usr/lib").glob("**/rsyslog/lmnsd_gtls.so")):
        pytest.skip("rsyslog-gnutls is not installed (needed for the TLS input)")
    server = RsyslogServer(tmp_path_factory.mktemp("rsyslog"))
    server.start()
    yield server
    server.stop()


def _fast(url: str) -> str:
    return url + "&retry_initial=0.05&retry_max=0.3"


@pytest.mark.parametrize("proto", ["udp", "tcp", "tls"])
def test_every_alert_arrives_once_intact_in_every_format(rsyslog: RsyslogServer, tmp_path: Path,
                                                         proto: str) -> None:
    before = len(rsyslog.lines(proto))
    urls = [_fast(rsyslog.url(proto, fmt)) for fmt in FORMATS]
    events = make_events(20, proto) + make_events(5, f"{proto}-hostile", HOSTILE_NAME)
    with ForwarderSet.from_urls(urls, state_dir=tmp_path) as forwarders:
        forwarders.start()
        for event in events:
            forwarders.submit(event)
        assert forwarders.flush(20)
        stats = forwarders.stats()
    assert all(s["delivered"] == len(events) and s["queued"] == 0 for s in stats.values())
    lines = rsyslog.wait_lines(proto, before + len(events) * len(FORMATS))[before:]
    assert len(lines) == len(events) * len(FORMATS)  # one line per alert: nothing forged, nothing lost
    by_format: dict[str, list[str]] = {fmt: [] for fmt in FORMATS}
    for line in lines:
        text = line.decode()
        fmt = ("json" if " alert - {" in text else "rfc5424" if " alert [" in text else
               "cef" if "CEF:0|" in text else "leef" if "LEEF:2.0|" in text else "rfc3164")
        by_format[fmt].append(event_id_of(fmt, line))
    expected = [event["event"]["id"] for event in events]
    for fmt, ids in by_format.items():
        assert sorted(ids) == sorted(expected), fmt
        if proto != "udp":  # one TCP connection per forwarder: order is kept
            assert ids == expected, fmt


def test_hostile_json_message_is_exact(rsyslog: RsyslogServer, tmp_path: Path) -> None:
    before = len(rsyslog.lines("tcp"))
    events = make_events(3, "exact", HOSTILE_NAME)
    with ForwarderSet.from_urls([rsyslog.url("tcp", "rfc5424")], state_dir=tmp_path) as forwarders:
        forwarders.start()
        for event in events:
            forwarders.submit(event)
        assert forwarders.flush(20)
    lines = rsyslog.wait_lines("tcp", before + 3)[before:]
    messages = [parse_rfc5424(line.decode())[2] for line in lines]
    # The queue keeps the BOM as a one-byte stand-in; the wire must carry the real one (RFC 5424 6.4).
    assert all(message.startswith("\ufeff") for message in messages)
    assert all("\x01" not in message for message in messages)
    received = [json.loads(message.removeprefix("\ufeff")) for message in messages]
    assert received == events


def test_tls_verifies_the_receiver_certificate(rsyslog: RsyslogServer, tmp_path: Path) -> None:
    other_ca = make_test_ca(tmp_path / "other")
    url = f"syslog+tls://127.0.0.1:{rsyslog.ports['tls']}?ca={other_ca.ca_cert}&retry_initial=0.05&retry_max=0.2"
    with ForwarderSet.from_urls([url], state_dir=tmp_path / "q") as forwarders:
        forwarders.start()
        forwarders.submit(make_events(1, "badca")[0])
        assert not forwarders.flush(1.0)
        stats = forwarders.stats()[url]
    assert stats["delivered"] == 0 and stats["queued"] == 1
    assert "CERTIFICATE_VERIFY_FAILED" in stats["last_error"]
    insecure = url.replace(f"ca={other_ca.ca_cert}", "insecure=1")
    with ForwarderSet.from_urls([insecure], state_dir=tmp_path / "q2") as forwarders:
        forwarders.start()
        forwarders.submit(make_events(1, "insecure")[0])
        assert forwarders.flush(10)


def test_outage_backlog_drains_in_order(rsyslog: RsyslogServer, tmp_path: Path) -> None:
    url = _fast(rsyslog.url("tcp", "cef"))
    before = len(rsyslog.lines("tcp"))
    events = make_events(300, "outage")
    with ForwarderSet.from_urls([url], state_dir=tmp_path) as forwarders:
        forwarders.start()
        for event in events[:100]:
            forwarders.submit(event)
        assert forwarders.flush(20)
        rsyslog.stop()
        for event in events[100:]:
            forwarders.submit(event)
        assert not forwarders.flush(1.0)  # receiver down: nothing can drain
        stats = forwarders.stats()[url]
        assert stats["queued"] == 200 and stats["retries"] >= 1 and stats["state"] == "retrying"
        rsyslog.start()
        assert forwarders.flush(20)
    lines = rsyslog.wait_lines("tcp", before + 300)[before:]
    assert [event_id_of("cef", line) for line in lines] == [e["event"]["id"] for e in events]


KILLED_PRODUCER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from netwatch.forward import ForwarderSet
    url, state, events = sys.argv[1], Path(sys.argv[2]), json.loads(sys.stdin.read())
    forwarders = ForwarderSet.from_urls([url], state_dir=state)
    forwarders.start()
    for event in events:
        forwarders.submit(event)
    while any(s["pending_commit"] for s in forwarders.stats().values()):
        time.sleep(0.01)
    print("queued", flush=True)
    time.sleep(60)
""")


def test_sigkilled_producer_delivers_after_restart(rsyslog: RsyslogServer, tmp_path: Path) -> None:
    url = _fast(rsyslog.url("tls", "rfc5424"))
    before = len(rsyslog.lines("tls"))
    events = make_events(50, "sigkill")
    rsyslog.stop()  # nothing can be delivered before the kill
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    child = subprocess.Popen([sys.executable, "-c", KILLED_PRODUCER, url, str(tmp_path)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdin.write(json.dumps(events))
        child.stdin.close()
        assert child.stdout.readline().strip() == "queued"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    rsyslog.start()
    with ForwarderSet.from_urls([url], state_dir=tmp_path) as forwarders:
        assert forwarders.stats()[url]["queued"] == 50
        forwarders.start()
        assert forwarders.flush(20)
    lines = rsyslog.wait_lines("tls", before + 50)[before:]
    assert [event_id_of("rfc5424", line) for line in lines] == [e["event"]["id"] for e in events]


def test_bad_urls_are_refused(tmp_path: Path) -> None:
    for url, needle in [
        ("syslog+tcp://127.0.0.1", "missing port"),
        ("syslog+tcp://127.0.0.1:514?format=xml", "format must be"),
        ("syslog+tls://127.0.0.1:6514?ca=/nonexistent.pem", "does not exist"),
        ("syslog+udp://127.0.0.1:514?colour=red", "unknown option"),
        ("gopher://127.0.0.1:70", "unknown scheme"),
    ]:
        with pytest.raises(ForwardError, match=needle) as info:
            ForwarderSet.from_urls([url], state_dir=tmp_path)
        assert str(info.value).startswith(url.split("?")[0].split("//")[0])
