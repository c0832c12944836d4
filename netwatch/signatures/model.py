"""Records of a loaded signature set: apps, rules, exclusions, policies, resolvers, verdicts."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

CONFIDENCES = ("high", "medium", "low")
CONFIDENCE_RANK = {"low": 1, "medium": 2, "high": 3}
MATCH_TYPES = ("exact", "suffix", "cidr")
ROLES = frozenset(
    {
        "client", "merchant-server", "web", "update", "telemetry", "httpdns", "cdn", "developer",
        "login", "payment", "messaging", "media", "ads", "corporate", "download", "api", "sandbox",
    }
)


@dataclass(frozen=True, slots=True)
class App:
    """An application that signatures attribute traffic to."""

    id: str
    name: str
    vendor: str
    description: str
    parent_platform: str | None
    status: str | None
    file: str
    line: int


@dataclass(slots=True, eq=False)
class Rule:
    """One attribution rule. `key` (match type, pattern) is what an overlay replaces.

    Not frozen only because frozen dataclass construction costs twice as much and a 100,000-rule
    overlay must load in well under two seconds; nothing mutates a Rule after loading.
    """

    match_type: str  # exact | suffix | cidr
    pattern: str  # normalised host name, or the network in ipaddress' canonical text for cidr
    apps: tuple[str, ...]
    vendor: str | None
    confidence: str
    role: str
    sources: tuple[str, ...]
    note: str | None
    rule_id: str
    file: str
    line: int
    layer: int  # 0 = bundled, 1.. = overlays in the order given
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.match_type, self.pattern)

    def verdict(self) -> tuple:
        return (self.apps, self.vendor, self.confidence, self.role)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """An allowlist entry: names or addresses it covers never produce a match."""

    match_type: str
    pattern: str
    note: str | None
    file: str
    line: int
    layer: int
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.match_type, self.pattern)


@dataclass(frozen=True, slots=True)
class Resolver:
    """A known encrypted-DNS (DoH/DoT/DoQ) service name."""

    match_type: str
    pattern: str
    operator: str
    protocols: tuple[str, ...]
    sources: tuple[str, ...]
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Policy:
    """Which apps (and, for vendor-contact rules, which vendors) a deployment flags."""

    id: str
    name: str
    description: str | None
    apps: frozenset[str]
    vendors: frozenset[str]
    min_confidence: str
    default: bool
    metadata: dict = field(hash=False, compare=False)
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class NameMatch:
    """The verdict for one name or address: what the pipeline puts into a detection."""

    rule_id: str
    pattern: str
    match_type: str
    app: str | None
    apps: tuple[str, ...]
    app_name: str | None
    vendor: str | None
    confidence: str
    role: str
    note: str | None
    sources: tuple[str, ...]
    file: str
    line: int
    in_policy: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a name or address got its verdict (for `netwatch signatures match`)."""

    query: str
    normalized: str
    kind: str  # "name" | "ip" | "invalid"
    winner: NameMatch | None
    candidates: tuple[NameMatch, ...]  # every rule that covers the query, most specific first
    exclusions: tuple[Exclusion, ...]  # every exclusion that covers the query
    resolver: str | None

    @property
    def beaten(self) -> tuple[NameMatch, ...]:
        """Less specific rules the winner beat (or, when excluded, the rules the exclusion beat)."""
        return tuple(c for c in self.candidates if c is not self.winner)
