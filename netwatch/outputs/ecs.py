"""Detections as Elastic Common Schema documents: the event contract (docs/events.md).

Every output (jsonl, csv, table, the sensor, every SIEM format) starts from the dict built here,
so the field names are defined once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from netwatch.detect.engine import KIND_ALERT, Detection

SEVERITY = {"high": 73, "medium": 47, "low": 21}
_EVENT_TYPES = {
    "dns_query": ["protocol", "info"],
    "tls_sni": ["connection", "protocol"],
    "quic_sni": ["connection", "protocol"],
    "http_host": ["connection", "protocol"],
    "proxy_connect": ["connection", "protocol"],
    "dhcp_hostname": ["info"],
    "resolved_ip": ["connection"],
    "ip_match": ["connection"],
    "encrypted_dns": ["protocol", "info"],
    "ech": ["protocol", "info"],
}


# Event times netwatch writes: 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z, a four-digit
# year as RFC 3339 requires. A packet time outside that range (a pcapng if_tsoffset gone wrong, a
# damaged record) is clamped into it by the pipeline and counted (`timestamps_clamped`), so ECS and
# every SIEM format (syslog, CEF, LEEF, HEC, _bulk) carry the same, valid time.
EVENT_TIME_MIN = 0.0
EVENT_TIME_MAX = 253402300799.999  # 9999-12-31T23:59:59.999Z (a float cannot hold the microseconds)


def clamp_event_time(ts: float) -> float:
    """`ts` moved into [EVENT_TIME_MIN, EVENT_TIME_MAX] (NaN becomes the minimum)."""
    if ts != ts:  # NaN
        return EVENT_TIME_MIN
    return min(max(ts, EVENT_TIME_MIN), EVENT_TIME_MAX)


@lru_cache(maxsize=64)
def _second_text(second: int) -> str:
    try:
        return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "1970-01-01T00:00:00"


def rfc3339(ts: float) -> str:
    """A packet time as RFC 3339 UTC with microseconds, e.g. 2026-01-05T09:00:03.250000Z."""
    if not EVENT_TIME_MIN <= ts <= EVENT_TIME_MAX:
        ts = clamp_event_time(ts)
    second = int(ts // 1)
    micros = round((ts - second) * 1_000_000)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
        if second > EVENT_TIME_MAX:
            second, micros = second - 1, 999_999
    return f"{_second_text(second)}.{micros:06d}Z"


def ecs_mac(mac: str | None) -> str | None:
    """ECS wants MACs upper-case and hyphen-separated."""
    return mac.upper().replace(":", "-") if mac else None


def event_id(det: Detection) -> str:
    """Stable across runs: the same packet and finding always give the same id, so SIEMs can de-duplicate."""
    obs = det.obs
    return _event_id(obs.ts, obs.frame, obs.src_ip, obs.src_port, obs.dst_ip, obs.dst_port, obs.transport,
                     det.evidence, det.name, det.match.rule_id if det.match else "", det.dataset)


def event_id_of(event: dict[str, Any], ts: float) -> str:
    """The id of an already built event, recomputed from its fields and its exact packet time.

    For a finding whose frame number was corrected after the event was built (a chunk of a split
    file learns its first frame number only when the chunks before it are counted).
    """
    netwatch, source, destination = event["netwatch"], event["source"], event["destination"]
    return _event_id(ts, netwatch["capture"]["frame"], source["ip"] or "", source["port"] or 0,
                     destination["ip"] or "", destination["port"] or 0, event["network"]["transport"],
                     event["event"]["action"], netwatch["name"], netwatch["signature"] or "",
                     event["event"]["dataset"])


def _event_id(ts: float, frame: int, src_ip: str, src_port: int, dst_ip: str, dst_port: int, transport: str,
              evidence: str, name: str | None, rule: str, dataset: str) -> str:
    basis = (f"{ts:.6f}|{frame}|{src_ip}|{src_port}|{dst_ip}|{dst_port}|{transport}|"
             f"{evidence}|{name}|{rule}|{dataset}")
    return "nw-" + hashlib.blake2b(basis.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _message(det: Detection) -> str:
    device = det.device
    who = device.hostname or device.id
    if device.hostname:
        who += f" ({device.id}"
        who += f", {det.obs.src_ip})" if det.obs.src_ip and det.obs.src_ip != device.id else ")"
    elif det.obs.src_ip and det.obs.src_ip != device.id:
        who += f" ({det.obs.src_ip})"
    subject = det.name or det.obs.dst_ip
    if det.dataset == "netwatch.blind_spot":
        if det.evidence == "ech":
            return f"{who} uses Encrypted Client Hello via {subject}: the real destination is hidden"
        return f"{who} uses encrypted DNS ({det.resolver}): DNS-based evidence for it is incomplete"
    if det.match is None:
        return f"{who}: {det.evidence} {subject}"
    target = det.label or det.match.app_name or f"{det.match.vendor} (vendor)"
    text = f"{who} contacted {target}: {det.evidence} {subject}"
    if det.resolved_from and det.evidence == "resolved_ip":
        text = f"{who} contacted {target}: connection to {det.obs.dst_ip}, resolved from {det.resolved_from}"
    if det.match.note and det.confidence != "high":  # below high, the rule's caveat is part of the finding
        text += f" ({det.match.note})"
    return text


def build_event(det: Detection, *, ruleset_version: str, policy: str, observer: dict[str, Any],
                capture_file: str | None = None) -> dict[str, Any]:
    """The ECS document for one detection."""
    obs = det.obs
    match = det.match
    device = det.device
    severity = SEVERITY.get(det.confidence or "", 0) if det.kind == KIND_ALERT else (
        SEVERITY["low"] if det.match or det.dataset == "netwatch.blind_spot" else 0)
    netwatch: dict[str, Any] = {
        "evidence": det.evidence,
        "name": det.name,
        "app": match.app if match else None,
        "app_name": (match.app_name or (det.label if match.apps else None)) if match else None,
        "confidence": det.confidence,
        "signature": match.rule_id if match else None,
        "ech": bool(obs.ech),
        "policy": policy,
        "device": {"id": device.id, "hostname": device.hostname, "vendor": device.vendor},
    }
    if match is not None:
        netwatch.update(apps=list(match.apps), role=match.role, vendor=match.vendor, note=match.note)
    if det.resolved_from:
        netwatch["resolved_from"] = det.resolved_from
    if det.resolver:
        netwatch["resolver"] = det.resolver
    if capture_file is not None:
        netwatch["capture"] = {"file": capture_file, "frame": obs.frame}
    if obs.detail:
        extras = {k: v for k, v in obs.detail.items() if v is not None and k not in ("vlan", "addresses")}
        if extras:
            netwatch["detail"] = extras

    event: dict[str, Any] = {
        "@timestamp": rfc3339(obs.ts),
        "event": {
            "kind": det.kind,
            "id": event_id(det),
            "dataset": det.dataset,
            "module": "netwatch",
            "category": ["network"],
            "type": _EVENT_TYPES.get(det.evidence, ["info"]),
            "action": det.evidence,
            "severity": severity,
        },
        "message": _message(det),
        "netwatch": netwatch,
        "source": {"ip": obs.src_ip or None, "port": obs.src_port or None, "mac": ecs_mac(obs.src_mac)},
        "destination": {"ip": obs.dst_ip or None, "port": obs.dst_port or None},
        "network": {
            "transport": obs.transport,
            "protocol": obs.protocol,
            "type": "ipv6" if ":" in (obs.src_ip or "") else "ipv4",
        },
        "observer": observer,
    }
    vlan = obs.detail.get("vlan")
    if vlan:
        event["network"]["vlan"] = {"id": str(vlan[-1])}
        if len(vlan) > 1:
            event["network"]["vlan"]["outer"] = {"id": str(vlan[0])}
    event["rule"] = {"version": ruleset_version, "ruleset": policy}
    if match is not None:
        event["rule"].update(
            id=match.rule_id,
            name=match.pattern,
            category="banned-app" if match.app else "vendor",
            reference=match.sources[0] if match.sources else None,
        )
    if det.evidence == "dns_query":
        event["dns"] = {"question": {"name": det.name, "type": obs.detail.get("qtype")}}
    elif det.evidence in ("tls_sni", "quic_sni", "encrypted_dns", "ech") and obs.protocol in ("tls", "quic"):
        event["tls"] = {"client": {"server_name": det.name}}
    elif det.evidence in ("http_host", "proxy_connect"):
        event["url"] = {"domain": det.name}
    if device.hostname:
        event["host"] = {"hostname": device.hostname}
    return event
