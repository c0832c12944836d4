"""Forwarders: a durable queue plus a delivery thread per target, and the set the CLI uses.

Each forwarder drains its own queue in order on its own thread, so a receiver that is down,
slow or answering 5xx/429 only delays itself: capture (`submit`) and the other forwarders
carry on. Failures are retried with exponential backoff and jitter; a Retry-After from the
receiver is honoured. An alert the receiver refuses for good goes to the forwarder's dead-letter
file before it leaves the queue (netwatch/forward/deadletter.py): none is ever just deleted.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netwatch.forward.deadletter import FILE_NAME as DEAD_LETTER_FILE
from netwatch.forward.deadletter import DeadLetterFile
from netwatch.forward.formats import event_json
from netwatch.forward.queue import DurableQueue, QueuedEvent, open_queue
from netwatch.forward.transports import Outcome, Transport, make_transport
from netwatch.forward.url import ForwardError, ForwardTarget, parse_forward_url

log = logging.getLogger("netwatch.forward")

COMMIT_INTERVAL = 0.05  # seconds between group commits of submitted events
COMMIT_EVERY = 2000  # ... or as soon as this many events are pending
LOG_EVERY = 10.0  # seconds between repeated warnings of one forwarder


def backoff_delay(failures: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half the capped exponential delay plus a random
    share of the other half, so a fleet of sensors does not retry in lock-step."""
    ceiling = min(maximum, initial * (2 ** min(failures - 1, 30)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class Forwarder:
    """One target: its queue, transport and delivery thread."""

    def __init__(self, target: ForwardTarget, queue: DurableQueue, transport: Transport,
                 dead_letter: DeadLetterFile | None = None) -> None:
        self.target = target
        self.queue = queue
        self.transport = transport
        self.name = target.display  # never the raw URL: it may carry a secret (see redact_url)
        self.dead_letter = dead_letter or DeadLetterFile(Path(queue.path).parent / DEAD_LETTER_FILE, self.name)
        self.last_delivery = time.monotonic()  # when the queue last moved (flush() watches for stalls)
        self.failures = 0  # consecutive failed attempts
        self.retry_initial = target.number("retry_initial", 0.5, minimum=0.001)
        self.retry_max = target.number("retry_max", 60.0, minimum=0.001)
        self.delivered = 0
        self.rejected = 0  # refused for good, kept in the dead-letter file
        self.lost = 0  # refused and not even the dead-letter file could take them
        self.retries = 0
        self.last_error: str | None = None
        self.state = "stopped"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self._batch = transport.max_batch
        self._last_warning = 0.0
        self._dropped_logged = 0

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self.state = "idle"
            self._thread = threading.Thread(target=self._run, name=f"netwatch-forward {self.target.kind}",
                                            daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.transport.abort()

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        self.state = "stopped"
        return True

    # -- delivery loop ------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                batch = self.queue.peek(self._batch)
                if not batch:
                    self.state = "idle"
                    self._wake.wait(0.25)
                    self._wake.clear()
                    continue
                self.state = "delivering" if failures == 0 else "retrying"
                try:
                    outcome = self.transport.send(batch)
                except Exception as exc:  # a bug in a formatter must not kill delivery
                    outcome = Outcome(error=f"internal error: {type(exc).__name__}: {exc}")
                self._settle(outcome, batch)
                if outcome.error is None:
                    if failures:
                        log.info("forwarder %s: delivering again after %d failed attempts", self.name, failures)
                    failures = self.failures = 0
                    self._batch = min(self.transport.max_batch, self._batch * 2)
                    continue
                if outcome.shrink and self._batch > 1:
                    self._batch = max(1, min(self._batch, len(batch)) // 2)
                    continue
                failures += 1
                self.failures = failures
                self.retries += 1
                self.state = "retrying"
                delay = backoff_delay(failures, self.retry_initial, self.retry_max, self._rng)
                if outcome.retry_after is not None:
                    delay = max(outcome.retry_after, 0.0) + self._rng.uniform(0, 0.1)
                self._warn(f"forwarder {self.name}: {outcome.error}; retry {failures} in {delay:.2f}s")
                self._stop.wait(delay)
        finally:
            self.transport.close()
            self.state = "stopped"

    def _settle(self, outcome: Outcome, batch: Sequence[QueuedEvent]) -> None:
        done = list(outcome.delivered)
        if outcome.rejected:
            refused = set(outcome.rejected)
            units = [item.text for item in batch if item.seq in refused]
            try:
                self.dead_letter.write(units, outcome.reason or "refused by the receiver")
            except OSError as exc:  # keep them queued: they are retried, and land here later
                outcome.error = outcome.error or f"cannot write dead-letter file {self.dead_letter.path}: {exc}"
                outcome.shrink = False
            else:
                done += outcome.rejected
                self.rejected += len(outcome.rejected)
                log.warning("forwarder %s: receiver refused %d alert(s) for good (%s); kept in %s",
                            self.name, len(outcome.rejected), outcome.reason, self.dead_letter.path)
        if done:
            self.queue.ack(done)
            self.last_delivery = time.monotonic()
        self.delivered += len(outcome.delivered)
        if outcome.error is not None:
            self.last_error = outcome.error

    def dead_letter_unformattable(self, event_text: str, exc: BaseException) -> None:
        """An alert this forwarder's format cannot render: its ECS JSON goes to the dead letters."""
        try:
            self.dead_letter.write([event_text], f"cannot format for {self.target.kind}: {type(exc).__name__}: {exc}")
        except OSError:
            log.exception("forwarder %s: cannot format an alert, nor write it to %s: it is lost",
                          self.name, self.dead_letter.path)
            self.lost += 1
            return
        self.rejected += 1
        log.exception("forwarder %s: cannot format an alert; kept in %s", self.name, self.dead_letter.path)

    @property
    def stalled(self) -> bool:
        """Failing (not just slow) and not moving."""
        return self.failures > 0 and len(self.queue) > 0

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= LOG_EVERY:
            self._last_warning = now
            log.warning("%s", message)

    def note_drops(self) -> None:
        """Log queue-full drops (rate-limited); they are always counted in stats()."""
        dropped = self.queue.dropped
        if dropped != self._dropped_logged:
            now = time.monotonic()
            if self._dropped_logged == 0 or now - self._last_warning >= LOG_EVERY:
                log.warning("forwarder %s: queue full (limit %d): dropped %d oldest alert(s) so far",
                            self.name, self.queue.limit, dropped)
                self._dropped_logged = dropped
                self._last_warning = now

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.target.kind,
            "queued": len(self.queue),
            "pending_commit": self.queue.pending,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "dead_letter_file": str(self.dead_letter.path),
            "lost": self.lost,
            "dropped_queue_full": self.queue.dropped,
            "retries": self.retries,
            "last_error": self.last_error,
            "state": self.state,
        }


class ForwarderSet:
    """All forwarders of one netwatch process (`--forward URL`, repeatable)."""

    def __init__(self, forwarders: Sequence[Forwarder]) -> None:
        self.forwarders = list(forwarders)
        self._commit_wake = threading.Event()
        self._stop = threading.Event()
        self._committer: threading.Thread | None = None
        self._commit_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_urls(cls, urls: Sequence[str], *, state_dir: Path, queue_limit: int = 100_000,
                  observer_hostname: str | None = None) -> ForwarderSet:
        """Parse and open every forwarder; raises ForwardError("URL: what is wrong")."""
        targets = [parse_forward_url(url) for url in urls]
        keys: dict[str, str] = {}
        for target in targets:
            key = target.queue_key()
            if key in keys:
                raise ForwardError(f"{target.display}: same target as {keys[key]}")
            keys[key] = target.display
        if queue_limit < 1:
            raise ForwardError(f"queue limit must be >= 1, got {queue_limit}")
        forwarders = []
        try:
            for target in targets:
                directory = Path(state_dir) / target.queue_key()
                try:
                    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                    queue = open_queue(directory / "queue.sqlite3", limit=queue_limit)
                except (OSError, sqlite3.Error) as exc:
                    raise ForwardError(f"{target.display}: cannot open queue in {directory}: {exc}") from None
                try:
                    transport = make_transport(target, observer_hostname)
                except (OSError, ValueError) as exc:
                    queue.close()
                    raise ForwardError(f"{target.display}: {exc}") from None
                forwarders.append(Forwarder(target, queue, transport))
        except BaseException:
            for forwarder in forwarders:
                forwarder.queue.close()
            raise
        return cls(forwarders)

    # -- producer -----------------------------------------------------------------------------
    def submit(self, event: dict) -> None:
        """Queue one alert on every forwarder. Never touches the network; the event reaches disk
        within COMMIT_INTERVAL seconds (or at once via commit()/flush()/close())."""
        text = event_json(event)
        crowded = False
        for forwarder in self.forwarders:
            try:
                unit = forwarder.transport.prepare(event, text)
            except Exception as exc:  # a formatter bug must never break capture
                forwarder.dead_letter_unformattable(text, exc)
                continue
            forwarder.queue.put(unit)
            crowded = crowded or forwarder.queue.pending >= COMMIT_EVERY
        if crowded:
            self._commit_wake.set()

    def commit(self) -> None:
        """Make every submitted event durable now."""
        with self._commit_lock:
            for forwarder in self.forwarders:
                if forwarder.queue.commit() or forwarder.queue.dropped:
                    forwarder.note_drops()
                forwarder.wake()

    def _commit_loop(self) -> None:
        while not self._stop.is_set():
            self._commit_wake.wait(COMMIT_INTERVAL)
            self._commit_wake.clear()
            try:
                self.commit()
            except Exception:  # disk full etc.: keep the events in memory, try again
                log.exception("forwarding queue commit failed; retrying")
                self._stop.wait(1.0)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._committer is None:
            self._committer = threading.Thread(target=self._commit_loop, name="netwatch-forward commit",
                                               daemon=True)
            self._committer.start()
        for forwarder in self.forwarders:
            forwarder.start()

    def flush(self, timeout: float, *, stall: float | None = None) -> bool:
        """Wait until every queue is drained (True) or `timeout` seconds passed (False). With
        `stall`, also give up once every forwarder with a backlog has been failing and has not
        moved for that many seconds (a receiver that refuses connections will not come back in
        the seconds a scan waits; the backlog stays queued for the next run)."""
        start = time.monotonic()
        deadline = start + timeout
        self.commit()
        while True:
            if all(len(f.queue) == 0 for f in self.forwarders):
                self.commit()  # the deliveries' acks, so a restart does not send them again
                return True
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return False
            if stall is not None and now - start >= stall and all(
                    f.stalled and now - f.last_delivery >= stall for f in self.forwarders if len(f.queue)):
                self.commit()
                return False
            time.sleep(min(0.01, remaining))
            if any(f.queue.pending for f in self.forwarders):
                self.commit()

    def undelivered(self) -> list[str]:
        """One line per forwarder that still holds alerts: how many, where, and the last error."""
        lines = []
        for forwarder in self.forwarders:
            count = len(forwarder.queue)
            if count:
                error = f" (last error: {forwarder.last_error})" if forwarder.last_error else ""
                lines.append(f"{count} alert(s) not delivered to {forwarder.name}{error}; "
                             f"queued in {Path(forwarder.queue.path).parent}")
        return lines

    def stats(self) -> dict[str, dict]:
        return {forwarder.name: forwarder.stats() for forwarder in self.forwarders}

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads; whatever was not delivered stays on disk for the next start."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._commit_wake.set()
        if self._committer is not None:
            self._committer.join(max(0.0, deadline - time.monotonic()))
        self.commit()
        for forwarder in self.forwarders:
            forwarder.stop()
        for forwarder in self.forwarders:
            stopped = forwarder.join(max(0.0, deadline - time.monotonic()))
            if stopped:
                with contextlib.suppress(Exception):
                    forwarder.queue.close()
            else:
                log.warning("forwarder %s did not stop within %.1fs", forwarder.name, timeout)
                forwarder.queue.commit()

    def __enter__(self) -> ForwarderSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
