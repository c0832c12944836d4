"""What an enforcement list must block: the matcher's verdicts turned into a tree of name entries.

Every exporter renders the same `BlockPlan`, so every list blocks exactly the names netwatch
would alert on under the chosen policy: a name is blocked when the most specific rule covering it
(exclusions first, see docs/signatures.md) is in the selection. The plan is built by asking the
real matcher, not by re-implementing its precedence.

The name space is cut at every rule or exclusion pattern (a *point*). For each point the plan
keeps three actions, each ``"block"`` or ``"pass"``:

* ``context``: what the nearest enclosing suffix point decides for the names below it,
* ``apex``: the verdict for the point's own name,
* ``below``: the verdict for names under the point that no deeper point covers.

A resolver that picks the most specific entry (RPZ, Unbound local-zone, dnsmasq) needs an entry
only where ``apex`` or ``below`` differs from ``context``; a format that matches whole names only
(hosts, Zeek Intel) lists every point whose ``apex`` is ``block``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from netwatch.signatures import NameMatch, SignatureSet
from netwatch.signatures.model import CONFIDENCE_RANK

BLOCK, PASS = "block", "pass"
# A first label no pattern can have ('-' alone is not a valid label), so the matcher's verdict for
# "<probe>.<point>" is the verdict for the names below the point that nothing deeper covers.
_PROBE_LABEL = "-"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which verdicts count as "block": the policy's apps at or above a confidence floor."""

    policy: str
    min_confidence: str
    apps: frozenset[str] | None = None  # None: every app (and vendor) the policy flags

    def blocks(self, match: NameMatch | None) -> bool:
        if match is None or not match.in_policy:
            return False
        if CONFIDENCE_RANK[match.confidence] < CONFIDENCE_RANK[self.min_confidence]:
            return False
        if self.apps is not None:
            return bool(self.apps.intersection(match.apps))
        return True


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a point's apex or subtree gets its action: the deciding rule, or the exclusion."""

    action: str
    rule_id: str | None = None
    apps: tuple[str, ...] = ()
    app_names: str | None = None
    confidence: str | None = None
    excluded: bool = False

    def describe(self) -> str:
        if self.action == BLOCK:
            return f"{self.app_names or 'vendor contact'} ({self.confidence}, rule {self.rule_id})"
        if self.excluded:
            return "excluded (allowlist)"
        if self.rule_id:
            return f"rule {self.rule_id} ({self.confidence}) is outside the selection"
        return "no rule"


@dataclass(frozen=True, slots=True)
class Point:
    """One rule or exclusion pattern and the three actions around it (see the module docstring)."""

    name: str
    suffix: bool  # a suffix rule or exclusion sits here (else only exact ones)
    context: str
    apex: Reason
    below: Reason
    parent: str | None  # the nearest enclosing suffix point, None at the top

    @property
    def differs(self) -> bool:
        """Does a most-specific-wins resolver need an entry here?"""
        return self.apex.action != self.context or self.below.action != self.context


@dataclass(frozen=True, slots=True)
class BlockedNetwork:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    reason: Reason


@dataclass
class BlockPlan:
    """The whole export: points in tree order (parents before children), networks, provenance."""

    label: str
    version: str
    selection: Selection
    sources: tuple[str, ...]
    points: list[Point] = field(default_factory=list)
    networks: list[BlockedNetwork] = field(default_factory=list)

    @property
    def entries(self) -> list[Point]:
        """Points a most-specific-wins resolver must list."""
        return [p for p in self.points if p.differs]

    def blocked_names(self) -> list[Point]:
        """Points whose own name is blocked (for formats that match whole names only)."""
        return [p for p in self.points if p.apex.action == BLOCK]

    def children(self) -> dict[str | None, list[Point]]:
        """Points grouped by their nearest enclosing suffix point."""
        out: dict[str | None, list[Point]] = {}
        for point in self.points:
            out.setdefault(point.parent, []).append(point)
        return out


def _tree_key(name: str) -> tuple[str, ...]:
    return tuple(reversed(name.split(".")))


def _reason(selection: Selection, match: NameMatch | None, excluded: bool) -> Reason:
    if selection.blocks(match):
        assert match is not None
        return Reason(BLOCK, match.rule_id, match.apps, match.app_name or None, match.confidence)
    if match is not None:
        return Reason(PASS, match.rule_id, match.apps, match.app_name, match.confidence)
    return Reason(PASS, excluded=excluded)


def _covering_exclusion(sigset: SignatureSet, name: str, *, apex: bool) -> bool:
    """Is `name` (apex) or the names below it (not apex) covered by an exclusion?"""
    labels = name.split(".")
    suffixes = {".".join(labels[i:]) for i in range(len(labels))}
    if apex and ("exact", name) in sigset.exclusions:
        return True
    return any(("suffix", s) in sigset.exclusions for s in suffixes)


def build_plan(sigset: SignatureSet, selection: Selection, sources: Iterable[str] = ()) -> BlockPlan:
    """Ask the matcher for the verdict at every point and just below it."""
    plan = BlockPlan(label=sigset.label, version=sigset.version, selection=selection, sources=tuple(sources))
    kinds: dict[str, set[str]] = {}
    for match_type, pattern in list(sigset.rules) + list(sigset.exclusions):
        if match_type in ("exact", "suffix"):
            kinds.setdefault(pattern, set()).add(match_type)
    below_of: dict[str, str] = {}  # suffix point -> action for the names below it
    for name in sorted(kinds, key=_tree_key):
        labels = name.split(".")
        parent = next((".".join(labels[i:]) for i in range(1, len(labels)) if ".".join(labels[i:]) in below_of),
                      None)
        context = below_of[parent] if parent is not None else PASS
        apex = _reason(selection, sigset.match_name(name), _covering_exclusion(sigset, name, apex=True))
        is_suffix = "suffix" in kinds[name]
        if is_suffix:
            below = _reason(selection, sigset.match_name(f"{_PROBE_LABEL}.{name}"),
                            _covering_exclusion(sigset, name, apex=False))
            below_of[name] = below.action
        else:
            below = Reason(context)
        plan.points.append(Point(name, is_suffix, context, apex, below, parent))
    for rule in sigset.rules.values():
        if rule.network is None:
            continue
        match = sigset.match_ip(str(rule.network.network_address))
        if match is not None and match.rule_id == rule.rule_id and selection.blocks(match):
            plan.networks.append(BlockedNetwork(rule.network, _reason(selection, match, False)))
    plan.networks.sort(key=lambda n: (n.network.version, n.network))
    return plan
