"""The capture-to-event pipeline shared by `netwatch scan` and `netwatch sensor`.

decode (link, tunnels, IP, fragments) -> extract (stream heads, protocol parsers) ->
detect (signatures, policy, devices) -> ECS event dicts. A packet travels this list once, in
one direction; nothing here reads files or writes output.
"""

from __future__ import annotations

import heapq
import math
import socket
from typing import Any

from netwatch import __version__
from netwatch.decode.decoder import Decoder
from netwatch.detect.devices import DeviceInventory
from netwatch.detect.engine import Detector
from netwatch.extract import Extractor
from netwatch.model import Observation, RawPacket
from netwatch.outputs.ecs import EVENT_TIME_MAX, EVENT_TIME_MIN, build_event, clamp_event_time
from netwatch.signatures import SignatureSet

# At most this many internal errors keep their text, so a systematic bug cannot grow memory.
_MAX_ERROR_SAMPLES = 10


def default_observer(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "vendor": "netwatch",
        "product": "netwatch",
        "version": __version__,
        "hostname": socket.gethostname(),
    }


def watched_ranges(sigset: SignatureSet) -> list[tuple[bytes, bytes]]:
    """Address-rule networks as the C core takes them: 16-byte bounds, IPv4 mapped into ::ffff:0:0/96."""
    out = []
    for version, first, last in sigset.ip_rule_ranges():
        if version == 4:
            first, last = first | _V4_MAPPED, last | _V4_MAPPED
        out.append((first.to_bytes(16, "big"), last.to_bytes(16, "big")))
    return out


_V4_MAPPED = 0xFFFF << 32


class Pipeline:
    """Feed RawPackets in, get ECS event dicts out; keeps the device inventory."""

    def __init__(
        self,
        sigset: SignatureSet,
        *,
        min_confidence: str | None = None,
        emit_all: bool = False,
        observer: dict[str, Any] | None = None,
        inventory: DeviceInventory | None = None,
    ) -> None:
        self.decoder = Decoder()
        self.detector = Detector(sigset, min_confidence=min_confidence, emit_all=emit_all, inventory=inventory)
        self.extractor = Extractor(wants_answers=self.detector.wants_answers,
                                   interesting_address=self.detector.interesting_address)
        self.inventory = self.detector.inventory
        self.observer = observer if observer is not None else default_observer("sensor")
        self.capture_file: str | None = None
        self.candidates = 0
        self.internal_errors = 0
        self.timestamps_clamped = 0  # packet times outside 1970..9999 (see outputs/ecs.py)
        self.error_samples: list[str] = []
        self._ruleset_version = ""
        self._policy = ""
        self._steered: list[Any] = []  # C classifiers told which connections must be seen from their SYN
        self._late: list[RawPacket] = []  # SYNs released by a classifier, a heap in frame order
        self._frame = 0  # frame number of the packet being processed
        self._describe(sigset)

    def fresh(self) -> Pipeline:
        """A pipeline with the same signatures and settings and no state: for a capture of its own."""
        return Pipeline(self.detector.sigset, min_confidence=self.detector.min_confidence,
                        emit_all=self.detector.emit_all, observer=self.observer)

    @property
    def sigset(self) -> SignatureSet:
        return self.detector.sigset

    def _describe(self, sigset: SignatureSet) -> None:
        self._ruleset_version = sigset.label
        self._policy = getattr(sigset.policy, "id", str(sigset.policy))

    def reload(self, sigset: SignatureSet) -> None:
        """Apply a new signature set from the next packet on; flow state is kept."""
        self.detector.reload(sigset)
        self._describe(sigset)
        for flow_filter in self._steered:
            flow_filter.watch(watched_ranges(sigset))

    def steer(self, flow_filter: Any) -> None:
        """Let the C classifier hold back SYNs that no data follows, except where a SYN is evidence.

        A connection to an address with an address rule, or to one a banned name resolved to, is
        evidence from its SYN on (`resolved_ip`, `ip_match`), so the classifier is told those
        addresses (and each new resolved one as it is learnt); every other SYN reaches Python only
        together with its connection's first data, so a SYN flood or a port scan costs no Python work.
        """
        flow_filter.watch(watched_ranges(self.detector.sigset))
        for address in self.detector.resolved_addresses():
            flow_filter.watch_address(address)
        if flow_filter not in self._steered:
            self._steered.append(flow_filter)
        self.detector.on_resolved = self._watch_resolved

    def _watch_resolved(self, address: str) -> None:
        """A banned name resolved to `address`: its SYNs are evidence, also the ones already held back."""
        for flow_filter in self._steered:
            flow_filter.watch_address(address)
            for held in flow_filter.release_held(address, self._frame):
                heapq.heappush(self._late, held)

    def process(self, pkt: RawPacket) -> list[dict[str, Any]]:
        """Events caused by one packet. Never raises: a bug is counted, sampled and skipped."""
        if not self._late:
            return self._process_one(pkt)
        events = self._process_late(pkt.frame)  # released SYNs, each in its place in frame order
        events.extend(self._process_one(pkt))
        return events

    def _process_late(self, before: float) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while self._late and self._late[0].frame < before:
            events.extend(self._process_one(heapq.heappop(self._late)))
        return events

    def _process_one(self, pkt: RawPacket) -> list[dict[str, Any]]:
        self.candidates += 1
        self._frame = pkt.frame
        if not EVENT_TIME_MIN <= pkt.ts <= EVENT_TIME_MAX:
            self.timestamps_clamped += 1
            pkt = pkt._replace(ts=clamp_event_time(pkt.ts))
        try:
            seg = self.decoder.decode(pkt)
            if seg is None:
                return []
            observations = self.extractor.segment(seg)
            return self._detect(observations) if observations else []
        except Exception as exc:  # defence in depth: the parsers themselves must not raise
            self._internal_error(pkt.frame, exc)
            return []

    def flush(self) -> list[dict[str, Any]]:
        """End of input: settle connections that are still waiting for a name."""
        events = self._process_late(math.inf)
        try:
            return events + self._detect(self.extractor.flush())
        except Exception as exc:
            self._internal_error(0, exc)
            return events

    def detect(self, observations: list[Observation]) -> list[dict[str, Any]]:
        """Events for observations made elsewhere (log readers): detection and ECS only, never raises."""
        try:
            return self._detect(observations)
        except Exception as exc:
            self._internal_error(observations[0].frame if observations else 0, exc)
            return []

    def _detect(self, observations: list[Observation]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for obs in observations:
            for det in self.detector.observe(obs):
                events.append(
                    build_event(det, ruleset_version=self._ruleset_version, policy=self._policy,
                                observer=self.observer, capture_file=self.capture_file)
                )
        return events

    def _internal_error(self, frame: int, exc: Exception) -> None:
        self.internal_errors += 1
        if len(self.error_samples) < _MAX_ERROR_SAMPLES:
            self.error_samples.append(f"frame {frame}: {type(exc).__name__}: {exc}")

    def counters(self) -> dict[str, Any]:
        decode = self.decoder.counters
        extract = self.extractor.counters
        return {
            "candidates": self.candidates,
            "segments": decode.segments,
            "malformed": decode.malformed + extract.malformed,
            "malformed_by_reason": {**decode.malformed_by_reason,
                                    **{f"{k}": v for k, v in extract.malformed_by_protocol.items()}},
            "fragments_reassembled": decode.reassembled,
            "dns_messages": extract.dns_messages,
            "tls_client_hellos": extract.tls_client_hellos,
            "quic_initials": extract.quic_initials,
            "http_requests": extract.http_requests,
            "dhcp_messages": extract.dhcp_messages,
            "alerts": self.detector.alerts,
            "events": self.detector.events,
            "devices": len(self.inventory),
            "internal_errors": self.internal_errors,
            "timestamps_clamped": self.timestamps_clamped,
        }
