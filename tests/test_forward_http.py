"""HEC, _bulk and webhook delivery against the local fake receiver (netwatch.forward.testing:
it implements the request/response semantics, it is not Splunk or Elasticsearch)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from netwatch.forward import ForwardError, ForwarderSet, parse_forward_url
from netwatch.forward.testing import FakeSiemReceiver, Fault, numbered_copies
from netwatch.forward.transports import retry_after_seconds

EXAMPLE = Path(__file__).resolve().parent / "data" / "event_example.json"
FAST = {"retry_initial": "0.02", "retry_max": "0.1"}


def make_events(count: int, prefix: str) -> list[dict]:
    return numbered_copies(json.loads(EXAMPLE.read_text()), count, prefix)


@pytest.fixture
def receiver():
    with FakeSiemReceiver(hec_token="s3cret-token") as fake:
        yield fake


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NW_TEST_HEC_TOKEN", "s3cret-token")
    return "NW_TEST_HEC_TOKEN"


def deliver(urls: list[str], events: list[dict], state: Path, timeout: float = 20) -> dict:
    with ForwarderSet.from_urls(urls, state_dir=state, observer_hostname="sensor-9") as forwarders:
        forwarders.start()
        for event in events:
            forwarders.submit(event)
        assert forwarders.flush(timeout)
        return forwarders.stats()


def test_hec_delivers_batches_with_token(receiver: FakeSiemReceiver, token_env: str, tmp_path: Path) -> None:
    events = make_events(120, "hec")
    url = receiver.url("hec+http", token_env=token_env, batch="50", **FAST)
    stats = deliver([url], events, tmp_path)
    assert stats[url]["delivered"] == 120
    assert [e["event"] for e in receiver.hec_events] == events
    assert {e["host"] for e in receiver.hec_events} == {"sensor-9"}
    assert all(e["sourcetype"] == "netwatch:alert" and e["time"] == 1767603603.25 for e in receiver.hec_events)
    assert all(r.headers["Content-Encoding"] == "gzip" for r in receiver.requests)
    assert max(r.body.count(b'"sourcetype"') for r in receiver.requests) == 50  # batched
    assert "s3cret-token" not in json.dumps(stats)


def test_hec_retries_503_and_429_honouring_retry_after(receiver: FakeSiemReceiver, token_env: str,
                                                       tmp_path: Path) -> None:
    receiver.faults.extend([Fault(503), Fault(503), Fault(429, retry_after="1")])
    events = make_events(10, "busy")
    url = receiver.url("hec+http", token_env=token_env, gzip="0", **FAST)
    stats = deliver([url], events, tmp_path)
    assert [e["event"] for e in receiver.hec_events] == events
    assert stats[url]["retries"] == 3
    times = [r.at for r in receiver.requests]
    assert times[3] - times[2] >= 1.0  # waited for Retry-After, not the 0.02..0.1 s backoff
    assert "Content-Encoding" not in receiver.requests[0].headers


def test_hec_wrong_token_keeps_alerts_queued(receiver: FakeSiemReceiver, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("NW_WRONG", "wrong-token")
    url = receiver.url("hec+http", token_env="NW_WRONG", **FAST)
    with ForwarderSet.from_urls([url], state_dir=tmp_path) as forwarders:
        forwarders.start()
        forwarders.submit(make_events(1, "auth")[0])
        assert not forwarders.flush(0.5)
        stats = forwarders.stats()[url]
    assert stats["queued"] == 1 and "403" in stats["last_error"] and "wrong-token" not in str(stats)
    receiver.hec_token = "wrong-token"  # the operator fixes the receiver side: the backlog drains
    stats = deliver([url], [], tmp_path)
    assert stats[url]["delivered"] == 1 and len(receiver.hec_events) == 1


def test_slow_receiver_times_out_and_alerts_still_arrive(receiver: FakeSiemReceiver, token_env: str,
                                                         tmp_path: Path) -> None:
    receiver.faults.append(Fault(status=503, delay=1.5))
    events = make_events(5, "slow")
    url = receiver.url("hec+http", token_env=token_env, timeout="0.3", **FAST)
    stats = deliver([url], events, tmp_path)
    assert "timed out" in (stats[url]["last_error"] or "")
    assert [e["event"] for e in receiver.hec_events] == events


def test_bulk_retries_only_failed_items(receiver: FakeSiemReceiver, tmp_path: Path) -> None:
    failing = {"nw-bulk-00003", "nw-bulk-00007"}
    attempts: dict[str, int] = {}

    def item_fault(doc: dict) -> int | None:
        doc_id = doc["event"]["id"]
        attempts[doc_id] = attempts.get(doc_id, 0) + 1
        if doc_id in failing and attempts[doc_id] == 1:
            return 429
        if doc_id == "nw-bulk-00005":
            return 400  # mapping error: refused for good
        return None

    receiver.item_fault = item_fault
    events = make_events(10, "bulk")
    url = receiver.url("elastic+http", "/alerts", gzip="0", **FAST)
    stats = deliver([url], events, tmp_path)
    first, second = receiver.requests[0], receiver.requests[1]
    assert first.path == "/alerts/_bulk" and second.path == "/alerts/_bulk"
    assert first.headers["Content-Type"] == "application/x-ndjson"
    resent = [json.loads(line)["event"]["id"] for line in second.body.splitlines()[1::2]]
    assert resent == sorted(failing)
    assert receiver.bulk_order == [e["event"]["id"] for e in events if e["event"]["id"] not in failing
                                   | {"nw-bulk-00005"}] + sorted(failing)
    assert stats[url]["delivered"] == 9 and stats[url]["rejected"] == 1 and stats[url]["queued"] == 0


def test_bulk_redelivery_is_not_a_duplicate(receiver: FakeSiemReceiver, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NW_ES_PW", "pw:with:colons")
    receiver.auth = "Basic " + base64.b64encode(b"elastic:pw:with:colons").decode()
    events = make_events(4, "dup")
    url = receiver.url("elastic+http", "", user="elastic", password_env="NW_ES_PW", **FAST)
    deliver([url], events, tmp_path / "a")
    stats = deliver([url], events, tmp_path / "b")  # same alerts again (e.g. after a crash)
    assert receiver.requests[0].path == "/_bulk"
    assert len(receiver.bulk_docs) == 4 and stats[url]["delivered"] == 4  # 409 counts as delivered
    action = json.loads(receiver.requests[0].body.splitlines()[0])
    assert action == {"create": {"_index": "netwatch-alerts", "_id": "nw-dup-00000"}}


def test_webhook_posts_json_arrays(receiver: FakeSiemReceiver, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hook-token\n")
    receiver.auth = "Bearer hook-token"
    events = make_events(7, "hook")
    url = receiver.url("http", "/hooks/netwatch", token_file=str(token_file), **FAST)
    deliver([url], events, tmp_path / "q")
    assert receiver.webhook_events == events
    assert receiver.requests[0].path == "/hooks/netwatch"


def test_submit_never_blocks_while_receiver_is_down(tmp_path: Path, token_env: str) -> None:
    events = make_events(300, "down")
    with FakeSiemReceiver(hec_token="s3cret-token") as fake:
        url = fake.url("hec+http", token_env=token_env, **FAST)
    # the receiver is gone now: connections are refused
    with ForwarderSet.from_urls([url], state_dir=tmp_path, queue_limit=200) as forwarders:
        forwarders.start()
        for event in events:
            forwarders.submit(event)
        forwarders.commit()
        stats = forwarders.stats()[url]
        assert stats["queued"] == 200 and stats["dropped_queue_full"] == 100
        assert stats["delivered"] == 0
    with ForwarderSet.from_urls([url], state_dir=tmp_path) as forwarders:
        queued = forwarders.stats()[url]["queued"]
    assert queued == 200  # survived close(); oldest 100 were dropped by policy, counted


def test_file_forwarder_rotates(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    path.parent.mkdir()
    events = make_events(50, "file")
    size = len(json.dumps(events[0], separators=(",", ":"), ensure_ascii=False)) + 1
    url = f"file://{path}?max_bytes={size * 15}&backups=2&batch=7"
    deliver([url], events, tmp_path / "q")
    files = [path.with_name("alerts.jsonl.2"), path.with_name("alerts.jsonl.1"), path]
    assert not path.with_name("alerts.jsonl.3").exists()
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert lines == events[-len(lines):] and len(lines) == 50 - 15  # the oldest file rotated away
    assert all(len(f.read_text().splitlines()) <= 15 for f in files)


def test_url_parsing_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NW_T", "abc")
    target = parse_forward_url("hec+https://splunk.example:8088?token_env=NW_T&index=sec")
    assert (target.kind, target.host, target.port, target.tls) == ("hec+https", "splunk.example", 8088, True)
    assert target.secret("token") == "abc"
    other = parse_forward_url("hec+https://splunk.example:8088?index=sec&token_file=/etc/hostname")
    assert target.queue_key() == other.queue_key()  # the secret's source is not part of the key
    assert parse_forward_url("elastic+https://es:9200/alerts").path == "alerts"
    assert parse_forward_url("https://hooks.example/x").port == 443
    for url, needle in [
        ("https://user:pw@hooks.example/x", "password in the URL is refused"),
        ("hec+https://splunk:8088", "needs \\?token_env"),
        ("hec+https://splunk:8088?token_env=NW_UNSET_VAR", "NW_UNSET_VAR is not set"),
        ("elastic+https://es:9200/a/b", "single index"),
        ("file://relative", "file:///ABSOLUTE"),
        ("https://hooks.example/x?insecure=maybe", "not a boolean"),
        ("syslog+tcp://h:1?retry_initial=-1", ">= 0.001"),
    ]:
        with pytest.raises(ForwardError, match=needle):
            parse_forward_url(url)
    with pytest.raises(ForwardError, match="same target"):
        ForwarderSet.from_urls(["syslog+udp://127.0.0.1:514", "syslog+udp://127.0.0.1:514"], state_dir=tmp_path)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
