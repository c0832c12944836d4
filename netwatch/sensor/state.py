"""The sensor's persistent state: an embedded SQLite database in WAL mode.

Why SQLite: one file, no server, readers (`netwatch devices`, `netwatch health`) work
while the sensor writes thanks to WAL, and a crash loses at most the last flush.
Tables: devices, contacts (one row per device and app), alerts (history), meta
(schema version, heartbeat). Lists are stored as JSON text.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import stat
import time
import urllib.parse
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


_TABLES = frozenset({"meta", "devices", "contacts", "alerts"})
DB_FILE_MODE = 0o640  # group-readable for an operator group; never world-readable (alert history)


class StateError(Exception):
    """The database cannot be opened or written (message has the path and the reason)."""


class StateRefused(StateError):
    """Opening would be unsafe or would fight another writer (locked, symlink): not worth retrying."""


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def _take_writer_lock(db_path: Path) -> int:
    """An exclusive flock on `<db>.lock` holding our pid; the kernel drops it when we die.

    Two sensors writing one database would emit every alert twice and overwrite each other's
    counts, so the second one is refused with the first one's pid.
    """
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, DB_FILE_MODE)
    except OSError as exc:
        raise StateError(f"{path}: cannot create the lock file: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StateRefused(f"{db_path}: in use by another netwatch sensor (pid {holder}); stop it or give "
                           f"this one its own --db") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _readonly_uri(path: Path) -> str:
    """A read-only SQLite URI for any file name: `#`, `?` and `%` are escaped (RFC 3986)."""
    return "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"


def _create_private(path: Path, follow_symlink: bool) -> None:
    """Create the database file 0640 (SQLite gives its WAL and shm the same mode) and take
    world access away from one an earlier version created 0644."""
    if path.is_symlink() and not follow_symlink:
        raise StateRefused(f"{path}: is a symbolic link; refusing to write through it "
                           "(set follow_db_symlink / --follow-db-symlink if that is intended)")
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if follow_symlink else os.O_NOFOLLOW)
    fd = os.open(path, flags, DB_FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o007:
            os.fchmod(fd, mode & ~0o007)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            side_mode = stat.S_IMODE(side.lstat().st_mode)
            if side_mode & 0o007 and not side.is_symlink():
                side.chmod(side_mode & ~0o007)


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

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False,
                 follow_symlink: bool = False) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        if readonly:
            self._open_readonly()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path, follow_symlink)
            self._lock_fd = _take_writer_lock(self.path)
        except OSError as exc:
            raise StateError(f"{self.path}: {exc.strerror or exc}") from exc
        try:
            self.conn = sqlite3.connect(self.path, timeout=10)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.conn.commit()
        except (sqlite3.Error, OSError) as exc:
            self._release_lock()
            raise StateError(f"{self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row

    def _open_readonly(self) -> None:
        """Open for `devices` / `health`; anything that is not a sensor database is a StateError."""
        if self.path.is_dir():
            raise StateError(f"{self.path}: is a directory, not a database")
        if not self.path.exists():
            raise StateError(f"{self.path}: no such database")
        try:
            self.conn = sqlite3.connect(_readonly_uri(self.path), uri=True, timeout=10)
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: not a netwatch state database ({exc})") from exc
        if not _TABLES.issubset(tables):
            self.conn.close()
            raise StateError(f"{self.path}: not a netwatch state database (no sensor tables)")
        self.conn.row_factory = sqlite3.Row

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        self.conn.close()
        self._release_lock()

    # -- writes (caller commits via write_batch) -------------------------------------
    def write_batch(self, devices: Iterable[DeviceRecord], contacts: Iterable[Contact],
                    alerts: Iterable[tuple[float, str, str, str, dict]], *,
                    forget_devices: Iterable[str] = (), forget_contacts: Iterable[tuple[str, str]] = ()) -> None:
        """Write everything in one transaction; raise StateError (the caller keeps its data).

        `forget_*` are rows the sensor evicted from its bounded memory: deleting them keeps the
        database within the same bound.
        """
        try:
            with self.conn:
                self.conn.executemany("DELETE FROM devices WHERE id = ?", [(d,) for d in forget_devices])
                self.conn.executemany("DELETE FROM contacts WHERE device_id = ? AND app = ?", list(forget_contacts))
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
    def trim(self, max_devices: int, max_contacts: int) -> int:
        """Keep only the most recently seen rows within the sensor's caps (a database written
        with larger caps, or by an older version, shrinks to them)."""
        try:
            with self.conn:
                n = self.conn.execute(
                    "DELETE FROM devices WHERE id NOT IN (SELECT id FROM devices ORDER BY last_seen DESC LIMIT ?)",
                    (max_devices,)).rowcount
                n += self.conn.execute(
                    "DELETE FROM contacts WHERE rowid NOT IN "
                    "(SELECT rowid FROM contacts ORDER BY last_seen DESC LIMIT ?)", (max_contacts,)).rowcount
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: {exc}") from exc
        return n

    def get_meta(self, key: str) -> Any:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError) as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def load_contacts(self) -> dict[tuple[str, str], Contact]:
        """All contacts, least recently seen first (the order an LRU wants)."""
        try:
            return self._load_contacts()
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def _load_contacts(self) -> dict[tuple[str, str], Contact]:
        out = {}
        for r in self.conn.execute("SELECT * FROM contacts ORDER BY last_seen"):
            out[(r["device_id"], r["app"])] = Contact(
                device_id=r["device_id"], app=r["app"], app_name=r["app_name"], first_seen=r["first_seen"],
                last_seen=r["last_seen"], counts=json.loads(r["counts"]), names=json.loads(r["names"]),
                confidence=r["confidence"], last_alert=r["last_alert"], alerts=r["alerts"])
        return out

    def load_devices(self) -> dict[str, DeviceRecord]:
        """All devices, least recently seen first."""
        try:
            return {
                r["id"]: DeviceRecord(id=r["id"], first_seen=r["first_seen"], last_seen=r["last_seen"],
                                      macs=json.loads(r["macs"]), ips=json.loads(r["ips"]),
                                      hostname=r["hostname"], vendor=r["vendor"])
                for r in self.conn.execute("SELECT * FROM devices ORDER BY last_seen")
            }
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def known_apps(self) -> list[str]:
        """App ids that have contacts in this database."""
        try:
            return [r[0] for r in self.conn.execute("SELECT DISTINCT app FROM contacts")]
        except sqlite3.Error as exc:
            raise StateError(f"{self.path}: {exc}") from exc

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
