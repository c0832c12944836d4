"""The sensor's persistent state: an embedded SQLite database in WAL mode.

Why SQLite: one file, no server, readers (`netwatch devices`, `netwatch health`) work
while the sensor writes thanks to WAL, and a crash loses at most the last flush.
Tables: devices, contacts (one row per device and app), alerts (history), meta
(schema version, heartbeat). Lists are stored as JSON text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
CONFIDENCE_RANK = {"low": 1, "medium": 2, "high": 3}
MAX_NAMES_PER_CONTACT = 16  # example names kept per (device, app)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, macs TEXT NOT NULL DEFAULT '[]', ips TEXT NOT NULL DEFAULT '[]',
    hostname TEXT, vendor TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    device_id TEXT NOT NULL, app TEXT NOT NULL, app_name TEXT,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}', names TEXT NOT NULL DEFAULT '[]',
    confidence TEXT, last_alert REAL, alerts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, app));
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, device_id TEXT NOT NULL,
    app TEXT NOT NULL, reason TEXT NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE INDEX IF NOT EXISTS contacts_last_seen ON contacts (last_seen);
"""


class StateError(Exception):
    """The database cannot be opened or written (message has the path and the reason)."""


@dataclass(slots=True)
class Contact:
    """What one device did with one app, aggregated over time."""

    device_id: str
    app: str
    first_seen: float
    last_seen: float
    app_name: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # evidence kind -> count
    names: list[str] = field(default_factory=list)
    confidence: str | None = None  # the highest seen
    last_alert: float | None = None
    alerts: int = 0

    def add(self, ts: float, evidence: str, name: str | None, confidence: str | None) -> None:
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)
        self.counts[evidence] = self.counts.get(evidence, 0) + 1
        if name and name not in self.names and len(self.names) < MAX_NAMES_PER_CONTACT:
            self.names.append(name)
        if CONFIDENCE_RANK.get(confidence or "", 0) > CONFIDENCE_RANK.get(self.confidence or "", 0):
            self.confidence = confidence

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(slots=True)
class DeviceRecord:
    id: str
    first_seen: float
    last_seen: float
    macs: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    hostname: str | None = None
    vendor: str | None = None

    def merge(self, other: dict[str, Any]) -> bool:
        """Fold a device dict in; return True when anything changed."""
        before = (len(self.macs), len(self.ips), self.hostname, self.vendor, self.first_seen, self.last_seen)
        macs = list(other.get("macs") or ())
        if other.get("mac"):
            macs.append(other["mac"])
        for mac in macs:
            if mac and mac not in self.macs and len(self.macs) < 64:
                self.macs.append(mac)
        for ip in other.get("ips") or ():
            if ip and ip not in self.ips and len(self.ips) < 256:
                self.ips.append(ip)
        if other.get("hostname"):
            self.hostname = other["hostname"]
        if other.get("vendor"):
            self.vendor = other["vendor"]
        for key, pick in (("first_seen", min), ("last_seen", max)):
            value = other.get(key)
            if isinstance(value, (int, float)):
                setattr(self, key, pick(getattr(self, key), float(value)))
        after = (len(self.macs), len(self.ips), self.hostname, self.vendor, self.first_seen, self.last_seen)
        return before != after


class StateDB:
    """Thin synchronous wrapper; one writer (the sensor), any number of readers."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.exists():
                    raise StateError(f"{self.path}: no such database")
                self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=10)
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
                self.conn.executescript(_SCHEMA)
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                  (str(SCHEMA_VERSION),))
                self.conn.commit()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"{self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    # -- writes (caller commits via write_batch) -------------------------------------
    def write_batch(self, devices: Iterable[DeviceRecord], contacts: Iterable[Contact],
                    alerts: Iterable[tuple[float, str, str, str, dict]]) -> None:
        """Write everything in one transaction; raise StateError (the caller keeps its data)."""
        try:
            with self.conn:
                self.conn.executemany(
                    "INSERT INTO devices (id, macs, ips, hostname, vendor, first_seen, last_seen) "
                    "VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET macs=excluded.macs, "
                    "ips=excluded.ips, hostname=excluded.hostname, vendor=excluded.vendor, "
                    "first_seen=excluded.first_seen, last_seen=excluded.last_seen",
                    [(d.id, json.dumps(d.macs), json.dumps(d.ips), d.hostname, d.vendor, d.first_seen,
                      d.last_seen) for d in devices])
                self.conn.executemany(
                    "INSERT INTO contacts (device_id, app, app_name, first_seen, last_seen, counts, names, "
                    "confidence, last_alert, alerts) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(device_id, app) DO UPDATE SET app_name=excluded.app_name, "
                    "first_seen=excluded.first_seen, last_seen=excluded.last_seen, counts=excluded.counts, "
                    "names=excluded.names, confidence=excluded.confidence, last_alert=excluded.last_alert, "
                    "alerts=excluded.alerts",
                    [(c.device_id, c.app, c.app_name, c.first_seen, c.last_seen, json.dumps(c.counts),
                      json.dumps(c.names), c.confidence, c.last_alert, c.alerts) for c in contacts])
                self.conn.executemany(
                    "INSERT INTO alerts (ts, device_id, app, reason, event) VALUES (?,?,?,?,?)",
                    [(ts, dev, app, reason, json.dumps(event, separators=(",", ":"), default=str))
                     for ts, dev, app, reason, event in alerts])
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def set_meta(self, key: str, value: Any) -> None:
        try:
            with self.conn:
                self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                                  "value=excluded.value", (key, json.dumps(value, default=str)))
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def prune(self, retention_days: float, now: float | None = None) -> int:
        """Delete contacts, alerts and app-less devices not seen within the retention window."""
        if retention_days <= 0:
            return 0
        cutoff = (now if now is not None else time.time()) - retention_days * 86400.0
        try:
            with self.conn:
                n = self.conn.execute("DELETE FROM contacts WHERE last_seen < ?", (cutoff,)).rowcount
                n += self.conn.execute("DELETE FROM alerts WHERE ts < ?", (cutoff,)).rowcount
                n += self.conn.execute(
                    "DELETE FROM devices WHERE last_seen < ? AND id NOT IN (SELECT device_id FROM contacts)",
                    (cutoff,)).rowcount
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: {exc}") from exc
        return n

    # -- reads -----------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def load_contacts(self) -> dict[tuple[str, str], Contact]:
        out = {}
        for r in self.conn.execute("SELECT * FROM contacts"):
            out[(r["device_id"], r["app"])] = Contact(
                device_id=r["device_id"], app=r["app"], app_name=r["app_name"], first_seen=r["first_seen"],
                last_seen=r["last_seen"], counts=json.loads(r["counts"]), names=json.loads(r["names"]),
                confidence=r["confidence"], last_alert=r["last_alert"], alerts=r["alerts"])
        return out

    def load_devices(self) -> dict[str, DeviceRecord]:
        return {
            r["id"]: DeviceRecord(id=r["id"], first_seen=r["first_seen"], last_seen=r["last_seen"],
                                  macs=json.loads(r["macs"]), ips=json.loads(r["ips"]),
                                  hostname=r["hostname"], vendor=r["vendor"])
            for r in self.conn.execute("SELECT * FROM devices")
        }

    def alert_history(self, device_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql, args = "SELECT ts, device_id, app, reason, event FROM alerts", []
        if device_id:
            sql += " WHERE device_id = ?"
            args.append(device_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [{"ts": r["ts"], "device_id": r["device_id"], "app": r["app"], "reason": r["reason"],
                 "event": json.loads(r["event"])} for r in self.conn.execute(sql, args)]

    def devices(self, *, app: str | None = None, since: float | None = None,
                min_confidence: str | None = None, only_flagged: bool = False) -> list[dict[str, Any]]:
        """The inventory as plain dicts (the shape of DeviceInventory's to_dict)."""
        devices = self.load_devices()
        contacts = self.load_contacts()
        floor = CONFIDENCE_RANK.get(min_confidence or "", 0)
        by_device: dict[str, dict[str, Any]] = {}
        for c in contacts.values():
            if app and c.app != app:
                continue
            if since is not None and c.last_seen < since:
                continue
            if CONFIDENCE_RANK.get(c.confidence or "", 0) < floor:
                continue
            by_device.setdefault(c.device_id, {})[c.app] = {
                "app_name": c.app_name, "first_seen": c.first_seen, "last_seen": c.last_seen,
                "counts": c.counts, "names": c.names, "confidence": c.confidence, "alerts": c.alerts,
                "last_alert": c.last_alert}
        filtered = bool(app or since is not None or floor or only_flagged)
        out = []
        ids = sorted(set(devices) | set(by_device))
        for dev_id in ids:
            apps = by_device.get(dev_id, {})
            if filtered and not apps:
                continue
            dev = devices.get(dev_id)
            out.append({
                "id": dev_id, "macs": dev.macs if dev else [], "ips": dev.ips if dev else [],
                "hostname": dev.hostname if dev else None, "vendor": dev.vendor if dev else None,
                "first_seen": dev.first_seen if dev else min(a["first_seen"] for a in apps.values()),
                "last_seen": dev.last_seen if dev else max(a["last_seen"] for a in apps.values()),
                "apps": apps})
        return out
