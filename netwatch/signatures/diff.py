"""`netwatch signatures diff OLD NEW`: what an update adds, removes and changes, per app.

Rules are compared by their key (match type + pattern, or CIDR), like overlays replace them; a
rule that exists on both sides is "changed" when its apps, vendor, tier, role, sources or note
differ. Rules are grouped under each app they name, vendor-contact rules under their vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .matcher import SignatureSet
from .model import Rule

_RULE_FIELDS = ("apps", "vendor", "confidence", "role", "sources", "note")


def rule_dict(rule: Rule) -> dict[str, Any]:
    return {"match": rule.match_type, "pattern": rule.pattern, "apps": list(rule.apps), "vendor": rule.vendor,
            "confidence": rule.confidence, "role": rule.role, "sources": list(rule.sources), "note": rule.note}


def _groups(rule: Rule) -> list[str]:
    return list(rule.apps) if rule.apps else [f"vendor:{rule.vendor}"]


@dataclass
class GroupDiff:
    name: str
    status: str = "changed"  # added | removed | changed (the app itself)
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "added": self.added, "removed": self.removed,
                "changed": self.changed}


def diff_sets(old: SignatureSet, new: SignatureSet) -> dict[str, Any]:
    """A JSON-ready description of every difference; `identical` is True when there is none."""
    groups: dict[str, GroupDiff] = {}

    def group(gid: str, sigset: SignatureSet) -> GroupDiff:
        if gid not in groups:
            app = sigset.apps.get(gid)
            groups[gid] = GroupDiff(app.name if app else gid.removeprefix("vendor:"))
        return groups[gid]

    for key in sorted(new.rules.keys() - old.rules.keys()):
        for gid in _groups(new.rules[key]):
            group(gid, new).added.append(rule_dict(new.rules[key]))
    for key in sorted(old.rules.keys() - new.rules.keys()):
        for gid in _groups(old.rules[key]):
            group(gid, old).removed.append(rule_dict(old.rules[key]))
    for key in sorted(old.rules.keys() & new.rules.keys()):
        before, after = rule_dict(old.rules[key]), rule_dict(new.rules[key])
        fields = [f for f in _RULE_FIELDS if before[f] != after[f]]
        if fields:
            for gid in dict.fromkeys(_groups(old.rules[key]) + _groups(new.rules[key])):
                group(gid, new if gid in new.apps else old).changed.append(
                    {"match": key[0], "pattern": key[1], "fields": fields,
                     "old": {f: before[f] for f in fields}, "new": {f: after[f] for f in fields}})
    for app_id in new.apps.keys() - old.apps.keys():
        group(app_id, new).status = "added"
    for app_id in old.apps.keys() - new.apps.keys():
        group(app_id, old).status = "removed"
    for app_id in old.apps.keys() & new.apps.keys():
        if old.apps[app_id].name != new.apps[app_id].name:
            group(app_id, new).name = f"{old.apps[app_id].name} -> {new.apps[app_id].name}"

    policies = {}
    for pid in sorted(old.policies.keys() | new.policies.keys()):
        a, b = old.policies.get(pid), new.policies.get(pid)
        if a is None or b is None:
            policies[pid] = {"status": "added" if a is None else "removed"}
        elif (a.apps, a.vendors, a.min_confidence) != (b.apps, b.vendors, b.min_confidence):
            policies[pid] = {"status": "changed", "apps_added": sorted(b.apps - a.apps),
                             "apps_removed": sorted(a.apps - b.apps), "vendors_added": sorted(b.vendors - a.vendors),
                             "vendors_removed": sorted(a.vendors - b.vendors),
                             "min_confidence": [a.min_confidence, b.min_confidence]}

    def keyed(before: dict, after: dict) -> dict[str, list[str]]:
        return {"added": [f"{m} {p}" for m, p in sorted(after.keys() - before.keys())],
                "removed": [f"{m} {p}" for m, p in sorted(before.keys() - after.keys())]}

    exclusions, resolvers = keyed(old.exclusions, new.exclusions), keyed(old.resolvers, new.resolvers)
    counts = {k: sum(len(getattr(g, k)) for g in groups.values()) for k in ("added", "removed", "changed")}
    identical = (not groups and not policies and not any(exclusions.values()) and not any(resolvers.values()))
    return {
        "old": {"version": old.version, "content_hash": old.content_hash},
        "new": {"version": new.version, "content_hash": new.content_hash},
        "identical": identical, "rule_changes": counts,
        "apps": {gid: g.to_dict() for gid, g in sorted(groups.items())},
        "policies": policies, "exclusions": exclusions, "encrypted_dns_resolvers": resolvers,
    }


def _rule_line(rule: dict) -> str:
    who = ",".join(rule["apps"]) or f"vendor {rule['vendor']}"
    sources = len(rule["sources"])
    return f"{rule['match']} {rule['pattern']}  {rule['confidence']} {rule['role']} ({who}; {sources} source(s))"


def _change_text(field_name: str, before: Any, after: Any) -> str:
    if field_name == "sources":
        gained = [s for s in after if s not in before]
        lost = [s for s in before if s not in after]
        return "sources " + " ".join([*(f"+{s}" for s in gained), *(f"-{s}" for s in lost)])
    if isinstance(before, list):
        before, after = ",".join(before) or "-", ",".join(after) or "-"
    return f"{field_name} {before} -> {after}"


def format_text(diff: dict[str, Any]) -> str:
    """The diff for a terminal: one block per app, then policies, exclusions and resolvers."""
    old, new = diff["old"], diff["new"]
    lines = [f"signatures {old['version']} ({old['content_hash'][:19]}) -> {new['version']} "
             f"({new['content_hash'][:19]})"]
    if diff["identical"]:
        lines.append("no differences")
        return "\n".join(lines) + "\n"
    for gid, g in diff["apps"].items():
        status = f" [app {g['status']}]" if g["status"] != "changed" else ""
        lines.append(f"{gid} ({g['name']}){status}: +{len(g['added'])} -{len(g['removed'])} ~{len(g['changed'])}")
        lines += [f"  + {_rule_line(r)}" for r in g["added"]]
        lines += [f"  - {_rule_line(r)}" for r in g["removed"]]
        for c in g["changed"]:
            what = "; ".join(_change_text(f, c["old"][f], c["new"][f]) for f in c["fields"])
            lines.append(f"  ~ {c['match']} {c['pattern']}: {what}")
    for pid, p in diff["policies"].items():
        if p["status"] != "changed":
            lines.append(f"policy {pid}: {p['status']}")
            continue
        parts = [*(f"+app {a}" for a in p["apps_added"]), *(f"-app {a}" for a in p["apps_removed"]),
                 *(f"+vendor {v}" for v in p["vendors_added"]), *(f"-vendor {v}" for v in p["vendors_removed"])]
        if p["min_confidence"][0] != p["min_confidence"][1]:
            parts.append(f"min_confidence {p['min_confidence'][0]} -> {p['min_confidence'][1]}")
        lines.append(f"policy {pid}: {', '.join(parts)}")
    for label, section in (("exclusion", diff["exclusions"]), ("encrypted-DNS resolver",
                                                               diff["encrypted_dns_resolvers"])):
        lines += [f"{label} + {x}" for x in section["added"]] + [f"{label} - {x}" for x in section["removed"]]
    c = diff["rule_changes"]
    lines.append(f"{c['added']} rule(s) added, {c['removed']} removed, {c['changed']} changed "
                 "(a rule naming several apps counts once per app)")
    return "\n".join(lines) + "\n"
