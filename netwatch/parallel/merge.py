"""Folding the results of separately analysed captures into one run's totals.

Every file is analysed with state of its own (a file is a capture of its own), in this process or in
a worker; the device inventories and counters of those analyses are merged here, always in the
order of the inputs, so the merged result does not depend on which analysis finished first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netwatch.detect.devices import Device, DeviceInventory


def add_counters(total: dict[str, Any], counters: Mapping[str, Any]) -> None:
    """Add one analysis' counters to the run's: numbers add up, per-reason tables add up per key."""
    for key, value in counters.items():
        if isinstance(value, Mapping):
            table = total.setdefault(key, {})
            for reason, count in value.items():
                table[reason] = table.get(reason, 0) + count
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)


def absorb_devices(inventory: DeviceInventory, devices: Iterable[Device]) -> None:
    """Merge one analysis' devices into the run's inventory (same MAC or address, same device)."""
    for device in devices:
        inventory.absorb(device)
