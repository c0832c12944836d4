"""Prometheus metrics (off by default; `--metrics-port`).

The values live in the sensor's own counters (merged from all workers); a custom collector
reads them at scrape time, so the capture path never touches prometheus-client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# (metric name without _total, help, key in the snapshot's "totals")
_COUNTERS = (
    ("netwatch_packets_seen", "Frames libpcap handed to the sensor", "frames"),
    ("netwatch_packets_to_python", "Frames the C flow filter passed to the Python pipeline", "admitted"),
    ("netwatch_kernel_drops", "Packets the kernel dropped (capture buffer full)", "kernel_dropped"),
    ("netwatch_interface_drops", "Packets the interface or driver dropped", "interface_dropped"),
    ("netwatch_malformed_packets", "Candidate packets that failed to decode or parse", "malformed"),
    ("netwatch_capture_reopens", "Times an interface was re-opened after going away", "reopens"),
    ("netwatch_db_errors", "Failed writes to the state database", "db_errors"),
    ("netwatch_output_errors", "Failed writes to the JSON lines output", "output_errors"),
    ("netwatch_devices_evicted", "Devices dropped from memory and database (max_devices reached)",
     "devices_evicted"),
    ("netwatch_contacts_evicted", "Device-app contacts dropped from memory and database (cap reached)",
     "contacts_evicted"),
)


class SensorCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        totals = snap.get("totals", {})
        for name, doc, key in _COUNTERS:
            metric = CounterMetricFamily(name, doc)
            metric.add_metric([], float(totals.get(key, 0)))
            yield metric
        detections = CounterMetricFamily("netwatch_detections", "App contacts detected", labels=["app"])
        for app, n in sorted(snap.get("detections", {}).items()):
            detections.add_metric([app], float(n))
        yield detections
        alerts = CounterMetricFamily("netwatch_alerts", "Alerts reported", labels=["app", "reason"])
        for (app, reason), n in sorted(snap.get("alerts", {}).items()):
            alerts.add_metric([app, reason], float(n))
        yield alerts
        depth = GaugeMetricFamily("netwatch_alert_queue_depth",
                                  "Events waiting: worker queue plus forwarder queues")
        depth.add_metric([], float(snap.get("queue_depth", 0)))
        yield depth
        for key, doc in (("devices", "Devices the sensor remembers (at most max_devices)"),
                         ("contacts", "Device-app contacts the sensor remembers")):
            gauge = GaugeMetricFamily(f"netwatch_{key}", doc)
            gauge.add_metric([], float(snap.get(key, 0)))
            yield gauge
        workers = GaugeMetricFamily("netwatch_workers_alive", "Capture worker processes running")
        workers.add_metric([], float(snap.get("workers_alive", 0)))
        yield workers
        info = GaugeMetricFamily("netwatch_signature_set_info", "The active signature set",
                                 labels=["version", "content_hash"])
        info.add_metric([str(snap.get("signature_version", "")), str(snap.get("signature_hash", ""))], 1.0)
        yield info


def start_metrics_server(port: int, address: str,
                         snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SensorCollector(snapshot))
    start_http_server(port, addr=address, registry=registry)
    return registry
