"""Durable per-forwarder alert queue on SQLite (WAL).

`put()` only appends to memory, so the capture path never waits on disk or network;
`commit()` (called every few tens of milliseconds by the ForwarderSet, and on flush/close)
moves the pending events into SQLite in one transaction. With WAL and synchronous=NORMAL a
committed transaction survives SIGKILL of the process (it is in the WAL file); only an OS crash
or power loss can lose the last transactions before a checkpoint.

Rows are removed only by `ack()`, after the receiver accepted them. `seq` is an AUTOINCREMENT
key, so it never goes backwards across restarts and the backlog drains in submit order.
When the queue holds more than `limit` events the oldest are deleted and counted
(`dropped`): the policy is drop-oldest, never silent.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple


class QueuedEvent(NamedTuple):
    seq: int
    text: str  # the wire unit of one event (Transport.prepare), e.g. a syslog message


class DurableQueue:
    """A FIFO of ready-to-send alert texts that survives restarts. Thread-safe."""

    def __init__(self, path: Path, limit: int = 100_000) -> None:
        if limit < 1:
            raise ValueError("queue limit must be >= 1")
        self.path = path
        self.limit = limit
        self.dropped = 0  # dropped by the size limit since this process opened the queue
        self._db_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: deque[str] = deque()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "body TEXT NOT NULL)")
        (self._stored,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
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
        """Write pending events to disk; apply the size limit. Returns events dropped."""
        with self._pending_lock:
            if not self._pending:
                return 0
            batch = list(self._pending)
            self._pending.clear()
        with self._db_lock:
            if self._closed:
                with self._pending_lock:
                    self._pending.extendleft(reversed(batch))
                return 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (body) VALUES (?)", ((t,) for t in batch))
                self._stored += len(batch)
                excess = self._stored - self.limit
                if excess > 0:
                    cur = self._db.execute("DELETE FROM events WHERE seq IN "
                                           "(SELECT seq FROM events ORDER BY seq LIMIT ?)", (excess,))
                    excess = cur.rowcount
                    self._stored -= excess
                    self.dropped += excess
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                (self._stored,) = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
                raise
        return max(0, excess)

    # -- consumer side ------------------------------------------------------------------------
    def peek(self, limit: int) -> list[QueuedEvent]:
        """The oldest `limit` committed events, oldest first (not removed)."""
        with self._db_lock:
            if self._closed:
                return []
            rows = self._db.execute("SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [QueuedEvent(seq, body) for seq, body in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """Remove delivered (or permanently rejected) events."""
        seq_list = sorted(seqs)
        if not seq_list:
            return
        with self._db_lock:
            if self._closed:
                return
            if seq_list[-1] - seq_list[0] + 1 == len(seq_list):
                cur = self._db.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?",
                                       (seq_list[0], seq_list[-1]))
                removed = cur.rowcount
            else:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                for seq in seq_list:
                    removed += self._db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount
                self._db.execute("COMMIT")
            self._stored -= removed

    # -- introspection ------------------------------------------------------------------------
    @property
    def stored(self) -> int:
        return self._stored

    @property
    def pending(self) -> int:
        return len(self._pending)

    def __len__(self) -> int:
        return self._stored + len(self._pending)

    def close(self) -> None:
        """Commit what is pending and close the database."""
        self.commit()
        with self._db_lock:
            if not self._closed:
                self._closed = True
                self._db.close()
