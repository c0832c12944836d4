"""`netwatch report` reads its jsonl input in bounded pieces: a file without line ends (a binary file,
/dev/zero) never becomes one huge string (the old reader took 11 GB from /dev/zero in 15 s)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from netwatch.report import data

REPO = Path(__file__).resolve().parents[1]
LIMIT = 1000


class _RecordingText(io.StringIO):
    """Text input that remembers the longest piece any reader took from it at once."""

    longest = 0

    def readline(self, size: int | None = -1) -> str:
        line = super().readline(-1 if size is None else size)
        self.longest = max(self.longest, len(line))
        return line

    def __next__(self) -> str:
        line = super().__next__()
        self.longest = max(self.longest, len(line))
        return line

    def read(self, size: int | None = -1) -> str:
        text = super().read(size)
        self.longest = max(self.longest, len(text))
        return text


def test_a_line_longer_than_the_limit_is_skipped_without_being_held(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    event = {"@timestamp": "2026-01-05T09:00:01Z", "event": {"kind": "alert", "dataset": "netwatch.detection"},
             "netwatch": {"evidence": "dns_query", "name": "mobilegw.alipay.com", "app": "alipay",
                          "app_name": "Alipay", "confidence": "high",
                          "device": {"id": "02:00:00:00:00:01", "hostname": None, "vendor": None}},
             "source": {"ip": "10.0.0.5"}}
    text = _RecordingText("x" * (100 * LIMIT) + "\n" + json.dumps(event) + "\n" + "y" * (3 * LIMIT))
    monkeypatch.setattr(data, "MAX_LINE_BYTES", LIMIT)
    monkeypatch.setattr(data, "_open_text", lambda path: text)
    report = data.load(["events.jsonl"], None)
    assert text.longest <= LIMIT + 1
    assert report.skipped == 2 and report.events == 1
