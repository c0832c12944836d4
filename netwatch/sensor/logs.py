"""Structured logs: one line per event on standard error, journald friendly.

JSON lines (default) carry `level`, `msg` and the event's fields; systemd-journald stores
each line as one entry, and a `jq` or Loki pipeline can filter on the fields. Values come
from the network (names, interface errors), so they are JSON-escaped, never interpolated.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

LOGGER_NAME = "netwatch.sensor"
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}  # syslog(3) levels


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), default=str, ensure_ascii=True)


class TextFormatter(logging.Formatter):
    """`<N>` priority prefix (sd-daemon(3)) so journald keeps the level; fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=True)}" for k, v in fields.items())
        line = f"<{_PRIORITY.get(record.levelname, 6)}>{record.getMessage()}"
        return f"{line} {extra}" if extra else line


def setup_logging(fmt: str = "json", level: str = "info") -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.formatter.converter = __import__("time").gmtime  # UTC timestamps
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})
