"""What a report shows, gathered from netwatch events (jsonl) or the sensor database.

Both inputs become one `ReportData`: devices, per (device, app) contacts with first/last seen and
evidence counts, contact times for the timeline, evidence samples, blind spots, the signature
versions and the time range. Every value from traffic stays a plain string here; the renderers
escape it. Memory is bounded: samples and timeline points are capped, and what was left out is
counted so the report can say so.
"""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

MAX_TIMELINE_POINTS = 200_000
SAMPLES_PER_CONTACT = 3
MAX_LINE_BYTES = 1 << 20  # a netwatch event is a few kB; longer lines are not events
_EARLIEST, _LATEST = 0.0, 253_370_764_800.0  # 1970-01-01 .. 9999-01-01: times a report can print
_CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".ntar", ".erf")


class ReportInputError(Exception):
    """An input cannot be read at all (message names the file)."""


@dataclass(slots=True)
class Device:
    id: str
    hostname: str | None = None
    vendor: str | None = None
    macs: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.hostname} ({self.id})" if self.hostname and self.hostname != self.id else self.id

    def note_address(self, ip: str | None, mac: str | None) -> None:
        if ip and ip not in self.ips and len(self.ips) < 16:
            self.ips.append(ip)
        if mac and mac not in self.macs and len(self.macs) < 8:
            self.macs.append(mac)


@dataclass(slots=True)
class Sample:
    """One piece of evidence as it will be shown: when, what name, which rule, where it was seen."""

    ts: float
    evidence: str
    name: str | None
    rule: str | None
    confidence: str | None
    source: str


@dataclass(slots=True)
class Contact:
    device: str
    app: str
    app_name: str
    first_seen: float
    last_seen: float
    count: int = 0
    evidence: Counter = field(default_factory=Counter)
    confidence: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def add(self, ts: float, evidence: str, count: int = 1) -> None:
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        self.count += count
        self.evidence[evidence] += count


@dataclass(slots=True)
class BlindSpot:
    device: str
    kind: str  # encrypted_dns | ech
    via: str | None
    first_seen: float
    count: int = 1


@dataclass
class ReportData:
    sources: list[str] = field(default_factory=list)
    devices: dict[str, Device] = field(default_factory=dict)
    contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)  # alerts
    vendor_contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)  # recorded, no alert
    blind_spots: dict[tuple[str, str, str], BlindSpot] = field(default_factory=dict)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # (ts, device, app) of alerts
    timeline_dropped: int = 0
    signature_versions: Counter = field(default_factory=Counter)
    policies: Counter = field(default_factory=Counter)
    first_ts: float | None = None
    last_ts: float | None = None
    events: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # -- derived views -----------------------------------------------------------------------------
    def apps(self) -> list[tuple[str, str]]:
        """(app id, display name), the app with most devices first."""
        per_app = Counter(app for _, app in self.contacts)
        names = {app: c.app_name for (_, app), c in self.contacts.items()}
        return [(app, names[app]) for app, _ in sorted(per_app.items(), key=lambda kv: (-kv[1], names[kv[0]]))]

    def flagged_devices(self) -> list[str]:
        """Devices with alerts, the one with most apps (then contacts) first."""
        apps: Counter = Counter()
        contacts: Counter = Counter()
        for (device, _), contact in self.contacts.items():
            apps[device] += 1
            contacts[device] += contact.count
        return sorted(apps, key=lambda d: (-apps[d], -contacts[d], self.devices[d].label))

    def app_summary(self) -> list[dict[str, Any]]:
        out = []
        for app, name in self.apps():
            rows = [c for (_, a), c in self.contacts.items() if a == app]
            out.append({"app": app, "app_name": name, "devices": len(rows), "contacts": sum(c.count for c in rows),
                        "first_seen": min(c.first_seen for c in rows), "last_seen": max(c.last_seen for c in rows)})
        return out

    def note_ts(self, ts: float) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)


def parse_time(text: object) -> float | None:
    """RFC 3339 `...Z` (netwatch's form) or any ISO 8601 with offset, to Unix seconds; None if not."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        ts = parsed.timestamp()
    except (OverflowError, ValueError):
        return None
    return ts if _EARLIEST <= ts <= _LATEST else None  # a clock far off is damage, not an event


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _source_of(event: dict[str, Any], nw: dict[str, Any]) -> str:
    """Where the evidence can be looked at again: capture file and frame, sensor evidence pcap, log line."""
    capture = nw.get("capture") if isinstance(nw.get("capture"), dict) else {}
    log = nw.get("log") if isinstance(nw.get("log"), dict) else {}
    if capture.get("evidence_file"):
        return f"{capture['evidence_file']} frame {capture.get('evidence_frame')}"
    if capture.get("file"):
        # `netwatch logs` reuses capture.file/frame for the log file and its line number.
        name = str(capture["file"]).lower().removesuffix(".gz")
        unit = "frame" if name == "-" or name.endswith(_CAPTURE_SUFFIXES) else "line"
        return f"{capture['file']} {unit} {capture.get('frame')}"
    if log.get("file"):
        return f"{log['file']} line {log.get('line')}" if log.get("line") else str(log["file"])
    if capture.get("interface"):
        return f"interface {capture['interface']}"
    observer = event.get("observer") if isinstance(event.get("observer"), dict) else {}
    return str(observer.get("type") or "unknown")


class Collector:
    """Feeds events into a ReportData."""

    def __init__(self, data: ReportData | None = None) -> None:
        self.data = data or ReportData()

    def _device(self, event: dict[str, Any], nw: dict[str, Any]) -> str | None:
        device = nw.get("device") if isinstance(nw.get("device"), dict) else {}
        source = event.get("source") if isinstance(event.get("source"), dict) else {}
        dev_id = _text(device.get("id")) or _text(source.get("ip"))
        if dev_id is None:
            return None
        record = self.data.devices.get(dev_id)
        if record is None:
            record = self.data.devices[dev_id] = Device(dev_id)
        record.hostname = _text(device.get("hostname")) or record.hostname
        record.vendor = _text(device.get("vendor")) or record.vendor
        record.note_address(_text(source.get("ip")), _text(source.get("mac")))
        return dev_id

    def add_event(self, event: object, *, count: int = 1) -> bool:
        """Fold one event in; False (and nothing changed) when it is not a netwatch event."""
        if not isinstance(event, dict):
            return False
        meta = event.get("event") if isinstance(event.get("event"), dict) else None
        nw = event.get("netwatch") if isinstance(event.get("netwatch"), dict) else None
        ts = parse_time(event.get("@timestamp"))
        if meta is None or nw is None or ts is None:
            return False
        data = self.data
        device = self._device(event, nw)
        if device is None:
            return False
        data.events += 1
        data.note_ts(ts)
        rule = event.get("rule") if isinstance(event.get("rule"), dict) else {}
        if _text(rule.get("version")):
            data.signature_versions[rule["version"]] += 1
        if _text(nw.get("policy")):
            data.policies[nw["policy"]] += 1
        dataset = meta.get("dataset")
        evidence = _text(nw.get("evidence")) or "unknown"
        if dataset == "netwatch.blind_spot":
            via = _text(nw.get("resolver")) or _text(nw.get("name")) or ""
            key = (device, evidence, via)
            spot = data.blind_spots.get(key)
            if spot is None:
                data.blind_spots[key] = BlindSpot(device, evidence, via or None, ts)
            else:
                spot.count += 1
                spot.first_seen = min(spot.first_seen, ts)
            return True
        if dataset not in ("netwatch.detection", "netwatch.vendor_contact"):
            return True  # observations only count towards the time range
        alert = meta.get("kind") == "alert" and dataset == "netwatch.detection"
        app = _text(nw.get("app")) if alert else (_text(nw.get("app")) or _text(nw.get("vendor")) or "unknown")
        if app is None:
            return True
        app_name = _text(nw.get("app_name")) or (app if alert else f"{app} (vendor)")
        table = data.contacts if alert else data.vendor_contacts
        contact = table.get((device, app))
        if contact is None:
            contact = table[(device, app)] = Contact(device, app, app_name, ts, ts)
        contact.add(ts, evidence, count)
        confidence = _text(nw.get("confidence"))
        if confidence and (contact.confidence is None or _RANK.get(confidence, 0) > _RANK.get(contact.confidence, 0)):
            contact.confidence = confidence
        if len(contact.samples) < SAMPLES_PER_CONTACT:
            contact.samples.append(Sample(ts, evidence, _text(nw.get("name")), _text(nw.get("signature")),
                                          confidence, _source_of(event, nw)))
        if alert:
            if len(data.timeline) < MAX_TIMELINE_POINTS:
                data.timeline.append((ts, device, app))
            else:
                data.timeline_dropped += 1
        return True

    def skip(self, where: str, why: str) -> None:
        self.data.skipped += 1
        if len(self.data.skipped_examples) < 5:
            self.data.skipped_examples.append(f"{where}: {why}")


_RANK = {"low": 1, "medium": 2, "high": 3}


def _open_text(path: str) -> IO[str]:
    if path == "-":
        import sys

        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    try:
        raw = open(path, "rb")  # noqa: SIM115 - wrapped and closed by the caller
        magic = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if magic == b"\x1f\x8b" else raw
        return io.TextIOWrapper(stream, encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportInputError(f"{path}: {exc.strerror or exc}") from exc


def _bounded_lines(handle: IO[str], limit: int) -> Iterator[str | None]:
    """The lines of `handle`, None for one longer than `limit` characters (its rest is read and dropped).

    Memory stays bounded whatever the input: /dev/zero or a binary file has no line ends at all.
    """
    while line := handle.readline(limit + 1):
        if len(line) <= limit or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = handle.readline(limit + 1)
        yield None


def read_jsonl(collector: Collector, path: str) -> None:
    """Events from a `netwatch scan`/`logs`/`sensor` jsonl file ('-' = stdin, .gz is fine)."""
    collector.data.sources.append("standard input" if path == "-" else path)
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(_bounded_lines(handle, MAX_LINE_BYTES), 1):
                if line is None:
                    collector.skip(f"{path}:{number}", "line too long for an event")
                    continue
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    collector.skip(f"{path}:{number}", "not JSON")
                    continue
                if not collector.add_event(event):
                    collector.skip(f"{path}:{number}", "not a netwatch event")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ReportInputError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from exc


def read_sensor_db(collector: Collector, path: str) -> None:
    """The sensor's inventory: contacts give first/last seen and counts, the alert history the timeline.

    The database keeps alerts (first contact and reminders), not every contact, and no blind-spot
    events; the report says so.
    """
    from netwatch.sensor.state import StateDB, StateError

    collector.data.sources.append(f"sensor database {path}")
    try:
        db = StateDB(path, readonly=True)
    except StateError as exc:
        raise ReportInputError(str(exc)) from exc
    try:
        _read_db(collector, db)
    except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
        raise ReportInputError(f"{path}: not a netwatch sensor database ({exc})") from exc
    finally:
        db.close()


def _read_db(collector: Collector, db: Any) -> None:
    data = collector.data
    for record in db.load_devices().values():
        data.devices[record.id] = Device(record.id, record.hostname, record.vendor, list(record.macs)[:8],
                                         list(record.ips)[:16])
    history = db.alert_history(limit=MAX_TIMELINE_POINTS)
    history.reverse()  # oldest first
    app_names: dict[str, str] = {}
    alerted: set[tuple[str, str]] = set()
    for row in history:
        event = row["event"]
        nw = event.get("netwatch") if isinstance(event, dict) else None
        if isinstance(nw, dict) and nw.get("app") and nw.get("app_name"):
            app_names[nw["app"]] = nw["app_name"]
        if isinstance(event, dict) and (event.get("event") or {}).get("kind") == "alert":
            alerted.add((row["device_id"], row["app"]))
        collector.add_event(event, count=0)  # samples, versions, timeline; counts come from contacts
    heartbeat = db.get_meta("heartbeat") or {}
    if isinstance(heartbeat, dict) and heartbeat.get("signature_version"):
        label = heartbeat["signature_version"]
        if heartbeat.get("signature_hash"):  # the rule.version form: VERSION+sha256:HASH12
            label = f"{label}+sha256:{str(heartbeat['signature_hash']).removeprefix('sha256:')[:12]}"
        data.signature_versions[label] += 0
    for contact in db.load_contacts().values():
        # The sensor keeps one row per (device, app) for alerts and below-threshold contacts alike: a row
        # is an alert when the history shows one, or (history pruned) its best evidence reached medium.
        alert = not contact.app.startswith("vendor:") and (
            (contact.device_id, contact.app) in alerted or _RANK.get(contact.confidence or "", 0) >= 2)
        table = data.contacts if alert else data.vendor_contacts
        app = contact.app.removeprefix("vendor:")
        name = contact.app_name or app_names.get(app) or (app if alert else f"{app} (vendor)")
        entry = table.get((contact.device_id, app))
        if entry is None:
            entry = table[(contact.device_id, app)] = Contact(contact.device_id, app, name, contact.first_seen,
                                                              contact.last_seen)
        entry.first_seen, entry.last_seen = min(entry.first_seen, contact.first_seen), max(entry.last_seen,
                                                                                          contact.last_seen)
        entry.count = sum(int(v) for v in contact.counts.values())
        entry.evidence = Counter({str(k): int(v) for k, v in contact.counts.items()})
        entry.confidence = contact.confidence or entry.confidence
        data.devices.setdefault(contact.device_id, Device(contact.device_id))
        data.note_ts(contact.first_seen)
        data.note_ts(contact.last_seen)
    data.notes.append("From a sensor database: counts and first/last seen come from the inventory; the "
                      "timeline shows the alerts the sensor raised (first contact and reminders), and blind "
                      "spots are not stored there (see the sensor's event log).")


def load(inputs: list[str], db: str | None) -> ReportData:
    collector = Collector()
    for path in inputs:
        if path != "-" and Path(path).is_dir():
            raise ReportInputError(f"{path}: is a directory; give the jsonl files")
        read_jsonl(collector, path)
    if db is not None:
        read_sensor_db(collector, db)
    return collector.data
