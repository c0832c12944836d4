"""Sensor configuration: defaults < TOML file < command line.

Every option can be set in the TOML file (top-level keys, `-` or `_` both accepted) or
on the command line; the CLI wins. Unknown keys and wrong types are rejected with the
file name and key so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the `tomli` backport
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_DB = "/var/lib/netwatch/netwatch.db"
# "alerts": first contacts and reminders (event.kind "alert"); "all": also blind-spot notices,
# vendor-level notes and, with emit_all, every observation.
FORWARD_EVENT_CHOICES = ("alerts", "all")


class ConfigError(Exception):
    """The configuration file or an option is invalid (message names which)."""


@dataclass(slots=True)
class SensorConfig:
    """All sensor options with their documented defaults (see docs/sensor.md)."""

    interfaces: list[str] = field(default_factory=list)  # -i; "any" = all interfaces
    workers: int = 1  # processes per interface, joined with PACKET_FANOUT_HASH
    snaplen: int = 65535
    promisc: bool = True
    buffer_size_mb: int = 64  # kernel capture ring per worker
    bpf: str = ""  # kernel filter applied before the C flow filter ("" = everything)
    batch_size: int = 4096  # packets per libpcap batch
    timeout_ms: int = 100
    max_flows: int = 262144  # C flow table entries per worker (fixed memory)
    head_packets: int = 16  # packets per flow direction handed to Python (an 11 kB ClientHello spans 12)
    head_bytes: int = 32768  # payload bytes per flow direction handed to Python
    idle_timeout: float = 120.0  # seconds before a quiet flow counts as new
    output: str = "-"  # JSON lines of alerts; "-" = standard output, "" = none
    db: str = DEFAULT_DB  # SQLite state database (WAL)
    follow_db_symlink: bool = False  # refuse a db path that is a symbolic link unless this is set
    max_devices: int = 100_000  # devices kept per worker and in the parent/database (least recent evicted)
    retention_days: float = 90.0  # forget contacts/alerts older than this (0 = keep forever)
    reminder_interval: float = 3600.0  # seconds between reminder alerts per (device, app)
    signatures: list[str] = field(default_factory=list)  # overlay directories
    policy: str | None = None
    min_confidence: str | None = None  # None = the policy's default
    emit_all: bool = False  # also output observations that matched nothing
    forward: list[str] = field(default_factory=list)  # forwarder URLs (netwatch.forward)
    forward_state_dir: str = ""  # default: <db dir>/forward
    forward_events: str = "alerts"  # what forwarders get: "alerts", or "all" reported events
    metrics_port: int = 0  # Prometheus endpoint; 0 = off
    metrics_address: str = "127.0.0.1"
    evidence_dir: str = ""  # rotating pcap of alert-triggering packets; "" = off
    evidence_max_mb: float = 16.0  # rotate a pcap file at this size
    evidence_files: int = 8  # keep this many rotated files
    stats_interval: float = 30.0  # seconds between statistics log lines (and DB heartbeats)
    log_format: str = "json"  # json | text
    log_level: str = "info"
    sensor_name: str = ""  # observer.hostname; default: the host name

    # options that SIGHUP can change without re-opening capture
    RELOADABLE = frozenset({
        "signatures", "policy", "min_confidence", "emit_all", "reminder_interval", "retention_days",
        "log_level", "stats_interval", "forward_events",
    })

    def validate(self) -> None:
        if self.forward_events not in FORWARD_EVENT_CHOICES:
            raise ConfigError(f"forward_events must be one of {', '.join(FORWARD_EVENT_CHOICES)}, "
                              f"not {self.forward_events!r}")
        if not self.interfaces:
            raise ConfigError("no interface: give -i IFACE or `interfaces = [...]` in the config file")
        if self.workers < 1 or self.workers > 64:
            raise ConfigError(f"workers must be 1..64, not {self.workers}")
        if self.workers > 1 and "any" in self.interfaces:
            raise ConfigError("workers > 1 needs a real interface: PACKET_FANOUT does not apply to 'any'")
        for name in ("snaplen", "buffer_size_mb", "batch_size", "max_flows", "head_packets", "head_bytes",
                     "max_devices"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.reminder_interval < 0 or self.retention_days < 0:
            raise ConfigError("reminder_interval and retention_days must be >= 0")
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"log_format must be json or text, not {self.log_format!r}")
        if self.min_confidence not in (None, "low", "medium", "high"):
            raise ConfigError(f"min_confidence must be low, medium or high, not {self.min_confidence!r}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port must be 0..65535, not {self.metrics_port}")

    def replace(self, **changes: Any) -> SensorConfig:
        return dataclasses.replace(self, **changes)


def option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SensorConfig)]


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a file value against the field's default type."""
    field_def = {f.name: f for f in dataclasses.fields(SensorConfig)}[name]
    default = (field_def.default_factory() if field_def.default_factory is not dataclasses.MISSING
               else field_def.default)
    if isinstance(default, list):
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{source}: {name}: expected a list of strings")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {name}: expected true or false")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {name}: expected a number")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {name}: expected an integer")
    if isinstance(value, str):  # str or optional str
        return value
    raise ConfigError(f"{source}: {name}: expected a string")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into {option: value}; raise ConfigError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8; a binary file or another encoding is no config
        raise ConfigError(f"{path}: not a TOML file (not UTF-8 text at byte {exc.start})") from exc
    if isinstance(raw.get("sensor"), dict):  # a [sensor] table is accepted as well as top-level keys
        raw = {**{k: v for k, v in raw.items() if k != "sensor"}, **raw["sensor"]}
    known = set(option_names())
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name == "interface":
            name = "interfaces"
        if name not in known:
            raise ConfigError(f"{path}: unknown option {key!r}")
        values[name] = _coerce(name, value, str(path))
    return values


def build_config(config_file: str | Path | None, cli: dict[str, Any]) -> SensorConfig:
    """Merge defaults, the file and the CLI (None / empty tuples on the CLI mean 'not given')."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    from_cli = set()
    for name, value in cli.items():
        if value is None or (isinstance(value, tuple) and not value):
            continue
        values[name] = list(value) if isinstance(value, tuple) else value
        from_cli.add(name)
    try:
        cfg = SensorConfig(**values)
        cfg.validate()
    except (TypeError, ConfigError) as exc:
        # name the file unless the bad value came from the command line
        if config_file and not any(re.search(rf"\b{name}\b", str(exc)) for name in from_cli):
            raise ConfigError(f"{config_file}: {exc}") from exc
        raise ConfigError(str(exc)) from exc
    return cfg
