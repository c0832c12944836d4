"""CSV: one row per event, the most useful ECS fields flattened, for spreadsheets."""

from __future__ import annotations

import csv
from typing import IO, Any

COLUMNS = (
    "@timestamp", "event.kind", "event.dataset", "netwatch.evidence", "netwatch.app", "netwatch.app_name",
    "netwatch.confidence", "netwatch.name", "netwatch.device.id", "host.hostname", "source.ip", "source.port",
    "source.mac", "destination.ip", "destination.port", "network.transport", "network.protocol",
    "netwatch.signature", "netwatch.ech", "rule.version", "netwatch.capture.file", "netwatch.capture.frame",
    "event.id",
)

# A cell starting with one of these is a formula to Excel and LibreOffice (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def field(event: dict[str, Any], dotted: str) -> Any:
    """The value at an ECS dotted path, or None."""
    if dotted in event:
        return event[dotted]
    node: Any = event
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


class CsvWriter:
    """Writes the header once, then one row per event (or per flat record, given its columns)."""

    def __init__(self, stream: IO[str], columns: tuple[str, ...] = COLUMNS) -> None:
        self._columns = columns
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(columns)

    def write(self, event: dict[str, Any]) -> None:
        self._writer.writerow([_cell(field(event, column)) for column in self._columns])
