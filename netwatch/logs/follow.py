"""`netwatch logs --follow`: tail growing and rotated logs like `tail -F`, as a long-running service.

Each followed file keeps an open handle, its inode and the byte offset after its last complete
line. When the name points to a new inode (the file was rotated), the old handle is read to its
end first, so the lines written just before the rotation are not lost; a file that shrank was
truncated and is read again from its start. The offsets are saved in the state database after
the alerts they caused, so a restart resumes where the last run stopped: the aggregation state
in the same database keeps it from alerting again on a (device, app) pair it already reported.

What happens to events is the sensor's: first-contact and reminder aggregation per (device, app)
(`netwatch.sensor.alerts`), the device and contact tables of its SQLite database
(`netwatch.sensor.state`, readable with `netwatch devices` and `netwatch health`), Prometheus
metrics (`netwatch.sensor.metrics`) and the forwarders.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from netwatch import __version__
from netwatch.logs.common import LogReader, ReadContext, read_printable
from netwatch.logs.engine import detect_format, make_reader, new_context
from netwatch.logs.source import iter_log_paths, open_log, read_chunks
from netwatch.model import Observation
from netwatch.pipeline import Pipeline, default_observer
from netwatch.sensor.alerts import AlertAggregator, annotate, event_key
from netwatch.sensor.logs import log, setup_logging
from netwatch.sensor.state import DeviceRecord, StateDB, StateError
from netwatch.sensor.worker import _DeviceTracker as DeviceTracker

DEFAULT_DB = Path.home() / ".local" / "state" / "netwatch" / "logs.db"
POSITIONS_KEY = "log_positions"
PERSIST_EVERY_S = 1.0
RESCAN_EVERY_S = 5.0
STATS_EVERY_S = 30.0
MAX_PENDING_ALERTS = 10_000
_ARCHIVE_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


@dataclass(slots=True)
class FollowOptions:
    inputs: list[str]
    input_format: str | None = None
    output: str | None = None
    db: str | None = None
    policy: str | None = None
    min_confidence: str | None = None
    emit_all: bool = False
    forward: list[str] = field(default_factory=list)
    forward_state_dir: str | None = None
    reminder_interval: float = 3600.0
    metrics_port: int = 0
    metrics_address: str = "127.0.0.1"
    poll_interval: float = 0.5


def is_archive(path: str) -> bool:
    """A rotated, closed file (compressed or numbered): read by `netwatch logs`, not followed."""
    name = os.path.basename(path)
    if name.endswith(_ARCHIVE_SUFFIXES):
        return True
    last = name.rsplit(".", 1)[-1]
    return last.isdigit() and "." in name


class TailedFile:
    """One followed file name and the handle currently open on it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None
        self.inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the open handle
        self.offset = 0
        self.lineno = 0
        self.format: str | None = None
        self.reader: LogReader | None = None

    def position(self) -> dict[str, Any]:
        return {"dev": self.inode[0] if self.inode else None, "inode": self.inode[1] if self.inode else None,
                "offset": self.offset, "line": self.lineno, "format": self.format}

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
        self.handle = None


class LogFollower:
    """The follow loop; `run()` returns the exit status."""

    def __init__(self, opts: FollowOptions, sigset: Any, logger: logging.Logger) -> None:
        self.opts = opts
        self.logger = logger
        self.pipeline = Pipeline(sigset, min_confidence=opts.min_confidence, emit_all=opts.emit_all,
                                 observer=default_observer("sensor"))
        self.ctx: ReadContext = new_context(self.pipeline)
        self.aggregator = AlertAggregator(reminder_interval=opts.reminder_interval)
        self.tracker = DeviceTracker()  # devices that changed in the inventory (DHCP names, new devices)
        self.files: dict[str, TailedFile] = {}
        self.saved: dict[str, dict[str, Any]] = {}
        self.devices: dict[str, DeviceRecord] = {}
        self.dirty_devices: set[str] = set()
        self.pending_alerts: deque[tuple[float, str, str, str, dict]] = deque(maxlen=MAX_PENDING_ALERTS)
        self.db: StateDB | None = None
        self.db_path = str(opts.db or DEFAULT_DB)
        self.output: IO[str] | None = None
        self.forwarders: Any = None
        self.totals: Counter[str] = Counter()
        self.detections: Counter[str] = Counter()
        self.alerts: Counter[tuple[str, str]] = Counter()
        self.started = time.time()
        self._stop = False
        self._last_error: dict[str, float] = {}

    # -- logging ---------------------------------------------------------------------------
    def info(self, msg: str, **fields: Any) -> None:
        log(self.logger, logging.INFO, msg, **fields)

    def error(self, msg: str, *, key: str, **fields: Any) -> None:
        """At most once a minute per key, so a full disk does not flood the journal."""
        now = time.monotonic()
        if now - self._last_error.get(key, -1e9) < 60.0:
            return
        self._last_error[key] = now
        log(self.logger, logging.ERROR, msg, **fields)

    # -- set-up ----------------------------------------------------------------------------
    def _open(self) -> int:
        try:
            self.db = StateDB(self.db_path)
        except StateError as exc:
            log(self.logger, logging.ERROR, "cannot open the state database", error=str(exc))
            return 2
        self.aggregator.contacts.update(self.db.load_contacts())
        self.devices.update(self.db.load_devices())
        self.saved = dict(self.db.get_meta(POSITIONS_KEY) or {})
        try:
            if self.opts.output and self.opts.output != "-":
                Path(self.opts.output).parent.mkdir(parents=True, exist_ok=True)
                self.output = open(self.opts.output, "a", encoding="utf-8")  # noqa: SIM115 - for the run
            else:
                self.output = sys.stdout
            if self.opts.forward:
                from netwatch.forward import ForwarderSet

                state_dir = Path(self.opts.forward_state_dir or (Path(self.db_path).parent / "forward"))
                self.forwarders = ForwarderSet.from_urls(self.opts.forward, state_dir=state_dir)
                self.forwarders.start()
        except Exception as exc:
            log(self.logger, logging.ERROR, "cannot open outputs", error=str(exc))
            return 2
        if self.opts.metrics_port:
            from netwatch.sensor.metrics import start_metrics_server

            try:
                start_metrics_server(self.opts.metrics_port, self.opts.metrics_address, self.snapshot)
            except OSError as exc:  # the port is taken, the address is not this host's
                log(self.logger, logging.ERROR, "cannot serve metrics", address=self.opts.metrics_address,
                    port=self.opts.metrics_port, error=exc.strerror or str(exc))
                return 2
        return 0

    # -- files -----------------------------------------------------------------------------
    def _discover(self) -> None:
        for path, _explicit in iter_log_paths(self.opts.inputs):
            if path not in self.files and not is_archive(path):
                self.files[path] = TailedFile(path)

    def _poll(self, tailed: TailedFile) -> None:
        try:
            stat = os.stat(tailed.path)
        except OSError:
            stat = None  # rotated away and not created again yet: finish the old handle
        if tailed.handle is None:
            if stat is None:
                return
            self._start(tailed, stat)
            if tailed.handle is None:
                return
        identity = (stat.st_dev, stat.st_ino) if stat is not None else None
        self._read(tailed)
        if identity is not None and identity != tailed.inode:
            self.info("log file rotated; reading the new file", file=tailed.path)
            self._read(tailed)  # whatever was written to the old file up to now
            tailed.close()
            tailed.offset = tailed.lineno = 0
            tailed.reader = None
            self._start(tailed, stat)  # type: ignore[arg-type]
            if tailed.handle is not None:
                self._read(tailed)
        elif stat is not None and stat.st_size < tailed.offset:
            self.info("log file truncated; reading it from the start", file=tailed.path)
            tailed.offset = tailed.lineno = 0
            tailed.reader = None
            self._prepare_reader(tailed)
            self._read(tailed)

    def _start(self, tailed: TailedFile, stat: os.stat_result) -> None:
        """Open the file, resuming at the saved position when it is the same file (same inode)."""
        saved = self.saved.pop(tailed.path, None)
        if saved and (saved.get("dev"), saved.get("inode")) != (stat.st_dev, stat.st_ino):
            self._finish_rotated_while_down(tailed.path, saved)
            saved = None
        try:
            handle = open_log(tailed.path)
        except OSError as exc:
            self.error("cannot open log file", key=f"open:{tailed.path}", file=tailed.path, error=str(exc))
            return
        tailed.handle, tailed.inode = handle, (stat.st_dev, stat.st_ino)
        tailed.offset = int(saved["offset"]) if saved else 0
        tailed.lineno = int(saved.get("line") or 0) if saved else 0
        tailed.format = (saved or {}).get("format") or tailed.format
        self._prepare_reader(tailed)

    def _prepare_reader(self, tailed: TailedFile) -> None:
        """Find the format (sniffed from the file's head) and a reader that knows the file's header."""
        if tailed.handle is None:
            return
        if tailed.format is None or tailed.reader is None:
            tailed.handle.seek(0)
            fmt = self.opts.input_format or tailed.format or detect_format(tailed.handle)  # type: ignore[arg-type]
            if fmt is None:
                return  # empty or not (yet) recognisable: try again on the next poll
            tailed.format = fmt
            tailed.reader = make_reader(fmt, tailed.path, self.ctx, default_ts=time.time())
            if tailed.offset and fmt == "zeek-tsv":  # resuming inside a Zeek file: read its header again
                tailed.handle.seek(0)
                head = tailed.handle.read(min(tailed.offset, 1 << 16)).decode("utf-8", "replace").split("\n")
                headers = [line for line in head if line.startswith("#")]
                tailed.reader.read(headers, 1, [])
            self.info("following log file", file=tailed.path, format=fmt, offset=tailed.offset)

    def _read(self, tailed: TailedFile) -> None:
        if tailed.handle is None:
            return
        if tailed.reader is None:
            self._prepare_reader(tailed)
            if tailed.reader is None:
                return
        try:
            tailed.handle.seek(tailed.offset)
            for lines, span in read_chunks(tailed.handle, final=False):
                self._feed(tailed, lines)
                tailed.offset += span
                tailed.lineno += len(lines)
                if self._stop:
                    break
        except (OSError, EOFError) as exc:
            self.error("cannot read log file", key=f"read:{tailed.path}", file=tailed.path, error=str(exc))

    def _feed(self, tailed: TailedFile, lines: list[str]) -> None:
        reader = tailed.reader
        assert reader is not None
        bad_before, records_before = reader.bad, reader.records
        reader.default_ts = time.time()  # a record without a readable time was written about now
        observations: list[Observation] = []
        read_printable(reader, lines, tailed.lineno + 1, observations)
        self.totals["lines"] += len(lines)
        self.totals["records"] += reader.records - records_before
        if reader.bad > bad_before:
            self.totals["malformed"] += reader.bad - bad_before
            lineno, sample = reader.bad_samples[-1] if reader.bad_samples else (0, "")
            self.error("log lines not readable", key=f"bad:{tailed.path}", file=tailed.path, format=tailed.format,
                       count=reader.bad, example_line=lineno, example=sample)
        if observations:
            self.pipeline.capture_file = tailed.path
            for event in self.pipeline.detect(observations):
                self._on_event(event, observations[0].ts)

    def _finish_rotated_while_down(self, path: str, saved: dict[str, Any]) -> None:
        """The file was rotated while netwatch was stopped: read the rest of the old one if it is still there."""
        directory = os.path.dirname(path) or "."
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                candidate = os.path.join(directory, name)
                stat = os.stat(candidate)
                if (stat.st_dev, stat.st_ino) == (saved.get("dev"), saved.get("inode")):
                    self.info("reading the rest of a file rotated while stopped", file=candidate,
                              offset=saved.get("offset"))
                    old = TailedFile(candidate)
                    old.format = saved.get("format")
                    self._start_at(old, stat, saved)
                    self._read(old)
                    old.close()
                    return
        self.error("a log file was rotated while stopped and its old part is gone (compressed or deleted); "
                   "lines written to it after the last run are not read", key=f"lost:{path}", file=path)

    def _start_at(self, tailed: TailedFile, stat: os.stat_result, saved: dict[str, Any]) -> None:
        tailed.handle = open_log(tailed.path)
        tailed.inode = (stat.st_dev, stat.st_ino)
        tailed.offset, tailed.lineno = int(saved.get("offset") or 0), int(saved.get("line") or 0)
        self._prepare_reader(tailed)

    # -- events (the sensor's aggregation, database and forwarding) --------------------------
    def _on_event(self, event: dict[str, Any], fallback_ts: float) -> None:
        ts = _event_ts(event, fallback_ts)
        key = event_key(event)
        nw = event.get("netwatch") or {}
        if key is not None:
            device = nw.get("device") or {}
            src = event.get("source") or {}
            self._merge_device({"id": key[0], "mac": (src.get("mac") or "").lower().replace("-", ":") or None,
                                "ips": [src["ip"]] if src.get("ip") else [], "hostname": device.get("hostname"),
                                "vendor": device.get("vendor"), "first_seen": ts, "last_seen": ts})
            self.detections[key[1]] += 1
        verdict = self.aggregator.offer(event, ts)
        if verdict.reason is None:
            return
        if verdict.contact is not None:
            out = annotate(event, verdict.reason, verdict.contact)
            self.alerts[(key[1], verdict.reason)] += 1  # type: ignore[index]
            self.pending_alerts.append((ts, key[0], key[1], verdict.reason, out))  # type: ignore[index]
        else:
            out = event
        self._emit(out)

    def _merge_device(self, dev: dict[str, Any]) -> None:
        record = self.devices.get(dev["id"])
        if record is None:
            first = float(dev.get("first_seen") or dev.get("last_seen") or time.time())
            record = self.devices[dev["id"]] = DeviceRecord(id=dev["id"], first_seen=first,
                                                            last_seen=float(dev.get("last_seen") or first))
            self.dirty_devices.add(dev["id"])
        if record.merge(dev):
            self.dirty_devices.add(dev["id"])

    def _emit(self, event: dict[str, Any]) -> None:
        from netwatch.outputs.jsonl import dumps_event

        if self.output is not None:
            try:
                self.output.write(dumps_event(event) + "\n")
                self.output.flush()
            except (OSError, ValueError) as exc:
                self.totals["output_errors"] += 1
                self.error("cannot write output", key="output", error=str(exc))
        if self.forwarders is not None and event["event"]["kind"] == "alert":
            try:
                self.forwarders.submit(event)
            except Exception as exc:
                self.totals["forward_errors"] += 1
                self.error("forwarder rejected an event", key="forward", error=str(exc))

    # -- persistence -----------------------------------------------------------------------
    def _persist(self) -> None:
        """Contacts, devices and alerts first, then the read positions (so a crash re-reads, never skips)."""
        if self.db is None:
            return
        for device in self.tracker.changed(self.pipeline.inventory):  # as the sensor's workers report them
            self._merge_device(device)
        contacts = self.aggregator.take_dirty()
        devices = [self.devices[d] for d in self.dirty_devices if d in self.devices]
        try:
            if contacts or devices or self.pending_alerts:
                self.db.write_batch(devices, contacts, list(self.pending_alerts))
            positions = {**self.saved, **{t.path: t.position() for t in self.files.values() if t.inode}}
            self.db.set_meta(POSITIONS_KEY, positions)
        except StateError as exc:
            self.totals["db_errors"] += 1
            self.aggregator.dirty.update((c.device_id, c.app) for c in contacts)
            self.error("cannot write the state database; keeping state in memory and retrying", key="db",
                       error=str(exc))
            return
        self.dirty_devices.clear()
        self.pending_alerts.clear()

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics, stats lines and the heartbeat (the sensor's snapshot shape)."""
        depth = 0
        if self.forwarders is not None:
            with contextlib.suppress(Exception):
                depth = sum(int(s.get("queued", 0)) for s in self.forwarders.stats().values())
        return {"totals": dict(self.totals), "detections": dict(self.detections), "alerts": dict(self.alerts),
                "queue_depth": depth, "workers_alive": 1, "files": len(self.files),
                "signature_version": self.pipeline.sigset.label, "signature_hash": ""}

    def _heartbeat(self, state: str) -> None:
        if self.db is None:
            return
        snap = self.snapshot()
        with contextlib.suppress(StateError):
            self.db.set_meta("heartbeat", {"state": state, "pid": os.getpid(), "ts": time.time(),
                                           "started": self.started, "interfaces": [], "workers": 1,
                                           "stats_interval": STATS_EVERY_S, "mode": "logs",
                                           "files": sorted(self.files),
                                           **{k: v for k, v in snap.items() if k != "alerts"}})

    # -- run -------------------------------------------------------------------------------
    def run(self) -> int:
        code = self._open()
        if code:
            return code
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        self._discover()
        if not self.files:
            log(self.logger, logging.ERROR, "no log files to follow", inputs=self.opts.inputs)
            self._close()
            return 2
        self.info("following logs", files=sorted(self.files), db=self.db_path, version=__version__,
                  signature_version=self.pipeline.sigset.label)
        self._heartbeat("running")
        next_persist = next_rescan = time.monotonic()
        next_stats = time.monotonic() + STATS_EVERY_S
        while not self._stop:
            for tailed in list(self.files.values()):
                self._poll(tailed)
                if self._stop:
                    break
            now = time.monotonic()
            if now >= next_persist:
                next_persist = now + PERSIST_EVERY_S
                self._persist()
            if now >= next_rescan:
                next_rescan = now + RESCAN_EVERY_S
                self._discover()
            if now >= next_stats:
                next_stats = now + STATS_EVERY_S
                self._heartbeat("running")
                self.info("statistics", **self.totals, devices=len(self.devices),
                          contacts=len(self.aggregator.contacts))
            if not self._stop:
                time.sleep(self.opts.poll_interval)
        self._close()
        return 0

    def _on_stop(self, _signum: int, _frame: Any) -> None:
        self._stop = True

    def _close(self) -> None:
        self.info("stopping")
        self._persist()
        self._heartbeat("stopped")
        for tailed in self.files.values():
            tailed.close()
        if self.forwarders is not None:
            with contextlib.suppress(Exception):
                self.forwarders.flush(5.0)
            self.forwarders.close()
        if self.output is not None and self.output is not sys.stdout:
            self.output.close()
        if self.db is not None:
            self.db.close()
        self.info("stopped", **self.totals)


def _event_ts(event: dict[str, Any], fallback: float) -> float:
    from netwatch.logs.common import iso_ts

    stamp = event.get("@timestamp")
    ts = iso_ts(stamp) if isinstance(stamp, str) else None
    return ts if ts is not None else fallback


def run_follow(opts: FollowOptions, sigset: Any) -> int:
    logger = setup_logging("json", "info")
    return LogFollower(opts, sigset, logger).run()
