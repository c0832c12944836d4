"""The sensor daemon: capture workers in, one event stream, one inventory and one database out.

The parent process owns everything with side effects (outputs, forwarders, database,
evidence pcaps, metrics, signals); workers only capture and run the pipeline. That keeps the
merge trivial (one aggregator, one writer) and lets a crashed worker be restarted alone.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import IO, Any

from netwatch import __version__
from netwatch.detect.engine import KIND_ALERT
from netwatch.sensor.alerts import REASON_FIRST, REASON_REMINDER, AlertAggregator, annotate, event_key
from netwatch.sensor.config import ConfigError, SensorConfig, build_config
from netwatch.sensor.logs import log
from netwatch.sensor.state import DeviceRecord, StateDB, StateError, StateRefused
from netwatch.sensor.worker import WorkerSpec, load_sigset, run_worker
from netwatch.signatures.store import UpdateWatch

HOUSEKEEPING_S = 1.0
PRUNE_EVERY_S = 3600.0
DB_RETRY_S = 30.0
ERROR_LOG_EVERY_S = 60.0
MAX_PENDING_ALERTS = 10_000  # alert history rows kept in memory while the database is unwritable
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 4.0  # workers get this long to flush after SIGTERM, then they are killed
STOP_DRAIN_S = 1.5  # what killed workers had already queued is read for at most this long
PUMP_SLICE_S = 0.2  # the main loop reads messages for at most this long before housekeeping
WORKER_RESTART_S = 2.0
CONTACTS_PER_DEVICE = 4  # the contact table's cap is this many per remembered device
PRIVATE_UMASK = 0o027  # files the sensor creates: at most 0640, directories 0750 (as the unit's UMask)


class StartupError(Exception):
    """The sensor cannot start (message says why); reported before any worker runs, exit 2."""


def _ecs_mac_to_colon(mac: str | None) -> str | None:
    return mac.lower().replace("-", ":") if mac else None


class _Worker:
    def __init__(self, spec: WorkerSpec, process: Any, ctrl: Any) -> None:
        self.spec, self.process, self.ctrl = spec, process, ctrl
        self.ready = False
        self.stats: dict[str, Any] = {}
        self.counters: dict[str, Any] = {}
        self.finished = False
        self.restart_at = 0.0


class Sensor:
    """Run with `Sensor(cfg, config_path, cli_overrides, logger).run()`; returns an exit code."""

    def __init__(self, cfg: SensorConfig, config_path: str | None, cli_overrides: dict[str, Any],
                 logger: logging.Logger) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.cli_overrides = cli_overrides
        self.logger = logger
        self.hostname = cfg.sensor_name or socket.gethostname()
        self.ctx = mp.get_context("spawn")  # no fork of a process that has threads (metrics, forwarders)
        self.events_q: Any = None
        self.stop_event: Any = None
        self.workers: list[_Worker] = []
        self.aggregator = AlertAggregator(reminder_interval=cfg.reminder_interval,
                                          max_contacts=CONTACTS_PER_DEVICE * cfg.max_devices)
        self.devices: OrderedDict[str, DeviceRecord] = OrderedDict()  # least recently seen first
        self.dirty_devices: set[str] = set()
        self.forget_devices: set[str] = set()  # evicted from memory; deleted from the database next flush
        self.pending_alerts: deque[tuple[float, str, str, str, dict]] = deque(maxlen=MAX_PENDING_ALERTS)
        self.db: StateDB | None = None
        self.output: IO[str] | None = None
        self.forwarders: Any = None
        self.evidence: Any = None
        self.signature_version = ""
        self.signature_hash = ""
        self.totals: Counter[str] = Counter()
        self.retired: Counter[str] = Counter()  # counters of workers that ended (restarts)
        self.detections: Counter[str] = Counter()
        self.alerts: Counter[tuple[str, str]] = Counter()
        self.started = time.time()
        self._stop = False
        self._hup = False
        self._last_error_log: dict[str, float] = {}
        self._last_drops = 0
        self._signature_updates = UpdateWatch()  # `netwatch signatures update` landing a new set

    # -- logging helpers -----------------------------------------------------------
    def info(self, msg: str, **fields: Any) -> None:
        log(self.logger, logging.INFO, msg, **fields)

    def error(self, msg: str, *, key: str | None = None, **fields: Any) -> None:
        """Loud, but at most once a minute per `key` so a full disk does not flood the journal."""
        now = time.monotonic()
        if key is not None:
            if now - self._last_error_log.get(key, -1e9) < ERROR_LOG_EVERY_S:
                return
            self._last_error_log[key] = now
        log(self.logger, logging.ERROR, msg, **fields)

    # -- setup ---------------------------------------------------------------------
    def _open_db(self, *, starting: bool = False) -> None:
        """Open (or re-try) the database. At start a refusal (another sensor holds it, a symlink)
        is fatal; an unwritable disk is not: capture goes on and the open is retried."""
        try:
            self.db = StateDB(self.cfg.db, follow_symlink=self.cfg.follow_db_symlink)
        except StateRefused as exc:
            self.db = None
            if starting:
                raise StartupError(str(exc)) from exc
            self.error("state database refused; capture continues without persistence", key="db_open",
                       error=str(exc), db=self.cfg.db)
            return
        except StateError as exc:
            self.db = None
            self.totals["db_errors"] += 1
            self.error("state database unavailable; capture continues without persistence",
                       key="db_open", error=str(exc), db=self.cfg.db)
            return
        if not self.aggregator.contacts:
            try:
                trimmed = self.db.trim(self.cfg.max_devices, self.aggregator.max_contacts)
                self.aggregator.load(self.db.load_contacts())
                self._remember_devices(self.db.load_devices())
            except StateError as exc:
                self.error("cannot read the state database", error=str(exc), db=self.cfg.db)
                return
            self.info("state loaded", db=self.cfg.db, devices=len(self.devices),
                      contacts=len(self.aggregator.contacts), trimmed_rows=trimmed)

    def _remember_devices(self, records: dict[str, DeviceRecord]) -> None:
        for dev_id, record in records.items():
            self.devices[dev_id] = record
            self.devices.move_to_end(dev_id)
            self._evict_devices()

    def _evict_devices(self) -> None:
        """Keep at most max_devices, dropping the least recently seen (memory and database)."""
        while len(self.devices) > self.cfg.max_devices:
            dev_id, _ = self.devices.popitem(last=False)
            self.dirty_devices.discard(dev_id)
            self.forget_devices.add(dev_id)
            self.totals["devices_evicted"] += 1

    def _open_output(self) -> None:
        if self.cfg.output in ("", None):
            return
        if self.cfg.output == "-":
            self.output = sys.stdout
            return
        path = Path(self.cfg.output)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.output = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the daemon's life
        except OSError as exc:
            raise StartupError(f"cannot open the output {path}: {exc.strerror or exc}") from exc

    def _open_forwarders(self) -> None:
        if not self.cfg.forward:
            return
        from netwatch.forward import ForwarderSet

        state_dir = Path(self.cfg.forward_state_dir or (Path(self.cfg.db).parent / "forward"))
        try:
            self.forwarders = ForwarderSet.from_urls(self.cfg.forward, state_dir=state_dir,
                                                     observer_hostname=self.hostname)
            self.forwarders.start()
        except Exception as exc:
            named = str(state_dir) in str(exc)
            raise StartupError(f"cannot open the forwarder queues{'' if named else ' in ' + str(state_dir)}: "
                               f"{exc}") from exc

    def _check_interfaces(self) -> None:
        """Open each interface once in the parent: 'no such device', a missing capability or a bad
        BPF filter is one clear error before any worker starts."""
        from netwatch.capture.live import LiveCaptureError, LiveOptions, check_interface

        for interface in self.cfg.interfaces:
            try:
                check_interface(LiveOptions(interface=interface, snaplen=self.cfg.snaplen, promisc=self.cfg.promisc,
                                            timeout_ms=self.cfg.timeout_ms, bpf=self.cfg.bpf))
            except LiveCaptureError as exc:
                raise StartupError(f"cannot capture on {exc}") from exc
            except ImportError as exc:
                raise StartupError(f"live capture needs pcapy-ng and libpcap: {exc}") from exc

    def _start_metrics(self) -> None:
        if not self.cfg.metrics_port:
            return
        from netwatch.sensor.metrics import start_metrics_server

        try:
            start_metrics_server(self.cfg.metrics_port, self.cfg.metrics_address, self.snapshot)
        except OSError as exc:
            raise StartupError(f"cannot serve metrics on {self.cfg.metrics_address}:{self.cfg.metrics_port}: "
                               f"{exc.strerror or exc}") from exc
        self.info("metrics endpoint listening", address=self.cfg.metrics_address, port=self.cfg.metrics_port)

    def _open_evidence(self) -> None:
        if not self.cfg.evidence_dir:
            return
        from netwatch.sensor.evidence import EvidenceRing

        try:
            self.evidence = EvidenceRing(self.cfg.evidence_dir, max_bytes=int(self.cfg.evidence_max_mb * 2**20),
                                         max_files=self.cfg.evidence_files)
        except OSError as exc:
            self.error("evidence capture disabled: cannot create its directory", error=str(exc),
                       dir=self.cfg.evidence_dir)

    def _observer(self) -> dict[str, Any]:
        return {"type": "sensor", "vendor": "netwatch", "product": "netwatch", "version": __version__,
                "hostname": self.hostname}

    def _spec(self, index: int, interface: str, group: int | None) -> WorkerSpec:
        c = self.cfg
        return WorkerSpec(
            index=index, interface=interface, fanout_group=group, snaplen=c.snaplen, promisc=c.promisc,
            buffer_size=c.buffer_size_mb * 2**20, timeout_ms=c.timeout_ms, bpf=c.bpf, batch_size=c.batch_size,
            max_flows=c.max_flows, head_packets=c.head_packets, head_bytes=c.head_bytes,
            idle_timeout=c.idle_timeout, signatures=list(c.signatures), policy=c.policy,
            min_confidence=c.min_confidence, emit_all=c.emit_all, observer=self._observer(),
            evidence=bool(self.evidence), parent_pid=os.getpid(), max_devices=c.max_devices)

    def _start_worker(self, spec: WorkerSpec) -> _Worker:
        ctrl = self.ctx.Queue()
        process = self.ctx.Process(target=run_worker, args=(spec, self.events_q, ctrl, self.stop_event),
                                   name=f"netwatch-worker-{spec.index}", daemon=True)
        process.start()
        return _Worker(spec, process, ctrl)

    def _start_workers(self) -> None:
        self.events_q = self.ctx.Queue(maxsize=4096)
        self.stop_event = self.ctx.Event()
        index = 0
        for n, interface in enumerate(self.cfg.interfaces):
            group = ((os.getpid() * 8 + n) & 0xFFFF) if self.cfg.workers > 1 else None
            for _ in range(self.cfg.workers):
                self.workers.append(self._start_worker(self._spec(index, interface, group)))
                index += 1

    # -- run -----------------------------------------------------------------------
    def run(self) -> int:
        os.umask(os.umask(0) | PRIVATE_UMASK)  # also outside systemd: no world-readable state or alerts
        try:
            sigset = load_sigset(self.cfg.signatures, self.cfg.policy)
        except Exception as exc:
            self.error("cannot load signatures", error=str(exc))
            return 2
        self.signature_version = str(getattr(sigset, "version", ""))
        self.signature_hash = str(getattr(sigset, "content_hash", ""))
        try:
            self._check_interfaces()
            self._open_db(starting=True)
            self._open_output()
            self._open_forwarders()
            self._start_metrics()
        except StartupError as exc:
            self.error("cannot start", error=str(exc))
            self._close_outputs()
            return 2
        self._open_evidence()
        self._start_workers()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        if not self._wait_ready():
            self._shutdown()
            return 1
        self.info("sensor started", interfaces=self.cfg.interfaces, workers=self.cfg.workers, pid=os.getpid(),
                  signature_version=self.signature_version, signature_hash=self.signature_hash,
                  db=self.cfg.db, version=__version__)
        self._heartbeat("running")
        next_house = time.monotonic() + HOUSEKEEPING_S
        next_stats = time.monotonic() + self.cfg.stats_interval
        next_prune = time.monotonic()
        while not self._stop:
            self._pump(timeout=0.2)
            if self._hup:
                self._hup = False
                self.reload()
            now = time.monotonic()
            if now >= next_house:
                next_house = now + HOUSEKEEPING_S
                self._check_workers()
                self._persist()
                if self._signature_updates.changed():
                    self.info("signature update installed; reloading", signature_version=self.signature_version)
                    self.reload()
            if now >= next_stats:
                next_stats = now + self.cfg.stats_interval
                self._log_stats()
                self._heartbeat("running")
            if now >= next_prune:
                next_prune = now + PRUNE_EVERY_S
                self._prune()
        self._shutdown()
        return 0

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self._stop = True

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        self._hup = True

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(w.ready for w in self.workers):
            if self._stop or time.monotonic() > deadline:
                self.error("workers did not start in time")
                return False
            self._pump(timeout=0.2)
            if any(w.finished for w in self.workers):
                return False
        return True

    # -- messages from workers -------------------------------------------------------
    def _pump(self, timeout: float, budget: float = PUMP_SLICE_S) -> None:
        """Handle queued messages for at most `budget` seconds (signals and housekeeping wait
        no longer than that, whatever the backlog)."""
        try:
            msg = self.events_q.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(msg)
        until = time.monotonic() + budget
        while time.monotonic() < until:
            try:
                msg = self.events_q.get_nowait()
            except queue.Empty:
                return
            self._handle(msg)

    def _handle(self, msg: tuple) -> None:
        kind, index = msg[0], msg[1]
        worker = self.workers[index]
        if kind == "events":
            for ts, event, packets in msg[2]:
                self._on_event(ts, event, packets, worker)
        elif kind == "stats":
            worker.stats, worker.counters = msg[2], msg[3]
        elif kind == "devices":
            for dev in msg[2]:
                self._merge_device(dev)
        elif kind == "log":
            log(self.logger, msg[2], msg[3], **msg[4])
        elif kind == "ready":
            worker.ready = True
            self.info("worker ready", worker=index, pid=msg[2], interface=worker.spec.interface, linktype=msg[3])
        elif kind == "reloaded":
            self.info("worker applied signatures", worker=index, signature_version=msg[2], signature_hash=msg[3])
        elif kind == "fatal":
            worker.finished = True
            self.error("worker failed", worker=index, interface=worker.spec.interface, error=msg[2])
        elif kind == "bye":
            worker.finished = True

    def _merge_device(self, dev: dict[str, Any]) -> None:
        dev_id = dev.get("id")
        if not dev_id:
            return
        record = self.devices.get(dev_id)
        if record is None:
            ts = float(dev.get("first_seen") or dev.get("last_seen") or time.time())
            record = self.devices[dev_id] = DeviceRecord(id=dev_id, first_seen=ts, last_seen=ts)
            self.dirty_devices.add(dev_id)
            self.forget_devices.discard(dev_id)
            self._evict_devices()
        else:
            self.devices.move_to_end(dev_id)
        if record.merge(dev):
            self.dirty_devices.add(dev_id)

    def _on_event(self, ts: float, event: dict[str, Any], packets: list, worker: _Worker) -> None:
        key = event_key(event)
        nw = event.get("netwatch") or {}
        if key is not None:
            device = nw.get("device") or {}
            src = event.get("source") or {}
            self._merge_device({"id": key[0], "mac": _ecs_mac_to_colon(src.get("mac")),
                                "ips": [src["ip"]] if src.get("ip") else [], "hostname": device.get("hostname"),
                                "vendor": device.get("vendor"), "first_seen": ts, "last_seen": ts})
            self.detections[key[1]] += 1
        verdict = self.aggregator.offer(event, ts)
        if verdict.reason is None:
            return
        capture = {"interface": worker.spec.interface, "frame": (nw.get("capture") or {}).get("frame")}
        if verdict.contact is not None:
            out = annotate(event, verdict.reason, verdict.contact)
            self.alerts[(key[1], verdict.reason)] += 1  # type: ignore[index]
            if packets and self.evidence is not None and verdict.reason in (REASON_FIRST, REASON_REMINDER):
                try:
                    path, frame = self.evidence.write(packets)
                    capture.update(evidence_file=str(path), evidence_frame=frame)
                except OSError as exc:
                    self.totals["evidence_errors"] += 1
                    self.error("cannot write evidence pcap", key="evidence", error=str(exc))
            self.pending_alerts.append((ts, key[0], key[1], verdict.reason, out))  # type: ignore[index]
        else:
            out = dict(event)
        out["netwatch"] = {**out.get("netwatch", {}), "capture": capture}
        self._emit(out)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.output is not None:
            from netwatch.outputs.jsonl import dumps_event

            try:
                self.output.write(dumps_event(event) + "\n")
                self.output.flush()
            except (OSError, ValueError) as exc:
                self.totals["output_errors"] += 1
                self.error("cannot write output", key="output", error=str(exc), output=self.cfg.output)
        if self.forwarders is not None and (self.cfg.forward_events == "all"
                                            or event["event"]["kind"] == KIND_ALERT):
            try:
                self.forwarders.submit(event)
            except Exception as exc:
                self.totals["forward_errors"] += 1
                self.error("forwarder rejected an event", key="forward", error=str(exc))

    # -- housekeeping ----------------------------------------------------------------
    def _check_workers(self) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if worker.process.is_alive():
                continue
            if not worker.restart_at:
                self.error("worker exited; restarting it", worker=i, exitcode=worker.process.exitcode,
                           interface=worker.spec.interface)
                self._retire(worker)
                worker.restart_at = now + WORKER_RESTART_S
            elif now >= worker.restart_at:
                self.workers[i] = self._start_worker(worker.spec)
                self.workers[i].ready = True  # its 'ready' message arrives later; do not block on it

    def _retire(self, worker: _Worker) -> None:
        for key, value in self._worker_totals(worker).items():
            self.retired[key] += value
        worker.stats, worker.counters = {}, {}

    @staticmethod
    def _worker_totals(worker: _Worker) -> dict[str, int]:
        s, c = worker.stats, worker.counters
        return {"frames": s.get("frames", 0), "admitted": s.get("admitted", 0),
                "kernel_dropped": s.get("kernel_dropped", 0), "interface_dropped": s.get("interface_dropped", 0),
                "reopens": s.get("reopens", 0), "malformed": int(c.get("malformed", 0) or 0),
                "candidates": int(c.get("candidates", 0) or 0)}

    def snapshot(self) -> dict[str, Any]:
        """Counters for metrics, stats lines and the heartbeat (merged over all workers)."""
        totals: Counter[str] = Counter(self.retired)
        for worker in self.workers:
            totals.update(self._worker_totals(worker))
        totals.update(self.totals)
        totals["contacts_evicted"] = self.aggregator.evicted_total
        depth = self.events_q.qsize() if self.events_q is not None else 0
        if self.forwarders is not None:
            with contextlib.suppress(Exception):
                depth += sum(int(s.get("queued", 0)) for s in self.forwarders.stats().values())
        return {"totals": dict(totals), "detections": dict(self.detections), "alerts": dict(self.alerts),
                "queue_depth": depth, "workers_alive": sum(w.process.is_alive() for w in self.workers),
                "worker_frames": [w.stats.get("frames", 0) for w in self.workers],
                "signature_version": self.signature_version, "signature_hash": self.signature_hash,
                "devices": len(self.devices), "contacts": len(self.aggregator.contacts)}

    def _log_stats(self) -> None:
        snap = self.snapshot()
        totals = snap["totals"]
        drops = totals.get("kernel_dropped", 0) + totals.get("interface_dropped", 0)
        level = logging.WARNING if drops > self._last_drops else logging.INFO
        log(self.logger, level, "capture statistics" if level == logging.INFO else
            "packets dropped before the sensor saw them", **totals, new_drops=drops - self._last_drops,
            queue_depth=snap["queue_depth"], workers_alive=snap["workers_alive"],
            devices=len(self.devices), contacts=len(self.aggregator.contacts))
        self._last_drops = drops

    def _persist(self) -> None:
        if self.db is None:
            if time.monotonic() - self._last_error_log.get("db_open", -1e9) >= DB_RETRY_S:
                self._open_db()
            if self.db is None:
                return
        contacts = self.aggregator.take_dirty()
        devices = [self.devices[d] for d in self.dirty_devices if d in self.devices]
        alerts = list(self.pending_alerts)
        forget_contacts = set(self.aggregator.evicted)
        if not (contacts or devices or alerts or self.forget_devices or forget_contacts):
            return
        try:
            self.db.write_batch(devices, contacts, alerts, forget_devices=self.forget_devices,
                                forget_contacts=forget_contacts)
        except StateError as exc:
            self.totals["db_errors"] += 1
            self.aggregator.dirty.update((c.device_id, c.app) for c in contacts)
            self.error("cannot write the state database; keeping state in memory and retrying",
                       key="db_write", error=str(exc), db=self.cfg.db)
            return
        self.dirty_devices.clear()
        self.pending_alerts.clear()
        self.forget_devices.clear()
        self.aggregator.evicted -= forget_contacts

    def _heartbeat(self, state: str) -> None:
        if self.db is None:
            return
        snap = self.snapshot()
        try:
            self.db.set_meta("heartbeat", {"state": state, "pid": os.getpid(), "ts": time.time(),
                                           "started": self.started, "interfaces": self.cfg.interfaces,
                                           "workers": self.cfg.workers, "stats_interval": self.cfg.stats_interval,
                                           **{k: v for k, v in snap.items() if k != "alerts"}})
        except StateError as exc:
            self.totals["db_errors"] += 1
            self.error("cannot write the heartbeat", key="db_write", error=str(exc))

    def _prune(self) -> None:
        if self.db is None or self.cfg.retention_days <= 0:
            return
        cutoff = time.time() - self.cfg.retention_days * 86400.0
        for key in [k for k, c in self.aggregator.contacts.items() if c.last_seen < cutoff]:
            del self.aggregator.contacts[key]
        try:
            removed = self.db.prune(self.cfg.retention_days)
        except StateError as exc:
            self.error("retention pruning failed", key="db_write", error=str(exc))
            return
        if removed:
            self.info("retention applied", removed_rows=removed, retention_days=self.cfg.retention_days)

    # -- reload / stop ---------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: re-read config and signatures; on any error keep everything as it was."""
        try:
            new = build_config(self.config_path, self.cli_overrides) if self.config_path else self.cfg
        except ConfigError as exc:
            self.error("reload rejected: bad configuration, keeping the old one", error=str(exc))
            return False
        ignored = [f for f in SensorConfig.__dataclass_fields__
                   if f not in SensorConfig.RELOADABLE and getattr(new, f) != getattr(self.cfg, f)]
        try:
            sigset = load_sigset(new.signatures, new.policy)
        except Exception as exc:
            self.error("reload rejected: bad signatures, keeping the old set", error=str(exc),
                       signature_version=self.signature_version)
            return False
        previous_version = self.signature_version
        changes = {f: getattr(new, f) for f in SensorConfig.RELOADABLE}
        self.cfg = self.cfg.replace(**changes)
        self.aggregator.reminder_interval = self.cfg.reminder_interval
        self.logger.setLevel(self.cfg.log_level.upper())
        self.signature_version = str(getattr(sigset, "version", ""))
        self.signature_hash = str(getattr(sigset, "content_hash", ""))
        for worker in self.workers:
            worker.spec.signatures, worker.spec.policy = list(self.cfg.signatures), self.cfg.policy
            worker.spec.min_confidence, worker.spec.emit_all = self.cfg.min_confidence, self.cfg.emit_all
            worker.ctrl.put(("reload", list(self.cfg.signatures), self.cfg.policy, self.cfg.min_confidence,
                             self.cfg.emit_all))
        if ignored:
            log(self.logger, logging.WARNING, "these options change only on restart", options=ignored)
        self.info("reloaded", signature_version=self.signature_version, signature_hash=self.signature_hash,
                  previous_signature_version=previous_version)
        return True

    def _shutdown(self) -> None:
        """Stop within STOP_TIMEOUT_S + STOP_DRAIN_S whatever the traffic: SIGTERM the workers
        (they stop between two packets and flush), read what they send, SIGKILL any that hang."""
        self.info("sensor stopping")
        if self.stop_event is not None:
            self.stop_event.set()
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline and not all(w.finished or not w.process.is_alive()
                                                      for w in self.workers):
            self._pump(timeout=0.1, budget=0.1)
        for worker in self.workers:
            if worker.process.is_alive() and not worker.finished:
                self.error("worker did not stop in time; killing it", worker=worker.spec.index,
                           pid=worker.process.pid)
                worker.process.kill()
        drain_until = time.monotonic() + STOP_DRAIN_S
        left = self._drain(drain_until)
        if left:
            self.error("stopped before reading everything the workers sent", unread_messages=left)
        for worker in self.workers:
            worker.process.join(timeout=max(0.1, drain_until - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=1)
        self._persist()
        self._log_stats()
        self._heartbeat("stopped")
        if self.forwarders is not None:
            with contextlib.suppress(Exception):
                self.forwarders.flush(5.0)
        if self.evidence is not None:
            self.evidence.close()
        self._close_outputs()
        self.info("sensor stopped")

    def _drain(self, until: float) -> int:
        """Handle queued messages until `until`; the number left unread (0 when the queue emptied)."""
        if self.events_q is None:
            return 0
        while time.monotonic() < until:
            try:
                self._handle(self.events_q.get(timeout=0.05))
            except queue.Empty:
                return 0
        try:
            return self.events_q.qsize()
        except NotImplementedError:
            return 1

    def _close_outputs(self) -> None:
        if self.forwarders is not None:
            self.forwarders.close()
            self.forwarders = None
        if self.output is not None and self.output is not sys.stdout:
            try:
                self.output.close()
            except OSError as exc:  # the last buffered alerts cannot be written (full disk): say so, go on
                self.error("cannot write output", key="output-close", error=str(exc), output=self.cfg.output)
        self.output = None
        if self.db is not None:
            self.db.close()
            self.db = None


def run_sensor(config_path: str | None, cli_overrides: dict[str, Any], logger: logging.Logger) -> int:
    cfg = build_config(config_path, cli_overrides)
    return Sensor(cfg, config_path, cli_overrides, logger).run()
