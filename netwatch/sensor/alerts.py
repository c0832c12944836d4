"""Alert aggregation per (device, app), so a chatty app cannot flood a SIEM.

The first contact of a device with an app is reported at once; later contacts only update
counters and last-seen, and a reminder is reported at most once per `reminder_interval`.
Events that name no app (blind spots, plain observations) pass through unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
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
    """Keeps one Contact per (device, app); decides first contact / reminder / repeat.

    Memory is bounded: at most `max_contacts` contacts, kept in least-recently-used order so
    eviction is O(1); evicted keys are collected in `evicted` for the database to forget too.
    """

    def __init__(self, contacts: dict[tuple[str, str], Contact] | None = None, *,
                 reminder_interval: float = 3600.0, max_contacts: int = 400_000) -> None:
        self.contacts: OrderedDict[tuple[str, str], Contact] = OrderedDict(contacts or {})
        self.reminder_interval = reminder_interval
        self.max_contacts = max_contacts
        self.dirty: set[tuple[str, str]] = set()
        self.evicted: set[tuple[str, str]] = set()
        self.evicted_total = 0
        self.repeats = 0

    def load(self, contacts: dict[tuple[str, str], Contact]) -> None:
        """Take contacts read back from the database (least recently seen first)."""
        self.contacts.update(contacts)
        while len(self.contacts) > self.max_contacts:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        key, _ = self.contacts.popitem(last=False)
        self.dirty.discard(key)
        self.evicted.add(key)
        self.evicted_total += 1

    def offer(self, event: dict[str, Any], ts: float) -> Verdict:
        key = event_key(event)
        if key is None:
            return Verdict(reason="passthrough", contact=None)
        nw = event["netwatch"]
        contact = self.contacts.get(key)
        is_new = contact is None
        if contact is None:
            while len(self.contacts) >= self.max_contacts:
                self._evict_oldest()
            contact = Contact(device_id=key[0], app=key[1], first_seen=ts, last_seen=ts,
                              app_name=nw.get("app_name"))
            self.contacts[key] = contact
            self.evicted.discard(key)
        else:
            self.contacts.move_to_end(key)
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
