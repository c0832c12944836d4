"""Alert aggregation per (device, app), so a chatty app cannot flood a SIEM.

The first contact of a device with an app is reported at once; later contacts only update
counters and last-seen, and a reminder is reported at most once per `reminder_interval`.
Events that name no app (blind spots, plain observations) pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netwatch.sensor.state import Contact

REASON_FIRST = "first_contact"
REASON_REMINDER = "reminder"


@dataclass(slots=True)
class Verdict:
    """What to do with one event: `reason` None means 'counted, not reported'."""

    reason: str | None
    contact: Contact | None


def event_key(event: dict[str, Any]) -> tuple[str, str] | None:
    """(device id, app) of an event about an app contact, else None."""
    nw = event.get("netwatch") or {}
    app = nw.get("app")
    if not app:
        vendor = nw.get("vendor")
        if not vendor or not nw.get("signature"):
            return None
        app = f"vendor:{vendor}"
    device = (nw.get("device") or {}).get("id")
    if not device:
        return None
    return device, app


class AlertAggregator:
    """Keeps one Contact per (device, app); decides first contact / reminder / repeat."""

    def __init__(self, contacts: dict[tuple[str, str], Contact] | None = None, *,
                 reminder_interval: float = 3600.0, max_contacts: int = 1_000_000) -> None:
        self.contacts: dict[tuple[str, str], Contact] = contacts if contacts is not None else {}
        self.reminder_interval = reminder_interval
        self.max_contacts = max_contacts
        self.dirty: set[tuple[str, str]] = set()
        self.repeats = 0

    def offer(self, event: dict[str, Any], ts: float) -> Verdict:
        key = event_key(event)
        if key is None:
            return Verdict(reason="passthrough", contact=None)
        nw = event["netwatch"]
        contact = self.contacts.get(key)
        is_new = contact is None
        if contact is None:
            if len(self.contacts) >= self.max_contacts:  # bounded: drop the oldest-seen contact from memory
                oldest = min(self.contacts, key=lambda k: self.contacts[k].last_seen)
                del self.contacts[oldest]
            contact = Contact(device_id=key[0], app=key[1], first_seen=ts, last_seen=ts,
                              app_name=nw.get("app_name"))
            self.contacts[key] = contact
        contact.add(ts, nw.get("evidence") or "unknown", nw.get("name"), nw.get("confidence"))
        self.dirty.add(key)
        if is_new or contact.last_alert is None:
            reason: str | None = REASON_FIRST
        elif ts - contact.last_alert >= self.reminder_interval:
            reason = REASON_REMINDER
        else:
            self.repeats += 1
            return Verdict(reason=None, contact=contact)
        contact.last_alert = ts
        contact.alerts += 1
        return Verdict(reason=reason, contact=contact)

    def take_dirty(self) -> list[Contact]:
        out = [self.contacts[k] for k in self.dirty if k in self.contacts]
        self.dirty.clear()
        return out


def annotate(event: dict[str, Any], reason: str, contact: Contact) -> dict[str, Any]:
    """The event as reported: `netwatch.aggregation` says why and how often so far."""
    from netwatch.outputs.ecs import rfc3339

    out = dict(event)
    out["netwatch"] = {**event["netwatch"], "aggregation": {
        "reason": reason,
        "count": contact.total,
        "counts": dict(contact.counts),
        "first_seen": rfc3339(contact.first_seen),
        "last_seen": rfc3339(contact.last_seen),
        "alerts": contact.alerts,
    }}
    return out
