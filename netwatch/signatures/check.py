"""Whole-set checks behind `netwatch signatures check`, beyond what the loader already rejects.

The loader reports errors (the set cannot be used). These are warnings: the set works, but a rule
is pointless or an app is thinly covered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import Diagnostic
from .loader import collect
from .matcher import SignatureSet
from .model import Rule


def _parents(pattern: str) -> list[str]:
    """Strict parent suffixes of a host name, most specific first."""
    out = []
    dot = pattern.find(".")
    while dot >= 0:
        out.append(pattern[dot + 1 :])
        dot = pattern.find(".", dot + 1)
    return out


def _covering_name_rule(sigset: SignatureSet, rule: Rule) -> Rule | None:
    """The next less specific rule that would decide this rule's names if it were removed."""
    candidates = ([rule.pattern] if rule.match_type == "exact" else []) + _parents(rule.pattern)
    for suffix in candidates:
        parent = sigset.rules.get(("suffix", suffix))
        if parent is not None:
            return parent
    return None


def _covering_net_rule(sigset: SignatureSet, rule: Rule) -> Rule | None:
    best = None
    for other in sigset.rules.values():
        net = other.network
        if (
            net is None or other is rule or net.version != rule.network.version
            or net.prefixlen >= rule.network.prefixlen or not rule.network.subnet_of(net)
        ):
            continue
        if best is None or net.prefixlen > best.network.prefixlen:
            best = other
    return best


def _verdict(sigset: SignatureSet, rule: Rule) -> tuple:
    """What a match on this rule reports, with the vendor an app rule inherits from its app."""
    match = sigset.rule_match(rule.key)
    return (match.apps, match.vendor, match.confidence, match.role)


def set_warnings(sigset: SignatureSet) -> list[Diagnostic]:
    """Redundant rules, rules no name can reach because of an exclusion, thinly covered apps."""
    found: list[Diagnostic] = []
    excl_suffixes = {e.pattern: e for e in sigset.exclusions.values() if e.match_type == "suffix"}
    excl_nets = [e for e in sigset.exclusions.values() if e.network is not None]
    for rule in sigset.rules.values():
        if rule.network is None:
            hidden = next(
                (excl_suffixes[s] for s in [rule.pattern, *_parents(rule.pattern)] if s in excl_suffixes), None
            )
            if hidden is None and rule.match_type == "exact":
                hidden = sigset.exclusions.get(("exact", rule.pattern))
            parent = _covering_name_rule(sigset, rule)
        else:
            hidden = next(
                (e for e in excl_nets if e.network.version == rule.network.version
                 and rule.network.subnet_of(e.network)), None
            )
            parent = _covering_net_rule(sigset, rule)
        if hidden is not None:
            found.append(Diagnostic("warning", rule.file, rule.line, f"rule for {rule.pattern!r} can never match: "
                                    f"excluded by {hidden.file}:{hidden.line}"))
        elif parent is not None and _verdict(sigset, parent) == _verdict(sigset, rule):
            found.append(Diagnostic("warning", rule.file, rule.line, f"rule for {rule.pattern!r} is shadowed: the "
                                    f"less specific rule at {parent.file}:{parent.line} ({parent.pattern!r}) "
                                    "gives the same verdict"))
    counts = sigset.rule_counts()
    for app in sigset.apps.values():
        tiers = counts.get(app.id)
        if not tiers:
            found.append(Diagnostic("warning", app.file, app.line, f"app {app.id!r} has no rules"))
        elif not tiers["high"]:
            found.append(Diagnostic("warning", app.file, app.line, f"app {app.id!r} has no high-confidence rule"))
    return found


def run_check(
    dirs: Sequence[Path] = (), *, include_bundled: bool = True, bundled_dir: Path | None = None
) -> list[Diagnostic]:
    """All errors and warnings for the bundled set plus `dirs` (as overlays), sorted by file and line."""
    sigset, diags = collect(dirs, None, bundled_dir, include_bundled=include_bundled)
    if sigset is not None:
        diags = diags + set_warnings(sigset)
    return sorted(diags, key=lambda d: (d.path, d.line, d.severity, d.message))
