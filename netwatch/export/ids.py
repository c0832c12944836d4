"""IDS formats: Suricata rules and Zeek Intel framework files.

Suricata rules use suffix semantics on a label boundary: `dotprefix` puts a dot in front of the
inspected name, so `content:".alipay.com"; endswith;` matches alipay.com and x.alipay.com but not
notalipay.com. Names the signatures keep unblocked under a blocked suffix (exclusions, rules
outside the selection) become negated `pcre` tests in the enclosing rule. Zeek's Intel framework
matches `Intel::DOMAIN` indicators as whole names only; the caveat is reported.
"""

from __future__ import annotations

import re

from .plan import BLOCK, PASS, BlockPlan, Point
from .render import ExportOptions, Rendered, commented, header_lines, one_line

# (protocol in the rule header, sticky buffer, case-insensitive content?)
_SURICATA_BUFFERS = (
    ("dns", "dns.query", True),
    ("tls", "tls.sni", True),
    ("quic", "quic.sni", True),  # Suricata 7 and later
    ("http", "http.host", False),  # Suricata lower-cases http.host; nocase (or pcre /i) only draws a warning
)
SID_RANGE = 100_000  # sids used: sid_base .. sid_base + SID_RANGE - 1


def _msg(text: str) -> str:
    """Escape what Suricata's rule grammar reserves inside a quoted option value."""
    return re.sub(r'([;"\\])', r"\\\1", one_line(text))


def _meta(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:+-]", "_", text)


def _pcre_name(name: str, *, exact: bool) -> str:
    escaped = ("." + name).replace(".", r"\.")  # host names hold only [a-z0-9_.-]
    return f"^{escaped}$" if exact else f"{escaped}$"


class _Owners:
    """Which blocking Suricata rule covers a region of the name tree."""

    def __init__(self, plan: BlockPlan) -> None:
        self.by_name = {p.name: p for p in plan.points}
        self.region: dict[str, str | None] = {}  # suffix point -> the point whose rule decides below it
        for point in plan.points:
            inherited = self.region.get(point.parent) if point.parent else None
            if point.suffix:
                self.region[point.name] = point.name if point.below.action != point.context else inherited

    def covering(self, point: Point) -> str | None:
        """The point whose suffix rule decides `point`'s own name (None: nothing blocks it)."""
        if point.suffix and point.below.action != point.context:
            owner = point.name
        else:
            owner = self.region.get(point.parent) if point.parent else None
        if owner is None or self.by_name[owner].below.action != BLOCK:
            return None
        return owner

    def owner_below(self, point: Point) -> str | None:
        """The blocking rule that decides names under `point`'s parent region."""
        owner = self.region.get(point.parent) if point.parent else None
        if owner is None or self.by_name[owner].below.action != BLOCK:
            return None
        return owner


def render_suricata(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """One rule per blocked name or suffix and per protocol, sids counted up from `sid_base`."""
    owners = _Owners(plan)
    negations: dict[str, list[str]] = {}
    exact_rules: list[Point] = []
    suffix_rules: list[Point] = []
    for point in plan.points:
        if point.suffix and point.below.action == BLOCK and point.context == PASS:
            suffix_rules.append(point)
        elif point.suffix and point.below.action == PASS and point.context == BLOCK:
            owner = owners.owner_below(point)
            if owner is not None:
                negations.setdefault(owner, []).append(_pcre_name(point.name, exact=False))
        covering = owners.covering(point)
        if point.apex.action == BLOCK and covering is None:
            exact_rules.append(point)
        elif point.apex.action == PASS and covering is not None:
            negations.setdefault(covering, []).append(_pcre_name(point.name, exact=True))
    buffers = [b for b in _SURICATA_BUFFERS if opts.quic or b[0] != "quic"]
    lines = commented(header_lines(plan, "Suricata rules"), "#")
    lines.append(f"# sids {opts.sid_base}-{opts.sid_base + SID_RANGE - 1}; rev 1; needs Suricata 7 "
                 "(quic.sni; use --no-quic for Suricata 6)")
    sid = opts.sid_base
    items = [(p, False) for p in suffix_rules] + [(p, True) for p in exact_rules]
    items.sort(key=lambda item: (tuple(reversed(item[0].name.split("."))), item[1]))
    for point, exact in items:
        reason = point.apex if exact else point.below
        who = reason.app_names or "vendor contact"
        for proto, buffer, nocase in buffers:
            if exact:
                match = f'{buffer}; content:"{point.name}"; {"nocase; " if nocase else ""}bsize:{len(point.name)};'
            else:
                match = (f'{buffer}; dotprefix; content:".{point.name}"; {"nocase; " if nocase else ""}'
                         "endswith;")
            for pattern in negations.get(point.name, ()) if not exact else ():
                match += f' pcre:!"/{pattern}/{"i" if nocase else ""}";'
            scope = "" if exact else " and subdomains"
            meta = f"netwatch_rule {_meta(reason.rule_id or '')}, netwatch_signatures {_meta(plan.version)}"
            lines.append(
                f'alert {proto} any any -> any any (msg:"{_msg(f"netwatch {who}: {buffer} {point.name}{scope}")}"; '
                f"{match} classtype:policy-violation; metadata:{meta}; sid:{sid}; rev:1;)"
            )
            sid += 1
            if sid >= opts.sid_base + SID_RANGE:
                raise ValueError(f"more than {SID_RANGE} Suricata rules; the sid range is full")
    notes = []
    if plan.networks:
        notes.append(f"suricata: {len(plan.networks)} address rule(s) skipped (the rpz format carries them)")
    return Rendered("\n".join(lines) + "\n", notes)


def render_zeek_intel(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """An Intel framework file; load it with `redef Intel::read_files += { "<path>" };`."""
    lines = commented(header_lines(plan, "Zeek Intel framework file"), "#")
    lines.append("#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc")
    source = f"netwatch {plan.label}"
    suffixes = 0
    for point in plan.blocked_names():
        desc = point.apex.describe()
        if point.suffix and point.below.action == BLOCK:
            suffixes += 1
            desc += "; subdomains are not matched by Intel::DOMAIN"
        lines.append(f"{point.name}\tIntel::DOMAIN\t{one_line(source)}\t{one_line(desc)}")
    for net in plan.networks:
        lines.append(f"{net.network}\tIntel::SUBNET\t{one_line(source)}\t{one_line(net.reason.describe())}")
    notes = []
    if suffixes:
        notes.append(f"zeek-intel: Intel::DOMAIN matches whole names only: subdomains of {suffixes} blocked "
                     "suffix(es) are not covered")
    return Rendered("\n".join(lines) + "\n", notes)
