"""The terminal summary: per device, per app, then totals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import IO

from netwatch.detect.devices import AppContact, Device
from netwatch.scan import ScanSummary

_TIER_RANK = {"low": 0, "medium": 1, "high": 2}


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
                show_all: bool = False) -> None:
    """Devices with alerts first (most alerting apps first), then vendor contacts, then totals."""
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
        out.write("\n")

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
    if counters.get("internal_errors"):
        out.write(f"        {counters['internal_errors']} packet(s) hit an internal error and were skipped\n")
