"""Click commands `sensor`, `devices` and `health`, listed by netwatch.cli."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click

from netwatch.sensor.config import DEFAULT_DB, ConfigError, build_config, load_config_file

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"netwatch: {message}", err=True)
    sys.exit(EXIT_USAGE)


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file; every option below can be set there (CLI wins).")
@click.option("-i", "--interface", "interfaces", multiple=True, help="Interface to watch (repeatable; 'any').")
@click.option("--workers", type=int, default=None, help="Capture processes per interface (PACKET_FANOUT). [1]")
@click.option("--snaplen", type=int, default=None, help="Bytes captured per packet. [65535]")
@click.option("--promisc/--no-promisc", default=None, help="Promiscuous mode. [on]")
@click.option("--buffer-size-mb", type=int, default=None, help="Kernel capture ring per worker, MiB. [64]")
@click.option("--bpf", default=None, help="Kernel BPF filter applied before the C flow filter. [none]")
@click.option("--batch-size", type=int, default=None, help="Packets per libpcap batch. [4096]")
@click.option("--timeout-ms", type=int, default=None, help="libpcap read timeout. [100]")
@click.option("--max-flows", type=int, default=None, help="C flow table entries per worker. [262144]")
@click.option("--head-packets", type=int, default=None, help="Packets per flow direction inspected. [16]")
@click.option("--head-bytes", type=int, default=None, help="Payload bytes per flow direction inspected. [32768]")
@click.option("--idle-timeout", type=float, default=None, help="Seconds before a quiet flow is new. [120]")
@click.option("-o", "--output", default=None, help="JSON lines output file; '-' = stdout, '' = none. [-]")
@click.option("--db", default=None, help=f"SQLite state database. [{DEFAULT_DB}]")
@click.option("--follow-db-symlink", is_flag=True, default=None,
              help="Accept a --db path that is a symbolic link (refused by default).")
@click.option("--max-devices", type=int, default=None,
              help="Devices remembered per worker and in the database; least recently seen evicted. [100000]")
@click.option("--retention-days", type=float, default=None, help="Forget contacts older than this; 0 = never. [90]")
@click.option("--reminder-interval", type=float, default=None,
              help="Seconds between reminder alerts per (device, app). [3600]")
@click.option("--signatures", multiple=True, help="Signature overlay directory (repeatable).")
@click.option("--policy", default=None, help="Policy id. [the set's default, eo13971]")
@click.option("--min-confidence", type=click.Choice(["low", "medium", "high"]), default=None,
              help="Lowest tier that raises an alert. [the policy's]")
@click.option("--all", "emit_all", is_flag=True, default=None, help="Also output unmatched observations.")
@click.option("--forward", multiple=True, metavar="URL", help="Forward alerts to a SIEM (repeatable).")
@click.option("--forward-state-dir", default=None, help="Forwarder queues. [<db dir>/forward]")
@click.option("--forward-events", type=click.Choice(["alerts", "all"]), default=None,
              help="What forwarders get: alerts, or all reported events (also notices). [alerts]")
@click.option("--metrics-port", type=int, default=None, help="Prometheus endpoint port; 0 = off. [0]")
@click.option("--metrics-address", default=None, help="Prometheus endpoint address. [127.0.0.1]")
@click.option("--evidence-dir", default=None, help="Rotating pcap of alert-triggering packets. [off]")
@click.option("--evidence-max-mb", type=float, default=None, help="Evidence pcap size before rotation. [16]")
@click.option("--evidence-files", type=int, default=None, help="Evidence pcap files kept. [8]")
@click.option("--stats-interval", type=float, default=None, help="Seconds between statistics lines. [30]")
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None, help="Log line format. [json]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="[info]")
@click.option("--sensor-name", default=None, help="observer.hostname in events. [host name]")
def sensor(config_path: str | None, **cli: Any) -> None:
    """Watch live interfaces, alert on banned-app contacts, keep a device inventory."""
    from netwatch.sensor.daemon import Sensor
    from netwatch.sensor.logs import setup_logging

    try:
        cfg = build_config(config_path, cli)
    except ConfigError as exc:
        _fail(str(exc))
    logger = setup_logging(cfg.log_format, cfg.log_level)
    sys.exit(Sensor(cfg, config_path, cli, logger).run())


def parse_since(value: str, now: float | None = None) -> float:
    """'24h', '7d', '30m', '90s' back from now, or an ISO 8601 date/time (UTC if no zone)."""
    now = time.time() if now is None else now
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * unit
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use 24h, 7d or an ISO date") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _iso(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339(ts: float | None) -> str | None:
    """Machine output carries RFC 3339 UTC like every other netwatch event, never epoch floats."""
    from netwatch.outputs.ecs import rfc3339

    return rfc3339(ts) if isinstance(ts, (int, float)) else None


_TIME_FIELDS = ("first_seen", "last_seen", "last_alert")


def device_document(dev: dict[str, Any]) -> dict[str, Any]:
    """One `devices --format jsonl` line: the inventory dict with its times in RFC 3339."""
    out = {k: (_rfc3339(v) if k in _TIME_FIELDS else v) for k, v in dev.items()}
    out["apps"] = {app: {k: (_rfc3339(v) if k in _TIME_FIELDS else v) for k, v in contact.items()}
                   for app, contact in dev["apps"].items()}
    return out


class FormatChoice(click.Choice):
    """`--format` choices per the project's convention; older spellings still work, unlisted."""

    def __init__(self, choices: list[str], aliases: dict[str, str]) -> None:
        super().__init__(choices)
        self.aliases = aliases

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(self.aliases.get(value, value), param, ctx)


def _known_apps(state: Any) -> list[str]:
    """App ids `--app` accepts: the bundled set's apps and vendors, and whatever the database holds
    (apps from the sensor's overlays)."""
    from netwatch.signatures import load_signature_set

    known = set(state.known_apps())
    try:
        sigset = load_signature_set()
    except Exception:  # the database alone still names the apps it holds
        sigset = None
    if sigset is not None:
        known.update(sigset.apps)
        known.update(f"vendor:{r.vendor}" for r in sigset.rules.values() if not r.apps and r.vendor)
    return sorted(known)


def _db_path(db: str | None, config_path: str | None) -> str:
    if db:
        return db
    if config_path:
        try:
            return load_config_file(config_path).get("db", DEFAULT_DB)
        except ConfigError as exc:
            _fail(str(exc))
    return DEFAULT_DB


def _flat_rows(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for dev in devices:
        apps = dev["apps"] or {"": None}
        for app, contact in apps.items():
            contact = contact or {}
            rows.append({
                "device": dev["id"], "hostname": dev.get("hostname") or "", "macs": " ".join(dev["macs"]),
                "ips": " ".join(dev["ips"]), "vendor": dev.get("vendor") or "", "app": app,
                "confidence": contact.get("confidence") or "",
                "contacts": sum((contact.get("counts") or {}).values()),
                "evidence": " ".join(f"{k}={v}" for k, v in sorted((contact.get("counts") or {}).items())),
                "first_seen": _iso(contact.get("first_seen") or dev.get("first_seen")),
                "last_seen": _iso(contact.get("last_seen") or dev.get("last_seen")),
                "names": " ".join(contact.get("names") or ()),
            })
    return rows


DEVICE_COLUMNS = ("device", "hostname", "macs", "ips", "vendor", "app", "confidence", "contacts", "evidence",
                  "first_seen", "last_seen", "names")


@click.command()
@click.option("--db", default=None, help=f"State database of the sensor. [{DEFAULT_DB}]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Take the database path from this sensor config file.")
@click.option("--format", "fmt", type=FormatChoice(["table", "jsonl", "csv"], {"json": "jsonl", "text": "table"}),
              default="table", show_default=True)
@click.option("--app", default=None, help="Only devices that contacted this app id (e.g. alipay, wechat_pay).")
@click.option("--since", default=None, help="Only contacts seen since (24h, 7d, ISO date).")
@click.option("--min-confidence", type=click.Choice(["low", "medium", "high"]), default=None)
@click.option("--all", "show_all", is_flag=True, help="Also devices with no app contact.")
def devices(db: str | None, config_path: str | None, fmt: str, app: str | None, since: str | None,
            min_confidence: str | None, show_all: bool) -> None:
    """List the sensor's device inventory (works while the sensor runs)."""
    from netwatch.sensor.state import StateDB, StateError

    path = _db_path(db, config_path)
    cutoff = parse_since(since) if since else None
    try:
        state = StateDB(path, readonly=True)
        try:
            if app is not None and app not in (valid := _known_apps(state)):
                _fail(f"unknown app {app!r}; valid app ids: {', '.join(valid)}")
            found = state.devices(app=app, since=cutoff, min_confidence=min_confidence, only_flagged=not show_all)
        finally:
            state.close()
    except StateError as exc:
        _fail(str(exc))
    if fmt == "jsonl":
        for dev in found:
            click.echo(json.dumps(device_document(dev), separators=(",", ":"), ensure_ascii=False))
        return
    rows = _flat_rows(found)
    if fmt == "csv":
        from netwatch.outputs.csv import CsvWriter

        writer = CsvWriter(sys.stdout, columns=DEVICE_COLUMNS)
        for row in rows:
            writer.write(row)
        return
    if not rows:
        click.echo("no devices")
        return
    columns = ["device", "hostname", "ips", "app", "confidence", "contacts", "last_seen", "names"]
    widths = {c: min(40, max(len(c), *(len(str(r[c])) for r in rows))) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r[c])[: widths[c]].ljust(widths[c]) for c in columns))


def check_health(db_path: str, max_age: float | None = None, now: float | None = None) -> tuple[bool, dict]:
    """(healthy, report) from the heartbeat the sensor writes into its database."""
    from netwatch.sensor.state import StateDB, StateError

    now = time.time() if now is None else now
    report: dict[str, Any] = {"db": db_path}
    try:
        state = StateDB(db_path, readonly=True)
        beat = state.get_meta("heartbeat")
        state.close()
    except (StateError, Exception) as exc:
        report["problem"] = f"cannot read the state database: {exc}"
        return False, report
    if not beat:
        report["problem"] = "no heartbeat: the sensor never ran with this database"
        return False, report
    age = now - float(beat.get("ts", 0))
    limit = max_age if max_age is not None else max(90.0, 3 * float(beat.get("stats_interval", 30)))
    totals = beat.get("totals", {})
    report.update(state=beat.get("state"), pid=beat.get("pid"), heartbeat_age_s=round(age, 1),
                  workers_alive=beat.get("workers_alive"), workers=beat.get("workers"),
                  interfaces=beat.get("interfaces"), kernel_dropped=totals.get("kernel_dropped", 0),
                  packets_seen=totals.get("frames", 0), signature_version=beat.get("signature_version"))
    problems = []
    if beat.get("state") != "running":
        problems.append(f"sensor state is {beat.get('state')!r}")
    if age > limit:
        problems.append(f"heartbeat is {age:.0f}s old (limit {limit:.0f}s)")
    pid = beat.get("pid")
    if isinstance(pid, int) and beat.get("state") == "running":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            problems.append(f"sensor process {pid} is gone")
        except PermissionError:
            pass  # exists, owned by another user (the sensor's service account)
    expected = (beat.get("workers") or 1) * len(beat.get("interfaces") or [1])
    if beat.get("state") == "running" and (beat.get("workers_alive") or 0) < expected:
        problems.append(f"{beat.get('workers_alive')} of {expected} capture workers alive")
    if problems:
        report["problem"] = "; ".join(problems)
    return not problems, report


@click.command()
@click.option("--db", default=None, help=f"State database of the sensor. [{DEFAULT_DB}]")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--max-age", type=float, default=None,
              help="Oldest acceptable heartbeat, seconds. [max(90, 3 x stats_interval)]")
@click.option("--format", "fmt", type=FormatChoice(["table", "json"], {"jsonl": "json", "text": "table"}),
              default="json", show_default=True, help="A JSON document (for monitoring agents) or a table.")
def health(db: str | None, config_path: str | None, max_age: float | None, fmt: str) -> None:
    """Exit 0 when the sensor is running and recent, 1 otherwise; prints a report."""
    ok, report = check_health(_db_path(db, config_path), max_age)
    report["healthy"] = ok
    if fmt == "json":
        click.echo(json.dumps(report, sort_keys=True))
    else:
        width = max(len(k) for k in report)
        for key in sorted(report):
            value = report[key]
            text = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
            click.echo(f"{key.ljust(width)}  {text}")
    sys.exit(EXIT_OK if ok else EXIT_UNHEALTHY)
