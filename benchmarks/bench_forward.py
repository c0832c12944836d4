"""Forwarding throughput: alerts/s to rsyslog over TCP and to the local HTTP (HEC) receiver, and
proof that submit() does not block while a receiver is down.

    PYTHONPATH=. python benchmarks/bench_forward.py [--alerts 50000]

Floor (issue 5): 20,000 alerts/s sustained over TCP syslog, end to end (first submit() until
the queue is drained), in every syslog format. The run fails (exit 1) below it. The HTTP
receiver is a fake that runs in this process, so it competes for the GIL with netwatch: its
number is a lower bound.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from netwatch.forward import ForwarderSet
from netwatch.forward.formats import SYSLOG_FORMATS
from netwatch.forward.testing import FakeSiemReceiver, RsyslogServer

FLOOR_TCP = 20_000
EXAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "event_example.json"


def make_events(count: int) -> list[dict]:
    if EXAMPLE.exists():
        base = json.loads(EXAMPLE.read_text())
    else:
        base = {"@timestamp": "2026-01-05T09:00:03.250000Z", "event": {"kind": "alert", "severity": 73},
                "netwatch": {"name": "mobilegw.alipay.com", "app": "alipay", "evidence": "dns_query",
                             "device": {"id": "aa:bb:cc:00:00:01", "hostname": "alice-laptop"}},
                "observer": {"hostname": "sensor1"}}
    events = []
    for number in range(count):
        event = json.loads(json.dumps(base))
        event["event"]["id"] = f"nw-bench-{number:08d}"
        events.append(event)
    return events


def submit_all(forwarders: ForwarderSet, events: list[dict]) -> float:
    """Submit every event; the slowest single submit() in seconds."""
    worst = 0.0
    for event in events:
        before = time.perf_counter()
        forwarders.submit(event)
        worst = max(worst, time.perf_counter() - before)
    return worst


def run(urls: list[str], events: list[dict], state: Path) -> tuple[float, float, float]:
    """(submit rate, end-to-end rate, worst single submit() in ms)."""
    with ForwarderSet.from_urls(urls, state_dir=state) as forwarders:
        forwarders.start()
        start = time.perf_counter()
        worst = submit_all(forwarders, events)
        submitted = time.perf_counter()
        if not forwarders.flush(300):
            raise SystemExit(f"not drained: {forwarders.stats()}")
        done = time.perf_counter()
    return len(events) / (submitted - start), len(events) / (done - start), worst * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=50_000)
    args = parser.parse_args()
    events = make_events(args.alerts)
    # The fixture is ~1.5 million dicts/lists that a sensor never holds at once; without this,
    # full garbage collections that walk it (0.1-0.3 s each) land in random submit() calls.
    gc.collect()
    gc.freeze()
    ok = True
    with tempfile.TemporaryDirectory(prefix="nw-bench-") as tmp:
        work = Path(tmp)
        rsyslog = RsyslogServer(work / "rsyslog")
        rsyslog.start()
        try:
            for fmt in SYSLOG_FORMATS:
                url = rsyslog.url("tcp", fmt)
                before = len(rsyslog.lines("tcp"))
                submit_rate, rate, worst = run([url], events, work / f"q-tcp-{fmt}")
                arrived = len(rsyslog.wait_lines("tcp", before + len(events), timeout=60)) - before
                print(f"syslog+tcp {fmt:8s}: {rate:9,.0f} alerts/s end-to-end, submit {submit_rate:9,.0f}/s, "
                      f"worst submit {worst:.2f} ms, {arrived}/{len(events)} in rsyslog's file")
                if rate < FLOOR_TCP or arrived != len(events):
                    ok = False
        finally:
            rsyslog.stop()

        os.environ["NW_BENCH_TOKEN"] = "bench-token"
        with FakeSiemReceiver(hec_token="bench-token") as receiver:
            http_events = events[: min(len(events), 20_000)]
            url = receiver.url("hec+http", token_env="NW_BENCH_TOKEN", batch="500")
            submit_rate, rate, worst = run([url], http_events, work / "q-hec")
            print(f"hec+http batch 500 : {rate:9,.0f} alerts/s end-to-end, submit {submit_rate:9,.0f}/s, "
                  f"worst submit {worst:.2f} ms, {len(receiver.hec_events)}/{len(http_events)} received")

        # Receiver down: submit must stay fast; nothing is delivered, everything is queued.
        down = f"syslog+tcp://127.0.0.1:{rsyslog.ports['tcp']}?retry_initial=0.05&retry_max=0.5"
        with ForwarderSet.from_urls([down], state_dir=work / "q-down") as forwarders:
            forwarders.start()
            start = time.perf_counter()
            worst = submit_all(forwarders, events)
            elapsed = time.perf_counter() - start
            forwarders.commit()
            stats = forwarders.stats()[down]
        print(f"receiver down      : submit {len(events) / elapsed:9,.0f}/s, worst submit {worst:.2f} ms, "
              f"queued {stats['queued']}, retries {stats['retries']}, last error: {stats['last_error']}")
    print("PASS" if ok else f"FAIL: below the {FLOOR_TCP:,} alerts/s floor or alerts missing")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
