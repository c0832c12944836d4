"""Dead-letter file: where an alert goes that a receiver refused for good.

A receiver that says "this event is malformed" (HTTP 400 for that single event, a `_bulk` item
mapping error, a datagram too large for UDP) will refuse it again on every retry, so it cannot
stay at the head of the queue. It is not deleted either: it is appended, with the reason, to
`dead-letter.jsonl` beside the forwarder's queue, fsynced, before it leaves the queue. An
operator can read, fix and resend what is there (docs/siem.md, "Dead letters").
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from netwatch.outputs.ecs import rfc3339

FILE_NAME = "dead-letter.jsonl"


class DeadLetterFile:
    """Appends refused alerts as JSON lines: {"time", "forwarder", "reason", "unit"} where `unit`
    is exactly what was sent (the formatted syslog line, HEC event, _bulk lines or ECS JSON)."""

    def __init__(self, path: Path, forwarder: str) -> None:
        self.path = path
        self.forwarder = forwarder
        self.count = 0  # written by this process
        self._lock = threading.Lock()

    def write(self, units: Sequence[str], reason: str) -> None:
        """Append and fsync; raises OSError (then the caller keeps the alerts queued)."""
        if not units:
            return
        stamp = rfc3339(time.time())
        data = b"".join(orjson.dumps({"time": stamp, "forwarder": self.forwarder, "reason": reason, "unit": unit})
                        + b"\n" for unit in units)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # no half line left behind (e.g. disk full)
                    os.ftruncate(fd, start)
                raise
            finally:
                os.close(fd)
            self.count += len(units)
