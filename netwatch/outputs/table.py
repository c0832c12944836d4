"""The terminal summary: per device, per app, then totals."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import IO, Any

from netwatch.detect.devices import AppContact, Device
from netwatch.scan import ScanSummary

_TIER_RANK = {"low": 0, "medium": 1, "high": 2}
_OBSERVATION = "netwatch.observation"


class SeenNames:
    """For `--all` in the table: every name each device looked up or connected to, with its evidence.

    Fed the same events as the other formats; keeps at most `max_names` names per device and
    `max_devices` devices (the rest is counted and said), so memory stays bounded on any input.
    """

    def __init__(self, *, max_names: int = 50, max_devices: int = 100_000) -> None:
        self.names: dict[str, dict[str, Counter[str]]] = {}
        self.more: Counter[str] = Counter()  # device id -> names beyond max_names
        self.devices_dropped = 0
        self._max_names = max_names
        self._max_devices = max_devices

    def add(self, event: dict[str, Any]) -> None:
        nw = event.get("netwatch") or {}
        if event["event"]["dataset"] != _OBSERVATION or nw.get("evidence") == "dhcp_hostname" or not nw.get("name"):
            return  # DHCP host names are the device titles already
        device = nw["device"]["id"]
        names = self.names.get(device)
        if names is None:
            if len(self.names) >= self._max_devices:
                self.devices_dropped += 1
                return
            names = self.names[device] = {}
        evidence = names.get(nw["name"])
        if evidence is None:
            if len(names) >= self._max_names:
                self.more[device] += 1
                return
            evidence = names[nw["name"]] = Counter()
        evidence[nw["evidence"]] += 1

    def lines(self, device: str) -> list[str]:
        lines = [f"  seen   {name:<40} {' '.join(f'{kind}={n}' for kind, n in sorted(evidence.items()))}"
                 for name, evidence in sorted(self.names.get(device, {}).items())]
        if self.more[device]:
            lines.append(f"  seen   ... and {self.more[device]} more name(s) (all of them: --format jsonl --all)")
        return lines


def _clock(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "?"


def _device_title(device: Device) -> str:
    parts = [device.hostname or device.id]
    if device.hostname:
        parts.append(device.id)
    if device.vendor:
        parts.append(f"[{device.vendor}]")
    ips = [ip for ip in device.ips if ip != device.id]
    if ips:
        parts.append(", ".join(ips[:4]) + (" ..." if len(ips) > 4 else ""))
    return "  ".join(parts)


def _contact_line(contact: AppContact) -> str:
    label = "ALERT" if contact.alert else "note "
    total = sum(contact.counts.values())
    evidence = " ".join(f"{kind}={n}" for kind, n in sorted(contact.counts.items()))
    span = _clock(contact.first_seen)
    if contact.last_seen - contact.first_seen >= 1:
        span += " .. " + _clock(contact.last_seen)
    line = (f"  {label}  {contact.app_name:<22} {contact.confidence:<6}  {total:>5} contact{'s' if total != 1 else ' '}"
            f"  {evidence}\n         {span}  e.g. {', '.join(contact.names[:3])}")
    if contact.note and contact.confidence != "high":
        line += f"\n         {contact.note}"
    return line


def _blind_spot_lines(device: Device) -> list[str]:
    lines = []
    for key, evidence in sorted(device.blind_spots.items()):
        target = key.split(":", 1)[1]
        if evidence == "ech":
            lines.append(f"  blind  Encrypted Client Hello via {target}: real destination hidden")
        else:
            lines.append(f"  blind  encrypted DNS via {target}: DNS evidence incomplete for this device")
    return lines


def write_table(out: IO[str], devices: list[Device], summary: ScanSummary, *, policy: str, version: str,
                show_all: bool = False, seen: SeenNames | None = None) -> None:
    """Devices with alerts first (most alerting apps first), then vendor contacts, then totals.

    With `show_all` every device is listed, and with `seen` the other names each one used.
    """
    def weight(device: Device) -> tuple:
        alerts = [c for c in device.apps.values() if c.alert]
        best = max((_TIER_RANK.get(c.confidence, 0) for c in alerts), default=-1)
        return (-len(alerts), -best, device.hostname or device.id)

    shown = [d for d in devices if d.apps or d.blind_spots or show_all]
    shown.sort(key=weight)
    out.write(f"netwatch scan  policy {policy}  signatures {version}\n\n")
    if not shown:
        out.write("No device contacted a banned app or its vendor.\n\n")
    for device in shown:
        out.write(_device_title(device) + "\n")
        contacts = sorted(device.apps.values(),
                          key=lambda c: (not c.alert, -_TIER_RANK.get(c.confidence, 0), c.app_name))
        for contact in contacts:
            out.write(_contact_line(contact) + "\n")
        for line in _blind_spot_lines(device):
            out.write(line + "\n")
        if device.vendor_class:
            out.write(f"  dhcp   vendor class {device.vendor_class}\n")
        for line in seen.lines(device.id) if seen is not None else ():
            out.write(line + "\n")
        out.write("\n")
    if seen is not None:  # names of devices the inventory no longer holds (renamed or evicted)
        listed = {device.id for device in shown}
        for device_id in sorted(set(seen.names) - listed):
            out.write(device_id + "\n" + "".join(line + "\n" for line in seen.lines(device_id)) + "\n")
        if seen.devices_dropped:
            out.write(f"({seen.devices_dropped} name(s) of more devices not listed; all: --format jsonl)\n\n")

    counters = summary.counters
    alerting = sum(1 for d in devices if any(c.alert for c in d.apps.values()))
    rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    out.write(
        f"Totals: {alerting} device(s) with alerts, {counters.get('alerts', 0)} alert event(s), "
        f"{counters.get('events', 0)} other event(s), {len(devices)} device(s) seen\n"
        f"        {len([f for f in summary.files if not f.skipped])} file(s), {summary.frames:,} packets, "
        f"{summary.admitted:,} candidates parsed, {counters.get('malformed', 0):,} malformed skipped, "
        f"{summary.seconds:.2f} s ({rate:,.0f} packets/s)\n"
    )
    if summary.interrupted:
        out.write("        interrupted (Ctrl-C): these results cover the input read until then\n")
    if counters.get("internal_errors"):
        out.write(f"        {counters['internal_errors']} packet(s) hit an internal error and were skipped\n")
