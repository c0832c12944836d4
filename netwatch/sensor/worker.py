"""A capture worker: one process reading one interface (or one PACKET_FANOUT share of it).

Each worker runs the same `Pipeline` as `netwatch scan`, and sends its events, statistics and
device changes to the parent over one multiprocessing queue; the parent owns aggregation,
outputs, the database and the metrics. Workers never write files, so a worker that dies
loses nothing but its in-flight packets, and the parent restarts it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from netwatch.model import RawPacket

STATS_EVERY_S = 1.0
EVIDENCE_RING = 64  # recent admitted packets kept to attach to an alert
EVIDENCE_PER_ALERT = 16
_DEVICE_SCAN_STOP = 64  # stop scanning the inventory after this many unchanged recently-used devices
EVENTS_PER_MESSAGE = 512  # events per queue message: bounds the parent's work per message
DEVICES_PER_MESSAGE = 1024
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(slots=True)
class WorkerSpec:
    """Everything a worker needs; picklable for the 'spawn' start method."""

    index: int
    interface: str
    fanout_group: int | None
    snaplen: int
    promisc: bool
    buffer_size: int
    timeout_ms: int
    bpf: str
    batch_size: int
    max_flows: int
    head_packets: int
    head_bytes: int
    idle_timeout: float
    signatures: list[str]
    policy: str | None
    min_confidence: str | None
    emit_all: bool
    observer: dict[str, Any]
    evidence: bool
    parent_pid: int
    max_devices: int = 100_000


def load_sigset(overlays: list[str], policy: str | None) -> Any:
    from pathlib import Path

    from netwatch.signatures import load_signature_set

    return load_signature_set(overlay_dirs=tuple(Path(p) for p in overlays), policy=policy)


def _device_signature(device: Any) -> tuple:
    apps = tuple((app, c.last_seen) for app, c in device.apps.items())
    return (device.last_seen, device.hostname, len(device.ips), device.vendor_class, device.mac, apps)


class _DeviceTracker:
    """Finds the inventory devices that changed since the last report, cheaply.

    The inventory keeps devices in least-recently-used order, so changed devices sit at its end;
    the scan walks backwards and stops after a run of unchanged ones.
    """

    def __init__(self) -> None:
        self._sent: dict[str, tuple] = {}

    def changed(self, inventory: Any) -> list[dict[str, Any]]:
        out = []
        unchanged = 0
        for device in reversed(inventory.devices()):
            sig = _device_signature(device)
            if self._sent.get(device.id) == sig:
                unchanged += 1
                if unchanged >= _DEVICE_SCAN_STOP:
                    break
                continue
            unchanged = 0
            self._sent[device.id] = sig
            out.append(device.to_dict())
        if len(self._sent) > 2 * max(len(inventory), 1) + 1024:  # forget evicted devices
            live = {d.id for d in inventory.devices()}
            self._sent = {k: v for k, v in self._sent.items() if k in live}
        return out


def _packed(ip: str | None) -> bytes | None:
    try:
        return ipaddress.ip_address(ip).packed if ip else None
    except ValueError:
        return None


def evidence_packets(event: dict[str, Any], ring: deque[RawPacket], current: RawPacket) -> list[tuple]:
    """The recent packets between the event's two hosts (the current one always included)."""
    src = _packed((event.get("source") or {}).get("ip"))
    dst = _packed((event.get("destination") or {}).get("ip"))
    frame = ((event.get("netwatch") or {}).get("capture") or {}).get("frame") or current.frame
    picked = []
    for pkt in ring:
        if pkt.frame < frame or pkt is current:
            continue
        if src and dst and (src not in pkt.data or dst not in pkt.data):
            continue
        picked.append(pkt)
    picked = [*picked[-(EVIDENCE_PER_ALERT - 1):], current]
    return [(p.ts, p.linktype, p.data) for p in picked]


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when the sensor parent dies (OOM kill, crash,
    SIGKILL): an orphaned worker would keep its capture socket and fanout share forever."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent-liveness check in the loop remains
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run_worker(spec: WorkerSpec, out_queue: Any, ctrl_queue: Any, stop_event: Any) -> None:
    """Process entry point; returns when stop_event is set or SIGTERM arrives.

    SIGTERM is honoured between two packets, not only between batches: one batch of a crafted
    flood can take seconds of Python work, and the parent allows a worker a few seconds to stop.
    """
    die_with_parent(spec.parent_pid)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent coordinates the stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the parent reloads and tells us

    def send(*msg: Any) -> None:
        out_queue.put(msg)

    def log(level: int, msg: str, **fields: Any) -> None:
        send("log", spec.index, level, msg, {"worker": spec.index, "pid": os.getpid(), **fields})

    try:
        from netwatch._fastpath import FlowFilter
        from netwatch.capture.live import LiveCapture, LiveOptions
        from netwatch.detect.devices import DeviceInventory
        from netwatch.pipeline import Pipeline

        sigset = load_sigset(spec.signatures, spec.policy)
        pipeline = Pipeline(sigset, min_confidence=spec.min_confidence, emit_all=spec.emit_all,
                            observer=spec.observer, inventory=DeviceInventory(max_devices=spec.max_devices))
        pipeline.capture_file = spec.interface  # events then carry the live frame number
        flow_filter = FlowFilter(max_flows=spec.max_flows, head_packets=spec.head_packets,
                                 head_bytes=spec.head_bytes, idle_timeout=spec.idle_timeout)
        pipeline.steer(flow_filter)
        capture = LiveCapture(
            LiveOptions(interface=spec.interface, snaplen=spec.snaplen, promisc=spec.promisc,
                        buffer_size=spec.buffer_size, timeout_ms=spec.timeout_ms, bpf=spec.bpf,
                        fanout_group=spec.fanout_group, batch_size=spec.batch_size),
            flow_filter,
            on_event=lambda msg, fields: log(logging.WARNING if "fail" in msg else logging.INFO, msg,
                                             **fields),
            should_stop=lambda: stopping or stop_event.is_set(),
        )
    except Exception as exc:
        send("fatal", spec.index, f"{type(exc).__name__}: {exc}")
        return

    ring: deque[RawPacket] = deque(maxlen=EVIDENCE_RING)
    tracker = _DeviceTracker()
    next_stats = time.monotonic() + STATS_EVERY_S
    send("ready", spec.index, os.getpid(), capture.linktype)

    def report() -> None:
        send("stats", spec.index, capture.stats(), pipeline.counters())
        changed = tracker.changed(pipeline.inventory)
        for start in range(0, len(changed), DEVICES_PER_MESSAGE):
            send("devices", spec.index, changed[start:start + DEVICES_PER_MESSAGE])

    def ship(events: list[dict[str, Any]], pkt: RawPacket | None, out: list) -> None:
        for event in events:
            packets = []
            if spec.evidence and pkt is not None and (event.get("netwatch") or {}).get("signature"):
                packets = evidence_packets(event, ring, pkt)
            out.append((pkt.ts if pkt is not None else time.time(), event, packets))

    while not stopping and not stop_event.is_set():
        batch = capture.read_batch()
        pending: list = []
        for pkt in batch:
            if stopping:  # the rest of the batch arrived after the stop was asked for
                break
            if spec.evidence:
                ring.append(pkt)
            events = pipeline.process(pkt)
            if events:
                ship(events, pkt, pending)
                if len(pending) >= EVENTS_PER_MESSAGE:
                    send("events", spec.index, pending)
                    pending = []
        if pending:
            send("events", spec.index, pending)
        now = time.monotonic()
        if now >= next_stats:
            next_stats = now + STATS_EVERY_S
            if os.getppid() != spec.parent_pid:  # orphaned where prctl is missing: nobody reads the queue
                os._exit(1)
            report()
            while not ctrl_queue.empty():
                _handle_control(ctrl_queue.get_nowait(), pipeline, log, send, spec)

    pending = []
    ship(pipeline.flush(), None, pending)
    for start in range(0, len(pending), EVENTS_PER_MESSAGE):
        send("events", spec.index, pending[start:start + EVENTS_PER_MESSAGE])
    report()
    capture.close()
    send("bye", spec.index)


def _handle_control(msg: tuple, pipeline: Any, log: Any, send: Any, spec: WorkerSpec) -> None:
    if msg[0] != "reload":
        return
    _, overlays, policy, min_confidence, emit_all = msg
    try:
        sigset = load_sigset(overlays, policy)
    except Exception as exc:  # the parent validated it; keep the old set if this copy still fails
        log(logging.ERROR, "signature reload failed in worker, keeping the old set", error=str(exc))
        return
    pipeline.reload(sigset)
    pipeline.detector.min_confidence = min_confidence or getattr(sigset.policy, "min_confidence",
                                                                 None) or "medium"
    pipeline.detector.emit_all = emit_all
    spec.signatures, spec.policy = overlays, policy
    send("reloaded", spec.index, getattr(sigset, "version", ""), getattr(sigset, "content_hash", ""))
