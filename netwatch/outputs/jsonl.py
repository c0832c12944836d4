"""JSON lines: one ECS document per line (the machine contract, docs/events.md)."""

from __future__ import annotations

import json
from typing import Any


def dumps_event(event: dict[str, Any]) -> str:
    """One line of JSON. ASCII-only output: any attacker byte in a name is a JSON escape, never a raw control."""
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str)
