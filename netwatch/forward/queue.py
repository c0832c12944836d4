"""Durable per-forwarder alert queue on SQLite (WAL).

`put()` only appends to memory, so the capture path never waits on disk or network;
`commit()` (called every few tens of milliseconds by the ForwarderSet, and on flush/close)
moves the pending events into SQLite in one transaction. With WAL and synchronous=NORMAL a
committed transaction survives SIGKILL of the process (it is in the WAL file); only an OS crash
or power loss can lose the last transactions before a checkpoint.

Delivery only ever sees committed events (durable before delivery). Rows are removed only
after `ack()`, i.e. after the receiver accepted them. `seq` is an AUTOINCREMENT key, so it
never goes backwards across restarts and the backlog drains in submit order. When the queue
holds more than `limit` events the oldest are deleted and counted (`dropped`): the policy is
drop-oldest, never silent.

Throughput (issue 5: >= 20,000 alerts/s with capture running): the delivery thread must not
touch SQLite in the steady state, because every sqlite3 call releases and re-takes the GIL
and shares the database with the commit transactions. So:

* Committed events are also kept in memory (`_ready`, up to CACHE_CHARS characters) and
  `peek()` serves them from there. When the cache would grow beyond that (a long outage) it is
  dropped and `peek()` reads from disk (one grouped SELECT per batch on its own connection)
  until the backlog is drained, then the cache takes over again.
* `ack()` only marks events as delivered in memory; the next `commit()` deletes them in its
  transaction. A crash in between (at most one commit interval) re-delivers those events
  after the restart: at-least-once, never lost.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("netwatch.forward")

# Upper bound of the in-memory copy of committed events, in characters (a str costs 1, 2 or
# 4 bytes per character; an RFC 5424 message with its BOM costs 2).
CACHE_CHARS = 16 * 1024 * 1024


class QueuedEvent(NamedTuple):
    seq: int
    text: str  # the wire unit of one event (Transport.prepare), e.g. a syslog message


# The oldest events as ONE row: sqlite3 releases and re-takes the GIL around every row it
# steps, and while the capture thread is busy each re-take can wait a full switch interval
# (5 ms), so reading a 500-row batch row by row took up to 0.4 s. Records are joined with
# RS (0x1e), seq and body with US (0x1f); units never hold raw control characters (every
# format escapes them), and a count mismatch falls back to row-by-row reading.
_RECORD_SEP, _FIELD_SEP = "\x1e", "\x1f"
_PEEK_GROUPED = ("SELECT group_concat(seq || char(31) || body, char(30)), count(*) "
                 "FROM (SELECT seq, body FROM events ORDER BY seq LIMIT ?)")
_PEEK_ROWS = "SELECT seq, body FROM events ORDER BY seq LIMIT ?"


def _queued(pair: tuple[int, str]) -> QueuedEvent:
    """QueuedEvent from (seq, text) without NamedTuple's Python-level __new__ (hot path)."""
    return tuple.__new__(QueuedEvent, pair)


def _split_grouped(blob: str, count: int) -> list[QueuedEvent] | None:
    """Parse `_PEEK_GROUPED`'s text; None when it does not hold exactly `count` records."""
    records = blob.split(_RECORD_SEP)
    if len(records) != count:
        return None
    events = []
    for record in records:
        seq, _, body = record.partition(_FIELD_SEP)
        events.append(_queued((int(seq), body)))
    events.sort(key=_seq_of)  # group_concat's order is not guaranteed; mostly sorted already
    return events


def _seq_of(event: QueuedEvent) -> int:
    return event.seq


def _runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sorted seqs as (first, last) runs of consecutive numbers: one DELETE per run."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


# Many rows per INSERT statement: sqlite3's executemany steps (and releases the GIL) once per
# row, and 2,000 rows took 10 s instead of 25 ms while the capture thread was busy.
_INSERT_ROWS_MAX = 1024


def _insert(db: sqlite3.Connection, batch: list[str]) -> int:
    """Insert `batch` in order (inside a transaction); returns the seq of its last row."""
    chunk = max(1, min(_INSERT_ROWS_MAX, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)))
    last_seq = 0
    for start in range(0, len(batch), chunk):
        rows = batch[start:start + chunk]
        last_seq = db.execute(_insert_statement(len(rows)), rows).lastrowid or 0
    return last_seq


@functools.lru_cache(maxsize=64)
def _insert_statement(rows: int) -> str:
    return "INSERT INTO events (body) VALUES " + ",".join(["(?)"] * rows)


# Big pages: a syslog unit is 0.5-2 KB, and with the default 4 KiB pages SQLite spent most of
# an insert splitting pages (measured: 10 us per RFC 5424 row at 4 KiB, 4 us at 32 KiB).
# Only takes effect when the queue file is created.
PAGE_SIZE = 32768


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout=10000")
    # Some SQLite builds default to secure_delete=ON, which rewrites every deleted row with
    # zeros: deleting delivered alerts then cost as much I/O as queueing them.
    db.execute("PRAGMA secure_delete=OFF")
    return db


class DurableQueue:
    """A FIFO of ready-to-send alert texts that survives restarts. Thread-safe: one producer
    (put), one committer (commit), one consumer (peek/ack)."""

    def __init__(self, path: Path, limit: int = 100_000, *, cache_chars: int = CACHE_CHARS) -> None:
        if limit < 1:
            raise ValueError("queue limit must be >= 1")
        self.path = path
        self.limit = limit
        self.cache_chars = cache_chars
        self.dropped = 0  # dropped by the size limit since this process opened the queue
        self._pending_lock = threading.Lock()
        self._pending: deque[str] = deque()
        self._committing = 0  # events taken from _pending whose transaction is not done yet
        self._write_lock = threading.Lock()  # the writer connection (commit)
        self._read_lock = threading.Lock()  # the reader connection (peek from disk)
        self._state_lock = threading.Lock()  # everything below
        self._db = _connect(path)
        try:
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            (verdict,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"damaged: {verdict}")
            self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                             "body TEXT NOT NULL)")
            self._reader = _connect(path)
            (stored,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        except BaseException:
            self._db.close()
            raise
        self._on_disk = stored  # rows in the table, including acked ones not deleted yet
        self._dropped_upto = 0  # every seq <= this was dropped by the size limit
        self._acked: set[int] = set()  # delivered, to be deleted by the next commit
        # The cache: when `_cached`, `_ready` holds every committed, unacked event in order.
        self._cached = stored == 0
        self._ready: deque[QueuedEvent] = deque()
        self._ready_chars = 0
        self._commits = 0
        self._closed = False

    # -- producer side ------------------------------------------------------------------------
    def put(self, text: str) -> int:
        """Queue one event in memory; returns how many old events this dropped (0 normally)."""
        with self._pending_lock:
            self._pending.append(text)
            if len(self._pending) > self.limit:
                self._pending.popleft()
                self.dropped += 1
                return 1
        return 0

    def commit(self) -> int:
        """Write pending events to disk, delete acked ones, apply the size limit. Returns events
        dropped by the limit."""
        with self._write_lock:
            if self._closed:  # close() committed what it could; the rest stays pending
                return 0
            with self._pending_lock:
                batch = list(self._pending)
                self._pending.clear()
                self._committing = len(batch)
            try:
                return self._commit(batch)
            except BaseException:
                with self._pending_lock:  # keep them: the next commit tries again
                    self._pending.extendleft(reversed(batch))
                raise
            finally:
                self._committing = 0

    def _commit(self, batch: list[str]) -> int:
        with self._state_lock:
            acked = sorted(self._acked)
        if not batch and not acked:
            return 0
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed = 0
            for first, last in _runs(acked):
                removed += db.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (first, last)).rowcount
            first_seq = 0
            if batch:
                last_seq = _insert(db, batch)
                # BEGIN IMMEDIATE excludes other writers, so AUTOINCREMENT numbered the rows
                # of this batch consecutively, ending at the last inserted rowid.
                first_seq = last_seq - len(batch) + 1
            on_disk = self._on_disk - removed + len(batch)
            cutoff = 0
            dropped = 0
            if on_disk > self.limit:  # acks that arrive meanwhile count from the next commit
                excess = on_disk - self.limit
                row = db.execute("SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (excess - 1,)).fetchone()
                if row is not None:
                    cutoff = row[0]
                    dropped = db.execute("DELETE FROM events WHERE seq <= ?", (cutoff,)).rowcount
                    on_disk -= dropped
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        with self._state_lock:
            self._on_disk = on_disk
            self._acked.difference_update(acked)
            self._commits += 1
            if cutoff:
                self._drop_upto(cutoff, dropped)
            if batch and self._cached:
                self._cache_append(first_seq, batch)
        return dropped

    def _drop_upto(self, cutoff: int, dropped: int) -> None:
        """State after the size limit deleted every row with seq <= cutoff (state lock held)."""
        self._dropped_upto = max(self._dropped_upto, cutoff)
        self.dropped += dropped
        stale = [seq for seq in self._acked if seq <= cutoff]
        self._acked.difference_update(stale)
        ready = self._ready
        while ready and ready[0].seq <= cutoff:
            self._ready_chars -= len(ready.popleft().text)

    def _cache_append(self, first_seq: int, batch: list[str]) -> None:
        """Add committed events to the cache, or give the cache up when it grows too big."""
        newest = self._ready[-1].seq if self._ready else 0
        skip = max(0, newest - first_seq + 1)  # a disk read may have loaded these already
        self._ready.extend(map(_queued, zip(itertools.count(first_seq + skip), batch[skip:])))
        self._ready_chars += sum(map(len, batch[skip:]))
        if self._ready_chars > self.cache_chars:
            self._cached = False
            self._ready.clear()
            self._ready_chars = 0

    # -- consumer side ------------------------------------------------------------------------
    def peek(self, limit: int) -> list[QueuedEvent]:
        """The oldest `limit` committed, unacked events, oldest first (not removed)."""
        with self._state_lock:
            if self._closed:
                return []
            if self._cached:
                return list(itertools.islice(self._ready, limit))
            skip = set(self._acked)
            commits = self._commits
        with self._read_lock:
            if self._closed:
                return []
            wanted = limit + len(skip)
            blob, count = self._reader.execute(_PEEK_GROUPED, (wanted,)).fetchone()
            rows = _split_grouped(blob, count) if count else []
            if rows is None:  # a unit holding the separator: read row by row
                rows = [QueuedEvent(seq, body) for seq, body in self._reader.execute(_PEEK_ROWS, (wanted,))]
        events = [event for event in rows if event.seq not in skip][:limit]
        if len(rows) < wanted:
            self._adopt(rows, commits)
        return events

    def _adopt(self, rows: list[QueuedEvent], commits: int) -> None:
        """`rows` is the whole table as of a read: unless a commit raced it, the cache can take
        over from here (commits after this point append to it)."""
        with self._state_lock:
            if self._cached or self._commits != commits or self._closed:
                return
            self._ready = deque(event for event in rows
                                if event.seq not in self._acked and event.seq > self._dropped_upto)
            self._ready_chars = sum(len(event.text) for event in self._ready)
            self._cached = self._ready_chars <= self.cache_chars
            if not self._cached:
                self._ready.clear()
                self._ready_chars = 0

    def ack(self, seqs: Iterable[int]) -> None:
        """Mark delivered (or permanently rejected) events; the next commit deletes them."""
        with self._state_lock:
            if self._closed:
                return
            acked = {seq for seq in seqs if seq > self._dropped_upto} - self._acked
            if not acked:
                return
            self._acked |= acked
            if not self._cached:
                return
            ready = self._ready
            removed = 0
            while ready and ready[0].seq in acked:
                self._ready_chars -= len(ready.popleft().text)
                removed += 1
            if removed != len(acked):  # not all at the head (e.g. _bulk partial failures)
                kept = deque(event for event in ready if event.seq not in acked)
                self._ready_chars = sum(len(event.text) for event in kept)
                self._ready = kept

    # -- introspection ------------------------------------------------------------------------
    @property
    def stored(self) -> int:
        """Committed events not delivered yet."""
        return self._on_disk - len(self._acked)

    @property
    def pending(self) -> int:
        """Events not committed yet (in memory, or in a commit that has not finished)."""
        return len(self._pending) + self._committing

    def __len__(self) -> int:
        return self.stored + self.pending

    def close(self) -> None:
        """Commit what is pending (and the acks) and close the database."""
        if self._closed:
            return
        self.commit()
        with self._write_lock, self._read_lock, self._state_lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._reader.close()


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Is this the file's fault (not a lock, a permission or an I/O error)?"""
    if not isinstance(exc, sqlite3.OperationalError):
        return True  # "file is not a database", "database disk image is malformed", quick_check
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def open_queue(path: Path, limit: int = 100_000) -> DurableQueue:
    """Open the queue at `path`. A damaged file (not SQLite, or failing SQLite's quick check) is
    renamed aside with its WAL, never deleted, and an empty queue is started in its place; the
    warning names both files. Other errors (permissions, locks, I/O) are raised."""
    try:
        return DurableQueue(path, limit=limit)
    except sqlite3.DatabaseError as exc:
        if not _damaged(exc):
            raise
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                os.replace(source, aside.with_name(aside.name + suffix))
        log.warning("forwarding queue %s is damaged (%s): moved to %s and started an empty queue; the "
                    "alerts it held are in that file (see docs/siem.md, damaged queue)", path, exc, aside)
        return DurableQueue(path, limit=limit)
