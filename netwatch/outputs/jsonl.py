"""JSON lines: one ECS document per line (the machine contract, docs/events.md)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps_event(event: dict[str, Any]) -> str:
    """One line of JSON. orjson is ~10x faster than json, which matters with --all on big captures.

    Names from the wire are already escaped to printable text; should a string still hold a lone
    surrogate (which orjson refuses), the standard library writes it as a \\u escape instead.
    """
    try:
        return orjson.dumps(event, default=str).decode()
    except TypeError:
        return json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str)
