"""Durable queue: order, at-least-once and drop-oldest across its memory cache and disk modes."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from netwatch.forward.formats import SYSLOG_FORMATS, SyslogFormatter, event_json, hec_event
from netwatch.forward.queue import PAGE_SIZE, DurableQueue
from netwatch.forward.testing import _hec_events


def drain(queue: DurableQueue, batch: int, *, commit_every: int = 1) -> list[str]:
    """Peek/ack until empty, committing (which applies acks) every `commit_every` batches."""
    seen: list[str] = []
    rounds = 0
    while True:
        events = queue.peek(batch)
        if not events:
            queue.commit()
            if not queue.peek(batch):
                return seen
            continue
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        seen += [e.text for e in events]
        queue.ack(e.seq for e in events)
        rounds += 1
        if rounds % commit_every == 0:
            queue.commit()


def put_all(queue: DurableQueue, texts: list[str]) -> None:
    for text in texts:
        queue.put(text)


def test_cache_overflow_falls_back_to_disk_and_back_in_order(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.sqlite3", cache_chars=2_000)
    first = [f"event {n:04d} " + "x" * 40 for n in range(300)]  # ~15 KB: beyond the cache
    put_all(queue, first)
    queue.commit()
    assert not queue._cached and len(queue) == 300
    half = queue.peek(150)
    queue.ack(e.seq for e in half)
    assert len(queue) == 150
    # Still reading from disk: acked rows (not deleted yet) must not come back.
    rest = queue.peek(1000)
    assert [e.text for e in rest] == first[150:]
    assert not queue._cached, "150 events are still more than the cache may hold"
    queue.ack(e.seq for e in rest)
    assert queue.peek(10) == []
    assert queue._cached, "a short disk read (the whole backlog) hands over to the cache"
    second = [f"later {n}" for n in range(20)]
    put_all(queue, second)
    queue.commit()
    assert [e.text for e in queue.peek(100)] == second
    assert drain(queue, 7) == second
    assert len(queue) == 0 and queue.stored == 0
    queue.close()
    reopened = DurableQueue(tmp_path / "q.sqlite3")
    assert len(reopened) == 0
    reopened.close()


def test_deliveries_interleaved_with_commits_keep_order_and_count(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.sqlite3", cache_chars=600)
    expected: list[str] = []
    delivered: list[str] = []
    for round_number in range(30):
        batch = [f"r{round_number}-{n}" for n in range(round_number % 7 * 9)]
        put_all(queue, batch)
        expected += batch
        queue.commit()
        events = queue.peek(11)
        delivered += [e.text for e in events]
        queue.ack(e.seq for e in events)
    delivered += drain(queue, 5, commit_every=3)
    assert delivered == expected
    queue.close()


def test_ack_is_durable_after_commit_and_redelivered_without(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    queue = DurableQueue(path)
    put_all(queue, ["a", "b", "c", "d"])
    queue.commit()
    events = queue.peek(2)
    queue.ack(e.seq for e in events)
    assert len(queue) == 2
    # Simulate a crash: another connection sees the database as it is on disk now.
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("SELECT body FROM events ORDER BY seq")] == ["a", "b", "c", "d"]
    queue.commit()  # applies the acks
    with sqlite3.connect(path) as other:
        assert [r[0] for r in other.execute("SELECT body FROM events ORDER BY seq")] == ["c", "d"]
    queue.close()
    reopened = DurableQueue(path)
    assert [e.text for e in reopened.peek(10)] == ["c", "d"]
    reopened.close()


def test_acks_out_of_order_leave_the_rest_in_order(tmp_path: Path) -> None:
    for cache_chars in (10_000, 1):  # memory cache, and disk mode
        queue = DurableQueue(tmp_path / f"q{cache_chars}.sqlite3", cache_chars=cache_chars)
        put_all(queue, [f"e{n}" for n in range(8)])
        queue.commit()
        events = queue.peek(5)
        queue.ack([events[0].seq, events[1].seq, events[3].seq])  # e2 and e4 failed: retried
        assert [e.text for e in queue.peek(10)] == ["e2", "e4", "e5", "e6", "e7"]
        queue.commit()
        assert [e.text for e in queue.peek(10)] == ["e2", "e4", "e5", "e6", "e7"]
        assert len(queue) == 5
        queue.close()


def test_size_limit_drops_oldest_and_counts(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.sqlite3", limit=10)
    put_all(queue, [f"e{n}" for n in range(6)])
    queue.commit()
    in_flight = queue.peek(3)  # e0..e2 are being sent while more arrive
    put_all(queue, [f"e{n}" for n in range(6, 16)])
    assert queue.commit() == 6
    assert queue.dropped == 6 and len(queue) == 10
    queue.ack(e.seq for e in in_flight)  # already dropped: must not be counted twice
    assert len(queue) == 10
    assert drain(queue, 4) == [f"e{n}" for n in range(6, 16)]
    queue.close()


def test_unit_holding_the_record_separator_is_read_exactly(tmp_path: Path) -> None:
    odd = ["plain", "with\x1erecord\x1fand unit separators", "end"]
    queue = DurableQueue(tmp_path / "q.sqlite3", cache_chars=1)  # force disk reads
    put_all(queue, odd)
    queue.commit()
    assert [e.text for e in queue.peek(10)] == odd
    queue.close()


def test_new_queue_uses_big_pages(tmp_path: Path) -> None:
    queue = DurableQueue(tmp_path / "q.sqlite3")
    queue.close()
    with sqlite3.connect(tmp_path / "q.sqlite3") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_large_batch_commits_in_order(tmp_path: Path) -> None:
    texts = [f"{n}:" + "é" * (n % 13) for n in range(9_000)]  # several INSERT chunks
    queue = DurableQueue(tmp_path / "q.sqlite3")
    put_all(queue, texts)
    queue.commit()
    queue.close()
    reopened = DurableQueue(tmp_path / "q.sqlite3")
    assert drain(reopened, 2_500) == texts
    reopened.close()


@pytest.mark.parametrize("stamp", [2 ** 70, -(2 ** 70), 1e300, math.inf, math.nan, "9999-12-31T23:59:59+00:00",
                                   "0001-01-01T00:00:00+01:00"])
def test_impossible_timestamps_do_not_break_formats(stamp: object) -> None:
    event = {"@timestamp": stamp, "event": {"id": "nw-1", "severity": math.inf},
             "observer": {"hostname": "sensor1"}}
    text = event_json(event)
    for fmt in SYSLOG_FORMATS:
        line = SyslogFormatter(fmt).message(event, text)
        assert "sensor1" in line and "\n" not in line
    assert json.loads(hec_event(event, text, host=None))["event"]["event"]["id"] == "nw-1"


def test_fake_hec_reads_concatenated_objects_like_splunk() -> None:
    assert _hec_events(b'{"event":1}\n{"event":2}\n') == [{"event": 1}, {"event": 2}]
    assert _hec_events(b'{"event":1}{"event":2} \r\n {"event":3}') == [{"event": 1}, {"event": 2}, {"event": 3}]
    assert _hec_events(b'{"event":1}\n{"event":') == 1
