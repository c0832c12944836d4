"""The device inventory: who is on the network, and which banned apps each one contacted.

A device is its MAC address where the capture shows one (Ethernet, SLL), otherwise its IP
address. Addresses learned from Ethernet frames and DHCP leases map an IP seen later without a
MAC (raw-IP or tunnelled links) back to the MAC's device. Memory is bounded: the inventory keeps
at most `max_devices` devices, dropping the least recently seen when full.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

# How many example names a device keeps per app: enough to show an analyst, bounded for memory.
MAX_EXAMPLE_NAMES = 5
MAX_IPS_PER_DEVICE = 32


@lru_cache(maxsize=1)
def _oui_registry() -> tuple[bytes, str] | None:
    """The IEEE OUI registry files that netaddr ships: (index text, path of the registry).

    netaddr's own lookup parses its whole index on first use (~60 ms, a tenth of a bulk scan);
    one `find` in the raw index and one seek into the registry cost about 2 ms.
    """
    spec = importlib.util.find_spec("netaddr")
    if spec is None or not spec.origin:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "eui")
    try:
        with open(os.path.join(folder, "oui.idx"), "rb") as index:
            return b"\n" + index.read(), os.path.join(folder, "oui.txt")
    except OSError:
        return None


@lru_cache(maxsize=4096)
def mac_vendor(mac: str) -> str | None:
    """Vendor of a MAC's OUI from the IEEE registry; '(randomized)' for locally administered MACs.

    Phones and laptops randomise their MAC per network (the locally administered bit, 0x02 of
    the first octet); such a MAC has no vendor, and saying so helps the analyst.
    """
    try:
        oui = int(mac.replace(":", "").replace("-", "")[:6], 16)
    except ValueError:
        return None
    first = oui >> 16
    if first & 0x01:
        return None  # a group address never identifies one device
    if first & 0x02:
        return "(randomized)"
    registry = _oui_registry()
    if registry is None:
        return None
    index, path = registry
    start = index.find(b"\n%d," % oui)
    if start < 0:
        return None
    end = index.find(b"\n", start + 1)
    line = index[start + 1:end if end > 0 else len(index)]
    try:
        _, offset, size = line.split(b",")
        with open(path, "rb") as registry_file:
            registry_file.seek(int(offset))
            record = registry_file.read(min(int(size), 4096))
    except (OSError, ValueError):
        return None
    first_line = record.split(b"\n", 1)[0]
    if b"(hex)" not in first_line:
        return None
    return first_line.split(b"(hex)", 1)[1].strip().decode("utf-8", "replace") or None


@dataclass(slots=True)
class AppContact:
    """What one device did with one app."""

    app: str
    app_name: str
    confidence: str  # the highest tier seen for this app
    alert: bool
    first_seen: float
    last_seen: float
    counts: dict[str, int] = field(default_factory=dict)  # evidence kind -> count
    names: list[str] = field(default_factory=list)  # example names, first seen first
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "app": self.app,
            "app_name": self.app_name,
            "confidence": self.confidence,
            "alert": self.alert,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "counts": dict(self.counts),
            "names": list(self.names),
            "note": self.note,
        }


@dataclass(slots=True)
class Device:
    """One host on the monitored network."""

    id: str
    mac: str | None
    ips: list[str] = field(default_factory=list)
    hostname: str | None = None
    vendor_class: str | None = None
    vendor: str | None = None
    first_seen: float = 0.0
    last_seen: float = 0.0
    apps: dict[str, AppContact] = field(default_factory=dict)
    blind_spots: dict[str, str] = field(default_factory=dict)  # resolver or ECH cover name -> evidence kind

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "mac": self.mac,
            "ips": list(self.ips),
            "hostname": self.hostname,
            "vendor_class": self.vendor_class,
            "vendor": self.vendor,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "apps": {app: contact.to_dict() for app, contact in self.apps.items()},
            "blind_spots": dict(self.blind_spots),
        }


_TIER_RANK = {"low": 0, "medium": 1, "high": 2}


class DeviceInventory:
    """Devices keyed by MAC (or IP), with an IP -> MAC map learned from the traffic."""

    def __init__(self, *, max_devices: int = 100_000, max_ip_map: int = 200_000) -> None:
        self._devices: OrderedDict[str, Device] = OrderedDict()
        self._ip_to_mac: OrderedDict[str, str] = OrderedDict()
        self._max_devices = max_devices
        self._max_ip_map = max_ip_map
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._devices)

    def devices(self) -> list[Device]:
        return list(self._devices.values())

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def learn_ip(self, ip: str, mac: str) -> None:
        """Remember that `ip` belongs to `mac` (from an Ethernet frame or a DHCP lease)."""
        known = self._ip_to_mac.get(ip)
        if known == mac:
            self._ip_to_mac.move_to_end(ip)
            return
        self._ip_to_mac[ip] = mac
        if len(self._ip_to_mac) > self._max_ip_map:
            self._ip_to_mac.popitem(last=False)
        # A device first known only by this IP now has a MAC: fold it in.
        orphan = self._devices.pop(ip, None)
        if orphan is not None:
            target = self._device_for(mac, ip, orphan.first_seen)
            _merge(target, orphan)

    def device(self, ip: str, mac: str | None, ts: float) -> Device:
        """The device behind a packet's source, created on first sight."""
        if mac is None:
            mac = self._ip_to_mac.get(ip)
        elif ip:
            self.learn_ip(ip, mac)
        device = self._device_for(mac, ip, ts)
        if ip and ip not in device.ips and len(device.ips) < MAX_IPS_PER_DEVICE:
            device.ips.append(ip)
        if ts > device.last_seen:
            device.last_seen = ts
        if not device.first_seen or ts < device.first_seen:
            device.first_seen = ts
        return device

    def _device_for(self, mac: str | None, ip: str, ts: float) -> Device:
        key = mac or ip
        device = self._devices.get(key)
        if device is None:
            device = Device(id=key, mac=mac, first_seen=ts, last_seen=ts)
            if mac:
                device.vendor = mac_vendor(mac)
            self._devices[key] = device
            if len(self._devices) > self._max_devices:
                self._devices.popitem(last=False)
                self.evicted += 1
        else:
            self._devices.move_to_end(key)
        return device

    def absorb(self, other: Device) -> Device:
        """Fold a device found by another analysis (another file, a worker) into this inventory.

        A device with a MAC teaches this inventory its addresses (folding devices known here only by
        one of them); a device known only by IP joins the MAC device that address belongs to, if any.
        """
        if other.mac:
            for ip in other.ips:
                self.learn_ip(ip, other.mac)
            target = self._device_for(other.mac, other.id, other.first_seen)
        else:
            mac = self._ip_to_mac.get(other.id)
            target = self._device_for(mac, other.id, other.first_seen)
        if target is not other:
            _merge(target, other)
            target.vendor = target.vendor or other.vendor
        return target

    def record_contact(
        self,
        device: Device,
        *,
        app: str,
        app_name: str,
        confidence: str,
        alert: bool,
        evidence: str,
        name: str | None,
        ts: float,
        note: str | None = None,
    ) -> AppContact:
        """Count one piece of evidence that `device` contacted `app`."""
        contact = device.apps.get(app)
        if contact is None:
            contact = AppContact(app, app_name, confidence, alert, ts, ts, note=note)
            device.apps[app] = contact
        else:
            if _TIER_RANK.get(confidence, 0) > _TIER_RANK.get(contact.confidence, 0):
                contact.confidence = confidence
                contact.note = note
            contact.alert = contact.alert or alert
            contact.first_seen = min(contact.first_seen, ts)
            contact.last_seen = max(contact.last_seen, ts)
        contact.counts[evidence] = contact.counts.get(evidence, 0) + 1
        if name and name not in contact.names and len(contact.names) < MAX_EXAMPLE_NAMES:
            contact.names.append(name)
        return contact


def _merge(target: Device, other: Device) -> None:
    """Fold a device known only by IP into the device of its MAC."""
    for ip in other.ips:
        if ip not in target.ips and len(target.ips) < MAX_IPS_PER_DEVICE:
            target.ips.append(ip)
    target.hostname = target.hostname or other.hostname
    target.vendor_class = target.vendor_class or other.vendor_class
    target.first_seen = min(target.first_seen or other.first_seen, other.first_seen)
    target.last_seen = max(target.last_seen, other.last_seen)
    target.blind_spots.update({k: v for k, v in other.blind_spots.items() if k not in target.blind_spots})
    for app, contact in other.apps.items():
        mine = target.apps.get(app)
        if mine is None:
            target.apps[app] = contact
            continue
        mine.first_seen = min(mine.first_seen, contact.first_seen)
        mine.last_seen = max(mine.last_seen, contact.last_seen)
        mine.alert = mine.alert or contact.alert
        if _TIER_RANK.get(contact.confidence, 0) > _TIER_RANK.get(mine.confidence, 0):
            mine.confidence, mine.note = contact.confidence, contact.note
        for kind, count in contact.counts.items():
            mine.counts[kind] = mine.counts.get(kind, 0) + count
        for name in contact.names:
            if name not in mine.names and len(mine.names) < MAX_EXAMPLE_NAMES:
                mine.names.append(name)
