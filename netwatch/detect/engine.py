"""Detection: observations matched against the signature set, attributed to devices.

Policy lives here, apart from analysis: the extractors say what was seen, this module decides
what it means (alert, vendor contact, blind spot, plain observation) under the active signature
set, policy and alert threshold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

from netwatch.detect.devices import Device, DeviceInventory
from netwatch.extract import OBS_CONN_START, OBS_CONN_UNNAMED, OBS_DNS_ANSWER
from netwatch.model import (
    EVIDENCE_DHCP_HOSTNAME,
    EVIDENCE_DNS_QUERY,
    EVIDENCE_ECH,
    EVIDENCE_ENCRYPTED_DNS,
    EVIDENCE_IP_MATCH,
    EVIDENCE_QUIC_SNI,
    EVIDENCE_RESOLVED_IP,
    EVIDENCE_TLS_SNI,
    Observation,
)
from netwatch.signatures import NameMatch, SignatureSet, normalize_name
from netwatch.signatures.names import host_name_tail

TIERS = ("low", "medium", "high")
_RANK = {tier: rank for rank, tier in enumerate(TIERS)}

KIND_ALERT = "alert"
KIND_EVENT = "event"
DATASET_DETECTION = "netwatch.detection"
DATASET_VENDOR = "netwatch.vendor_contact"
DATASET_BLIND_SPOT = "netwatch.blind_spot"
DATASET_OBSERVATION = "netwatch.observation"

# DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250) both use port 853.
ENCRYPTED_DNS_PORT = 853
# ALPN ids of DNS over QUIC (RFC 9250 section 4.1, "doq"; drafts "doq-i..") and DNS over TLS ("dot").
ENCRYPTED_DNS_ALPN_PREFIXES = ("doq", "dot")
# A DNSCrypt client first asks its resolver for certificates: a TXT query for
# "2.dnscrypt-cert.<provider name>" (DNSCrypt v2 protocol specification, section "Certificates").
DNSCRYPT_CERT_PREFIX = "2.dnscrypt-cert."
NAMED_EVIDENCE = frozenset({"dns_query", "tls_sni", "quic_sni", "http_host", "proxy_connect"})


# How many answers (client, name) are kept per address, and resolvers per client.
MAX_ANSWERS_PER_ADDRESS = 8
MAX_RESOLVERS_PER_CLIENT = 4


class _Answer(NamedTuple):
    """A DNS answer that resolved `name` (which has a rule) to an address, for `client`."""

    ts: float
    client: str
    name: str
    match: NameMatch


def downgrade(tier: str) -> str:
    """One tier less sure: an address resolved from a banned name is weaker evidence than the name."""
    return TIERS[max(0, _RANK.get(tier, 0) - 1)]


@dataclass(slots=True)
class Detection:
    """One event-worthy finding, ready for the output formats."""

    kind: str  # "alert" | "event"
    dataset: str
    evidence: str
    obs: Observation
    device: Device
    name: str | None  # normalised name (None for address evidence)
    match: NameMatch | None = None
    confidence: str | None = None
    resolved_from: str | None = None  # for resolved_ip: the banned name the address came from
    resolver: str | None = None  # for encrypted_dns: the resolver's name or address
    label: str | None = None  # display name of the app, of the apps sharing the name, or of the vendor


class Detector:
    """Applies a signature set and policy to observations; keeps the device inventory."""

    def __init__(
        self,
        sigset: SignatureSet,
        *,
        min_confidence: str | None = None,
        emit_all: bool = False,
        inventory: DeviceInventory | None = None,
        max_resolved: int = 200_000,
    ) -> None:
        self.sigset = sigset
        self.min_confidence = min_confidence or getattr(sigset.policy, "min_confidence", None) or "medium"
        if self.min_confidence not in _RANK:
            raise ValueError(f"unknown confidence tier: {self.min_confidence}")
        self.emit_all = emit_all
        self.inventory = inventory if inventory is not None else DeviceInventory()
        # address -> the latest answers that resolved a name with a rule to it (oldest first)
        self._resolved: OrderedDict[str, list[_Answer]] = OrderedDict()
        self._max_resolved = max_resolved
        # client address -> the resolvers it asked (its queries' destinations), to prefer their answers
        self._resolvers: OrderedDict[str, list[str]] = OrderedDict()
        self.alerts = 0
        self.events = 0
        # called with each address newly resolved from a banned name (the C core's watch list)
        self.on_resolved: Callable[[str], object] | None = None

    def wants_answers(self, name: str) -> bool:
        """Whether the addresses a DNS answer gives for `name` matter (for later `resolved_ip` evidence)."""
        normalized = normalize_name(name)
        return bool(normalized) and self.sigset.match_name(normalized) is not None

    def interesting_address(self, address: str) -> bool:
        """Whether a connection to `address` can be evidence: an address rule, or resolved from a banned name."""
        return address in self._resolved or self.sigset.match_ip(address) is not None

    def resolved_addresses(self) -> list[str]:
        """Addresses a banned name resolved to (the ones kept for `resolved_ip` evidence)."""
        return list(self._resolved)

    def reload(self, sigset: SignatureSet) -> None:
        """Swap the signature set; addresses resolved from names keep the verdict they had."""
        self.sigset = sigset

    def observe(self, obs: Observation) -> list[Detection]:
        evidence = obs.evidence
        if evidence in NAMED_EVIDENCE:
            if evidence == EVIDENCE_DNS_QUERY:
                self._remember_resolver(obs.src_ip, obs.dst_ip)
            return self._named(obs)
        if evidence == OBS_DNS_ANSWER:
            self._remember_answer(obs)
            return []
        if evidence == OBS_CONN_START:
            return self._address(obs)
        if evidence == OBS_CONN_UNNAMED:
            return self._unnamed(obs)
        if evidence == EVIDENCE_DHCP_HOSTNAME:
            return self._dhcp(obs)
        return []

    # -- names ----------------------------------------------------------------------------------

    def _named(self, obs: Observation) -> list[Detection]:
        if obs.detail.get("address"):
            return self._proxied_address(obs)
        name = normalize_name(obs.name or "")
        if not name:
            return []
        device = self.inventory.device(obs.src_ip, obs.src_mac, obs.ts)
        found: list[Detection] = []
        if obs.evidence == EVIDENCE_DNS_QUERY and name.startswith(DNSCRYPT_CERT_PREFIX):
            provider = name[len(DNSCRYPT_CERT_PREFIX):] or obs.dst_ip
            found.extend(self._blind_spot(obs, device, EVIDENCE_ENCRYPTED_DNS, name, provider))
        if obs.evidence in (EVIDENCE_TLS_SNI, EVIDENCE_QUIC_SNI):
            resolver = self.sigset.encrypted_dns_resolver(name)
            if resolver is None and (obs.dst_port == ENCRYPTED_DNS_PORT or any(
                    alpn.startswith(ENCRYPTED_DNS_ALPN_PREFIXES) for alpn in obs.detail.get("alpn", ()))):
                resolver = name
            if resolver is not None:
                found.extend(self._blind_spot(obs, device, EVIDENCE_ENCRYPTED_DNS, name, resolver))
            if obs.ech:
                found.extend(self._blind_spot(obs, device, EVIDENCE_ECH, name, name))
        match = self._match_name(name)
        if match is not None:
            found.append(self._contact(obs, device, obs.evidence, name, match, match.confidence))
        elif self.emit_all:
            found.append(self._plain(obs, device, name))
        return found

    def _match_name(self, name: str) -> NameMatch | None:
        """Signature verdict for a name; only its host-name labels count.

        A name with escaped odd bytes (a DNS tunnel, hostile input) is matched by the labels after
        its last escaped one, and then only by suffix rules: it is a subdomain of that part.
        """
        if "\\" not in name:
            return self.sigset.match_name(name)
        tail = host_name_tail(name)
        # A placeholder label that no rule can name stands for the escaped part: what matches is what
        # covers any subdomain of the tail (its suffix rules and exclusions, not an exact rule on it).
        return self.sigset.match_name("\\." + tail) if tail else None

    def _contact(self, obs: Observation, device: Device, evidence: str, name: str | None,
                 match: NameMatch, confidence: str, resolved_from: str | None = None,
                 note: str | None = None) -> Detection:
        # An app (or a set of apps sharing the name) of the policy alerts at or above the threshold; a
        # vendor-only rule alerts only when the user lowered the threshold to `low`.
        names_apps = bool(match.apps) or self.min_confidence == "low"
        is_alert = names_apps and match.in_policy and _RANK[confidence] >= _RANK[self.min_confidence]
        app, app_name = self._contact_label(match)
        self.inventory.record_contact(
            device, app=app, app_name=app_name, confidence=confidence, alert=is_alert,
            evidence=evidence, name=name or resolved_from, ts=obs.ts, note=note or match.note,
        )
        if is_alert:
            self.alerts += 1
        else:
            self.events += 1
        return Detection(
            kind=KIND_ALERT if is_alert else KIND_EVENT,
            dataset=DATASET_DETECTION if is_alert else DATASET_VENDOR,
            evidence=evidence, obs=obs, device=device, name=name, match=match,
            confidence=confidence, resolved_from=resolved_from, label=app_name,
        )

    def _contact_label(self, match: NameMatch) -> tuple[str, str]:
        """Inventory key and display name: the app, the set of apps sharing a name, or the vendor."""
        if match.app:
            return match.app, match.app_name or match.app
        if match.apps:
            apps = self.sigset.apps
            return "+".join(match.apps), " or ".join(
                apps[a].name if a in apps else a for a in match.apps)
        vendor = match.vendor or "unknown"
        return f"vendor:{vendor}", f"{vendor} (vendor)"

    def _plain(self, obs: Observation, device: Device, name: str | None) -> Detection:
        self.events += 1
        return Detection(KIND_EVENT, DATASET_OBSERVATION, obs.evidence, obs, device, name)

    def _blind_spot(self, obs: Observation, device: Device, evidence: str, name: str,
                    resolver: str) -> list[Detection]:
        """Once per device and resolver (or ECH cover name): name-based evidence is incomplete there."""
        key = f"{evidence}:{resolver}"
        if key in device.blind_spots:
            return []
        device.blind_spots[key] = evidence
        self.events += 1
        return [Detection(KIND_EVENT, DATASET_BLIND_SPOT, evidence, obs, device, name, resolver=resolver)]

    # -- addresses ------------------------------------------------------------------------------

    def _remember_answer(self, obs: Observation) -> None:
        name = normalize_name(obs.name or "")
        match = self._match_name(name) if name else None
        if match is None:
            return
        answer = _Answer(obs.ts, obs.dst_ip, name, match)  # a response goes to the client that asked
        for address in obs.detail.get("addresses", ()):
            answers = self._resolved.get(address)
            if answers is None:
                self._resolved[address] = [answer]
                if self.on_resolved is not None:
                    self.on_resolved(address)
            else:
                answers[:] = [a for a in answers if (a.client, a.name) != (answer.client, name)][
                    -(MAX_ANSWERS_PER_ADDRESS - 1):]
                answers.append(answer)
                self._resolved.move_to_end(address)
        while len(self._resolved) > self._max_resolved:
            self._resolved.popitem(last=False)

    def _remember_resolver(self, client: str, resolver: str) -> None:
        resolvers = self._resolvers.get(client)
        if resolvers is None:
            self._resolvers[client] = [resolver]
            if len(self._resolvers) > self._max_resolved:
                self._resolvers.popitem(last=False)
        elif resolver not in resolvers:
            resolvers[:] = [*resolvers[-(MAX_RESOLVERS_PER_CLIENT - 1):], resolver]

    def _answers_for(self, obs: Observation) -> list[_Answer]:
        """The answers that can explain a connection: seen before it, the client's own (or those its
        resolvers got) when there are any, else other clients'; the latest per name."""
        earlier = [a for a in self._resolved.get(obs.dst_ip, ()) if a.ts <= obs.ts]
        resolvers = self._resolvers.get(obs.src_ip, ())
        own = [a for a in earlier if a.client == obs.src_ip or a.client in resolvers]
        latest: dict[str, _Answer] = {}
        for answer in own or earlier:
            latest[answer.name] = answer
        return sorted(latest.values(), key=lambda a: a.ts)

    def _proxied_address(self, obs: Observation) -> list[Detection]:
        """A SOCKS request for an address, not a name: address rules apply to it."""
        address = obs.name or ""
        match = self.sigset.match_ip(address)
        device = self.inventory.device(obs.src_ip, obs.src_mac, obs.ts)
        if match is not None:
            return [self._contact(obs, device, obs.evidence, address, match, match.confidence)]
        return [self._plain(obs, device, address)] if self.emit_all else []

    def _address(self, obs: Observation) -> list[Detection]:
        match = self.sigset.match_ip(obs.dst_ip)
        if match is None:
            return []
        device = self.inventory.device(obs.src_ip, obs.src_mac, obs.ts)
        return [self._contact(obs, device, EVIDENCE_IP_MATCH, None, match, match.confidence)]

    def _unnamed(self, obs: Observation) -> list[Detection]:
        answers = self._answers_for(obs)
        if not answers:
            return []
        device = self.inventory.device(obs.src_ip, obs.src_mac, obs.ts)
        by_app: dict[str, _Answer] = {}
        for answer in answers:
            by_app[self._contact_label(answer.match)[0]] = answer
        if len(by_app) == 1:
            name, match = answers[-1].name, answers[-1].match
            return [self._contact(obs, device, EVIDENCE_RESOLVED_IP, name, match, downgrade(match.confidence),
                                  resolved_from=name,
                                  note=f"a connection with no name of its own to an address of {name}")]
        # One address, names of several apps: say so instead of picking one.
        candidates = list(by_app.values())
        apps = tuple(sorted({app for a in candidates for app in (a.match.apps or (a.match.app,)) if app}))
        names = ", ".join(f"{a.name} ({self._contact_label(a.match)[1]})" for a in candidates)
        shared = replace(candidates[-1].match, app=None, apps=apps, app_name=None, confidence="low",
                         rule_id="resolved_ip:ambiguous", note=None)
        obs.detail["candidates"] = [a.name for a in candidates]
        return [self._contact(obs, device, EVIDENCE_RESOLVED_IP, None, shared, "low",
                              resolved_from=candidates[-1].name,
                              note=f"an address that names of several apps resolved to: {names}")]

    # -- devices ---------------------------------------------------------------------------------

    def _dhcp(self, obs: Observation) -> list[Detection]:
        mac = obs.src_mac
        if not mac:
            return []
        client_ip = obs.detail.get("client_ip") or obs.detail.get("requested_ip")
        if client_ip:
            self.inventory.learn_ip(client_ip, mac)
        device = self.inventory.device(client_ip or "", mac, obs.ts)
        if obs.name:
            device.hostname = obs.name
        vendor_class = obs.detail.get("vendor_class")
        if vendor_class:
            device.vendor_class = vendor_class
        if self.emit_all and obs.name:
            return [self._plain(obs, device, obs.name)]
        return []
