"""The reader thread of `netwatch scan`: same packets, bounded, and it never hangs or hides an error."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from netwatch.capture.files import open_capture
from netwatch.scan import prefetched

SAMPLE = Path(__file__).resolve().parents[1] / "pcaps" / "office-lan.pcap"


def test_prefetched_yields_the_same_packets_in_order() -> None:
    direct = [pkt.frame for pkt in open_capture(SAMPLE)]
    with open_capture(SAMPLE, chunk_size=4096) as capture:
        threaded = [pkt.frame for batch in prefetched(capture, depth=2) for pkt in batch]
    assert threaded == direct and len(direct) == 246


def test_consumer_stopping_early_does_not_leave_the_reader_blocked() -> None:
    before = threading.active_count()
    with open_capture(SAMPLE, chunk_size=4096) as capture:
        batches = prefetched(capture, depth=1)
        next(batches)
        batches.close()  # the consumer gives up while the reader waits on a full queue
    assert threading.active_count() == before


class _Exploding:
    def batches(self):
        yield []
        raise OSError("disk went away")


def test_reader_errors_reach_the_consumer() -> None:
    with pytest.raises(OSError, match="disk went away"):
        list(prefetched(_Exploding()))
