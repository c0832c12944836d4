"""Forwarding never throws an alert away: what each receiver answer does, dead letters, UDP
refusals, damaged queues and secrets in messages.

HTTP receivers are the local fake (netwatch.forward.testing.FakeSiemReceiver: it speaks HEC's and
_bulk's request/response shapes; no Splunk or Elasticsearch can run here). UDP refusals use real
sockets on loopback.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netwatch.forward import ForwardError, ForwarderSet, parse_forward_url
from netwatch.forward.deadletter import FILE_NAME as DEAD_LETTER
from netwatch.forward.testing import FakeSiemReceiver, Fault, free_port, numbered_copies
from netwatch.forward.url import redact_url

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "tests" / "data" / "event_example.json"
FAST = {"retry_initial": "0.02", "retry_max": "0.1"}
TOKEN_ENV = "NW_TEST_HARDENING_TOKEN"


def make_events(count: int, prefix: str) -> list[dict]:
    return numbered_copies(json.loads(EXAMPLE.read_text()), count, prefix)


@pytest.fixture
def receiver():
    with FakeSiemReceiver(hec_token="hard-token") as fake:
        yield fake


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "hard-token")


def submit_and_flush(url: str, events: list[dict], state: Path, timeout: float) -> tuple[bool, dict]:
    with ForwarderSet.from_urls([url], state_dir=state) as forwarders:
        forwarders.start()
        for event in events:
            forwarders.submit(event)
        done = forwarders.flush(timeout)
        (stats,) = forwarders.stats().values()
    return done, stats


def dead_letters(state: Path) -> list[dict]:
    files = list(state.glob(f"*/{DEAD_LETTER}"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


def ids_in(body: bytes) -> list[str]:
    return [json.loads(line)["event"]["event"]["id"] for line in body.splitlines() if line.strip()]


# -- which answers keep alerts queued ----------------------------------------------------------
RETRIED = [301, 302, 303, 307, 308, 401, 403, 404, 405, 408, 409, 410, 411, 415, 425, 429, 431,
           500, 501, 502, 503, 504]


@pytest.mark.parametrize("kind,path,status", [("http", "/hook", status) for status in RETRIED]
                         + [("hec+http", "", status) for status in (302, 307, 401, 403, 404, 409, 429, 503)])
def test_answers_that_are_not_about_the_event_keep_it_queued(receiver: FakeSiemReceiver, tmp_path: Path,
                                                             kind: str, path: str, status: int) -> None:
    receiver.faults.extend(Fault(status, body={"text": "no", "code": 9},
                                 headers={"Location": "https://elsewhere.example/secret/path"})
                           for _ in range(1000))
    options = {"token_env": TOKEN_ENV} if kind.startswith("hec") else {}
    url = receiver.url(kind, path, **options, **FAST)
    done, stats = submit_and_flush(url, make_events(3, f"s{status}"), tmp_path, timeout=0.25)
    assert not done
    assert stats["queued"] == 3 and stats["rejected"] == 0 and stats["delivered"] == 0
    assert str(status) in stats["last_error"]
    if 300 <= status < 400:
        assert "not followed" in stats["last_error"] and "/secret/path" not in stats["last_error"]
    assert dead_letters(tmp_path) == []
    receiver.faults.clear()  # the receiver is fixed: the same queue drains
    done, stats = submit_and_flush(url, [], tmp_path, timeout=10)
    assert done and stats["delivered"] == 3


def test_hec_configuration_errors_in_a_400_are_retried(receiver: FakeSiemReceiver, tmp_path: Path) -> None:
    for code, text in [(7, "Incorrect index"), (10, "Data channel is missing"), (14, "ACK is disabled")]:
        receiver.faults.clear()
        receiver.faults.extend(Fault(400, body={"text": text, "code": code}) for _ in range(1000))
        url = receiver.url("hec+http", token_env=TOKEN_ENV, **FAST)
        done, stats = submit_and_flush(url, make_events(2, f"c{code}"), tmp_path / str(code), timeout=0.3)
        assert not done and stats["queued"] == 2 and stats["rejected"] == 0
        assert text in stats["last_error"]


def test_hec_invalid_event_number_refuses_only_that_event(receiver: FakeSiemReceiver, tmp_path: Path) -> None:
    receiver.faults.append(Fault(400, body={"text": "Invalid data format", "code": 6, "invalid-event-number": 2}))
    events = make_events(5, "inv")
    url = receiver.url("hec+http", token_env=TOKEN_ENV, gzip="0", **FAST)
    done, stats = submit_and_flush(url, events, tmp_path, timeout=10)
    assert done and stats["rejected"] == 1 and stats["delivered"] == 4
    # HEC took events 0 and 1 before it stopped at 2; only 3 and 4 are sent again
    assert ids_in(receiver.requests[1].body) == ["nw-inv-00003", "nw-inv-00004"]
    (letter,) = dead_letters(tmp_path)
    assert json.loads(letter["unit"])["event"]["event"]["id"] == "nw-inv-00002"
    assert "Invalid data format" in letter["reason"] and letter["forwarder"].startswith("hec+http://127.0.0.1:")


def test_single_event_refused_for_good_goes_to_the_dead_letter_file(receiver: FakeSiemReceiver,
                                                                    tmp_path: Path) -> None:
    receiver.faults.extend(Fault(400, body={"error": "bad event"}) for _ in range(3))
    events = make_events(2, "dead")
    url = receiver.url("http", "/hook", batch="2", **FAST)
    done, stats = submit_and_flush(url, events, tmp_path, timeout=10)
    # the batch of 2 is split, then each single event is refused once more: both are dead letters
    assert done and stats["rejected"] == 2 and stats["queued"] == 0
    letters = dead_letters(tmp_path)
    assert [json.loads(letter["unit"])["event"]["id"] for letter in letters] == ["nw-dead-00000", "nw-dead-00001"]
    assert all("HTTP 400" in letter["reason"] and letter["time"].endswith("Z") for letter in letters)
    path = next(tmp_path.glob(f"*/{DEAD_LETTER}"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert stats["dead_letter_file"] == str(path)


def test_alerts_stay_queued_when_the_dead_letter_file_cannot_be_written(receiver: FakeSiemReceiver,
                                                                        tmp_path: Path) -> None:
    url = receiver.url("http", "/hook", **FAST)
    target = parse_forward_url(url)
    (tmp_path / target.queue_key() / DEAD_LETTER).mkdir(parents=True)  # a directory: open() fails
    receiver.faults.extend(Fault(422, body={}) for _ in range(1000))
    done, stats = submit_and_flush(url, make_events(1, "nodl"), tmp_path, timeout=0.4)
    assert not done and stats["queued"] == 1 and stats["rejected"] == 0
    assert "dead-letter" in stats["last_error"]


def test_bulk_item_answers(receiver: FakeSiemReceiver, tmp_path: Path) -> None:
    attempts: dict[str, int] = {}

    def item_fault(doc: dict) -> int | None:
        doc_id = doc["event"]["id"]
        attempts[doc_id] = attempts.get(doc_id, 0) + 1
        if doc_id == "nw-item-00001":
            return 400  # mapper_parsing_exception in the fake: refused for good
        if attempts[doc_id] == 1 and doc_id in ("nw-item-00002", "nw-item-00003"):
            return 403 if doc_id.endswith("2") else 404  # read-only index, missing index: retried
        return None

    receiver.item_fault = item_fault
    events = make_events(4, "item")
    url = receiver.url("elastic+http", "/alerts", **FAST)
    done, stats = submit_and_flush(url, events, tmp_path, timeout=10)
    assert done and stats["delivered"] == 3 and stats["rejected"] == 1
    assert set(receiver.bulk_docs) == {"nw-item-00000", "nw-item-00002", "nw-item-00003"}
    (letter,) = dead_letters(tmp_path)
    assert "mapper_parsing_exception" in letter["reason"]


# -- the scan's view: a redirecting collector ---------------------------------------------------
def test_scan_against_a_redirecting_collector_loses_nothing(receiver: FakeSiemReceiver, tmp_path: Path) -> None:
    receiver.faults.extend(Fault(302, body={}, headers={"Location": "https://sso.example/login"})
                           for _ in range(10_000))
    url = receiver.url("hec+http", token_env=TOKEN_ENV, **FAST)
    env = {"PATH": "/usr/bin:/bin", TOKEN_ENV: "hard-token"}

    def scan() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "--format",
                               "jsonl", "--forward", url, "--forward-state", str(tmp_path), "--forward-timeout", "20"],
                              capture_output=True, cwd=REPO, timeout=120, env=env)

    first = scan()
    alerts = [e for e in map(json.loads, first.stdout.decode().splitlines()) if e["event"]["kind"] == "alert"]
    assert first.returncode == 1 and len(alerts) == 16
    stderr = first.stderr.decode()
    assert "16 alert(s) not delivered" in stderr and "HTTP 302" in stderr, stderr
    assert dead_letters(tmp_path) == []
    receiver.faults.clear()
    second = scan()  # the same 16 alerts again, plus the 16 queued ones: both delivered
    assert second.returncode == 1 and "not delivered" not in second.stderr.decode()
    delivered = [e["event"]["event"]["id"] for e in receiver.hec_events]
    assert sorted(set(delivered)) == sorted(e["event"]["id"] for e in alerts) and len(delivered) == 32


# -- syslog over UDP: refused datagrams ---------------------------------------------------------
def test_udp_refused_by_the_receiver_keeps_alerts_queued(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    url = f"syslog+udp://127.0.0.1:{port}?format=json&retry_initial=0.02&retry_max=0.1"
    events = make_events(3, "udp")
    done, stats = submit_and_flush(url, events, tmp_path, timeout=0.5)
    assert not done and stats["queued"] == 3 and stats["delivered"] == 0
    assert "Connection refused" in stats["last_error"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", port))
        listener.settimeout(5)
        done, stats = submit_and_flush(url, [], tmp_path, timeout=5)
        received = [listener.recv(65536) for _ in range(3)]
    assert done and stats["delivered"] == 3
    assert [json.loads(d[d.index(b"{"):])["event"]["id"] for d in received] == [e["event"]["id"] for e in events]


def test_scan_with_nobody_listening_on_udp_ends_soon_and_says_so(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "--format", "jsonl",
                           "--forward", f"syslog+udp://127.0.0.1:{port}", "--forward-state", str(tmp_path)],
                          capture_output=True, cwd=REPO, timeout=120)
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode()
    assert proc.returncode == 1
    assert "16 alert(s) not delivered" in stderr and "Connection refused" in stderr, stderr
    assert elapsed < 25  # gives up on a refusing receiver instead of waiting out --forward-timeout (30 s)


# -- damaged queue --------------------------------------------------------------------------------
def test_damaged_queue_is_moved_aside_and_a_new_one_started(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"file://{tmp_path / 'out.jsonl'}"
    directory = tmp_path / "state" / parse_forward_url(url).queue_key()
    directory.mkdir(parents=True)
    garbage = b"this is not an SQLite database\n" * 200
    (directory / "queue.sqlite3").write_bytes(garbage)
    with caplog.at_level(logging.WARNING, logger="netwatch.forward"):
        done, stats = submit_and_flush(url, make_events(2, "dmg"), tmp_path / "state", timeout=5)
    assert done and stats["delivered"] == 2
    (aside,) = directory.glob("queue.sqlite3.damaged-*")
    assert aside.read_bytes() == garbage  # kept, never deleted
    assert any(str(aside) in record.getMessage() for record in caplog.records)


def test_damaged_queue_pages_are_detected(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'out.jsonl'}"
    state = tmp_path / "state"
    with ForwarderSet.from_urls([url], state_dir=state) as forwarders:  # not started: alerts stay queued
        for event in make_events(300, "pg"):
            forwarders.submit(event)
        forwarders.commit()
    directory = state / parse_forward_url(url).queue_key()
    queue_file = directory / "queue.sqlite3"
    with sqlite3.connect(queue_file) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(queue_file.read_bytes())
    page = 32768  # the queue's page size: scribble over the header of the second b-tree page
    data[page:page + 12] = b"\xff" * 12
    queue_file.write_bytes(bytes(data))
    done, stats = submit_and_flush(url, make_events(1, "after"), state, timeout=5)
    assert done and stats["delivered"] == 1
    assert list(directory.glob("queue.sqlite3.damaged-*"))


def test_scan_with_a_damaged_queue_does_not_crash(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'out.jsonl'}"
    directory = tmp_path / "state" / parse_forward_url(url).queue_key()
    directory.mkdir(parents=True)
    (directory / "queue.sqlite3").write_bytes(b"\x00garbage" * 1000)
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "--format", "jsonl",
                           "--forward", url, "--forward-state", str(tmp_path / "state")],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode() and "damaged" in proc.stderr.decode()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 16


# -- secrets never reach messages ------------------------------------------------------------------
def test_unknown_option_values_are_masked_in_errors() -> None:
    with pytest.raises(ForwardError) as info:
        parse_forward_url("hec+https://splunk.example:8088?token=SUPERSECRET&index=sec")
    message = str(info.value)
    assert "SUPERSECRET" not in message and "token=***" in message and "unknown option" in message
    with pytest.raises(ForwardError) as info:
        parse_forward_url("https://apikey@hooks.example/services/T0/B0/XSECRETX?retry_max=zz")
    assert "XSECRETX" not in str(info.value) and "apikey" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("https://hooks.example/services/T0/B0/XSECRETX") == "https://hooks.example/services/***"
    assert redact_url("http://h:8080/abcdefsecret") == "http://h:8080/***"
    assert redact_url("elastic+https://es:9200/alerts?api_key_env=ES_KEY") == "elastic+https://es:9200/alerts?api_key_env=ES_KEY"
    assert redact_url("syslog+tls://[::1]:6514?format=cef&tokn=x") == "syslog+tls://[::1]:6514?format=cef&tokn=***"


def test_webhook_path_secret_is_not_logged(receiver: FakeSiemReceiver, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    receiver.faults.extend(Fault(503) for _ in range(1000))
    url = receiver.url("http", "/services/T0/B0/XSECRETX", **FAST)
    with caplog.at_level(logging.INFO, logger="netwatch.forward"), \
            ForwarderSet.from_urls([url], state_dir=tmp_path) as forwarders:
        forwarders.start()
        forwarders.submit(make_events(1, "sec")[0])
        forwarders.flush(0.5)
        stats = forwarders.stats()
        lines = forwarders.undelivered()
    text = caplog.text + json.dumps(stats) + "\n".join(lines)
    assert "XSECRETX" not in text and "/services/***" in text


# -- event times outside 1970..9999: one rule for every format ------------------------------------
def pcapng_with_offset(source: Path, offset_seconds: int) -> bytes:
    """`source` (a little-endian microsecond pcap) as pcapng whose interface has if_tsoffset."""
    import struct

    raw = source.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    linktype = struct.unpack_from("<I", raw, 20)[0]

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", linktype, 0, 65535) + struct.pack("<HHq", 14, 8, offset_seconds)
                 + struct.pack("<HH", 0, 0))]
    pos = 24
    while pos + 16 <= len(raw):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", raw, pos)
        data = raw[pos + 16:pos + 16 + caplen]
        micros = sec * 1_000_000 + usec
        out.append(block(6, struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, caplen, origlen) + data))
        pos += 16 + caplen
    return b"".join(out)


def test_times_before_1970_are_clamped_the_same_in_every_format(tmp_path: Path) -> None:
    from netwatch.forward.formats import SyslogFormatter, event_json

    capture = tmp_path / "year67.pcapng"
    capture.write_bytes(pcapng_with_offset(REPO / "pcaps" / "office-lan.pcap", -(1767603600 + 60_500_000_000)))
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", str(capture), "--format", "jsonl"],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()
    assert "had a time outside 1970..9999" in proc.stderr.decode()
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len([e for e in events if e["event"]["kind"] == "alert"]) == 16
    assert {e["@timestamp"] for e in events} == {"1970-01-01T00:00:00.000000Z"}
    alert = next(e for e in events if e["event"]["kind"] == "alert")
    text = event_json(alert)
    expected = {"rfc5424": "1970-01-01T00:00:00.000000Z", "rfc3164": "Jan  1 00:00:00", "cef": "rt=0 ",
                "leef": "devTime=Jan 01 1970 00:00:00.000 UTC"}
    for fmt, stamp in expected.items():
        message = SyslogFormatter(fmt).message(alert, text)
        assert stamp in message, (fmt, message[:200])


def test_foreign_event_times_are_clamped_not_replaced_by_now() -> None:
    from netwatch.forward.formats import SyslogFormatter, event_epoch
    from netwatch.outputs.ecs import EVENT_TIME_MAX

    assert event_epoch({"@timestamp": "0067-08-25T10:00:00Z"}) == 0.0
    assert event_epoch({"@timestamp": -5e12}) == 0.0
    assert event_epoch({"@timestamp": 1e300}) == EVENT_TIME_MAX
    header = SyslogFormatter("rfc5424").message({"@timestamp": "0067-08-25T10:00:00.000000Z"}, "{}")
    assert "1970-01-01T00:00:00.000000Z" in header


def test_sensor_forward_events_choice_is_validated() -> None:
    from netwatch.sensor.config import ConfigError, SensorConfig

    SensorConfig(interfaces=["eth0"], forward_events="all").validate()
    with pytest.raises(ConfigError, match="forward_events must be one of alerts, all"):
        SensorConfig(interfaces=["eth0"], forward_events="notices").validate()


def test_file_forwarder_into_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/missing/dir/alerts.jsonl"
    with pytest.raises(ForwardError, match="missing/dir does not exist"):
        ForwarderSet.from_urls([url], state_dir=tmp_path / "state")
    assert not (tmp_path / "missing").exists()
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "--format", "jsonl",
                           "--forward", url, "--forward-state-dir", str(tmp_path / "state")],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr.decode()
    assert not (tmp_path / "missing").exists()
