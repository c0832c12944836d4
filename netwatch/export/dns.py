"""Resolver and DNS-filter formats: RPZ, Unbound local-zone, dnsmasq, hosts, adblock, plain domains.

RPZ (BIND, Unbound, PowerDNS Recursor, Knot Resolver), Unbound and dnsmasq choose the most
specific entry, so they get one entry per point where the verdict changes (see plan.py), and
pass entries keep excluded names resolvable. hosts files and plain domain lists match whole names
only: they list every blocked name and say on stderr which subdomains they cannot cover.
"""

from __future__ import annotations

import ipaddress

from .plan import BLOCK, PASS, BlockPlan, Point
from .render import ExportOptions, Rendered, commented, header_lines, one_line


def _why(point: Point) -> str:
    """Why a name is listed, on one line: app names and notes come from signature files (overlays,
    updates), and a line break in them must not end the comment and start a zone or config line."""
    if not point.suffix or point.apex.action == point.below.action:
        return one_line(point.apex.describe())
    return one_line(f"{point.apex.describe()}; subdomains: {point.below.describe()}")


def _grouped(notes: dict[str, list[str]], limit: int | None = None) -> list[str]:
    """One stderr note per kind of limitation, naming the names it concerns (the first `limit`)."""
    out = []
    for text, names in notes.items():
        if names:
            more = f" and {len(names) - limit} more" if limit is not None and len(names) > limit else ""
            out.append(text.format(n=len(names), names=", ".join(names[:limit]) + more))
    return out


# -- RPZ -------------------------------------------------------------------------------------------

def _rpz_ip_owner(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The rpz-ip trigger owner for a network (draft-vixie-dnsop-dns-rpz, section 4.2)."""
    if network.version == 4:
        octets = str(network.network_address).split(".")
        return ".".join([str(network.prefixlen), *reversed(octets)]) + ".rpz-ip"
    groups = [format(int(g, 16), "x") for g in network.network_address.exploded.split(":")]
    return ".".join([str(network.prefixlen), *reversed(groups)]) + ".rpz-ip"


def render_rpz(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """A response-policy zone file; the zone name is given to the resolver (default rpz.netwatch)."""
    # RPZ "CNAME ." answers NXDOMAIN; address records answer with the sinkhole.
    block = [f"A {opts.sinkhole_v4}", f"AAAA {opts.sinkhole_v6}"] if opts.action == "sinkhole" else ["CNAME ."]
    passthru = ["CNAME rpz-passthru."]
    lines = commented(header_lines(plan, "response policy zone (RPZ)"), ";")
    lines += [
        f"; load it as the response-policy zone {opts.zone_name}",
        f"$TTL {opts.ttl}",
        f"@ IN SOA localhost. hostmaster.localhost. {opts.serial} 3600 600 604800 {opts.ttl}",
        "@ IN NS localhost.",
    ]
    for point in plan.entries:
        lines.append(f"; {point.name}: {_why(point)}")
        # Both owners are always written: an entry at a name makes it an existing node, which stops
        # a wildcard above it from covering it or its subdomains in DNS lookup semantics.
        for owner, action in ((point.name, point.apex.action), (f"*.{point.name}", point.below.action)):
            for rdata in block if action == BLOCK else passthru:
                lines.append(f"{owner} {rdata}")
    for net in plan.networks:
        lines.append(f"; {net.network}: {net.reason.describe()} (answers containing these addresses)")
        lines.extend(f"{_rpz_ip_owner(net.network)} {rdata}" for rdata in block)
    return Rendered("\n".join(lines) + "\n")


# -- Unbound local-zone ----------------------------------------------------------------------------

def render_unbound(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """`local-zone:` lines for an `include:` (Unbound RPZ support expresses more: prefer rpz)."""
    sinkholed: list[str] = []
    unblocked_below: list[str] = []
    blocked_apex: list[str] = []
    lines = commented(header_lines(plan, "Unbound local-zone list"), "#")
    lines.append("server:")
    sinkhole_data = (f"A {opts.sinkhole_v4}", f"AAAA {opts.sinkhole_v6}")

    def zone(name: str, kind: str) -> None:
        lines.append(f'    local-zone: "{name}." {kind}')

    def sink(name: str) -> None:
        lines.extend(f'    local-data: "{name}. {opts.ttl} IN {rr}"' for rr in sinkhole_data)

    for point in plan.entries:
        lines.append(f"    # {point.name}: {_why(point)}")
        apex, below, context = point.apex.action, point.below.action, point.context
        if apex == below:
            if apex == PASS:
                zone(point.name, "always_transparent")
            elif opts.action == "sinkhole":
                zone(point.name, "redirect")
                sink(point.name)
            else:
                zone(point.name, "always_nxdomain")
        elif below == context and apex == BLOCK:
            # One name without its subdomains: a transparent zone whose only data is the sinkhole.
            zone(point.name, "transparent")
            sink(point.name)
            if opts.action == "nxdomain":
                sinkholed.append(point.name)
        elif apex == PASS:
            zone(point.name, "always_transparent")
            unblocked_below.append(point.name)
        else:
            zone(point.name, "always_nxdomain" if opts.action == "nxdomain" else "redirect")
            if opts.action == "sinkhole":
                sink(point.name)
            blocked_apex.append(point.name)
    notes = _grouped({
        f"unbound: {{n}} name(s) blocked without their subdomains are answered with {opts.sinkhole_v4} and "
        f"{opts.sinkhole_v6}, not NXDOMAIN (a local-zone cannot NXDOMAIN one name alone): {{names}}": sinkholed,
        "unbound: subdomains of {n} name(s) the signatures keep resolvable are not blocked (a local-zone cannot "
        "pass a name and block its subdomains; the rpz format can): {names}": unblocked_below,
        "unbound: {n} name(s) the signatures keep resolvable are blocked with their subdomains (a local-zone "
        "covers its apex; the rpz format can express this): {names}": blocked_apex,
    })
    if plan.networks:
        notes.append(f"unbound: {len(plan.networks)} address rule(s) skipped: local-zone lists names only "
                     "(the rpz format carries them as rpz-ip triggers)")
    return Rendered("\n".join(lines) + "\n", notes)


# -- dnsmasq ----------------------------------------------------------------------------------------

def render_dnsmasq(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """`address=/name/` (NXDOMAIN or sinkhole) and `server=/name/#` (resolve normally) lines.

    dnsmasq picks the most specific domain; `/*.name/` (dnsmasq 2.86+) matches only subdomains.
    """
    lines = commented(header_lines(plan, "dnsmasq configuration"), "#")

    def entry(domain: str, action: str) -> None:
        if action == PASS:
            lines.append(f"server=/{domain}/#")
        elif opts.action == "sinkhole":
            lines.append(f"address=/{domain}/{opts.sinkhole_v4}")
            lines.append(f"address=/{domain}/{opts.sinkhole_v6}")
        else:
            lines.append(f"address=/{domain}/")

    for point in plan.entries:
        lines.append(f"# {point.name}: {_why(point)}")
        if point.apex.action == point.below.action:
            entry(point.name, point.apex.action)
        else:
            entry(point.name, point.apex.action)
            entry(f"*.{point.name}", point.below.action)
    notes = []
    if plan.networks:
        notes.append(f"dnsmasq: {len(plan.networks)} address rule(s) skipped: dnsmasq lists names only")
    return Rendered("\n".join(lines) + "\n", notes)


# -- whole-name formats ------------------------------------------------------------------------------

def _whole_name_notes(plan: BlockPlan, fmt: str) -> list[str]:
    notes = []
    uncovered = [p.name for p in plan.points if p.suffix and p.below.action == BLOCK]
    if uncovered:
        notes.append(f"{fmt}: matches whole names only, so subdomains of {len(uncovered)} blocked suffix(es) "
                     f"are not covered (e.g. {', '.join(uncovered[:3])}); use rpz, unbound, dnsmasq or adblock "
                     "for suffix blocking")
    kept = [p.name for p in plan.points if p.apex.action == PASS and p.context == BLOCK]
    notes += _grouped({
        f"{fmt}: cannot express exceptions; {{n}} name(s) under blocked suffixes that the signatures keep "
        "resolvable (exclusions, rules outside the selection) are simply not listed: {names}": kept,
    }, limit=5)
    if plan.networks:
        notes.append(f"{fmt}: {len(plan.networks)} address rule(s) skipped: names only")
    return notes


def render_hosts(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """/etc/hosts lines pointing each blocked name at the sinkhole addresses."""
    lines = commented(header_lines(plan, "hosts file"), "#")
    for point in plan.blocked_names():
        lines.append(f"{opts.sinkhole_v4} {point.name}")
        lines.append(f"{opts.sinkhole_v6} {point.name}")
    return Rendered("\n".join(lines) + "\n", _whole_name_notes(plan, "hosts"))


def render_domains(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """One blocked name per line (Pi-hole and other plain-list consumers match them exactly)."""
    lines = commented(header_lines(plan, "plain domain list"), "#")
    lines += [point.name for point in plan.blocked_names()]
    return Rendered("\n".join(lines) + "\n", _whole_name_notes(plan, "domains"))


# -- adblock (AdGuard Home, Pi-hole v6 ABP-style lists) ---------------------------------------------

_ADBLOCK_LEVELS = {1: ("", ""), 2: ("@@", ""), 3: ("", "$important"), 4: ("@@", "$important")}


def render_adblock(plan: BlockPlan, opts: ExportOptions) -> Rendered:
    """`||name^` blocks a name and its subdomains, `|name^` the name only, `@@` keeps it resolvable.

    Adblock rules do not pick the most specific name: an exception beats a block, `$important`
    beats a plain exception. Nesting levels alternate (block, exception, block, exception) and are
    mapped to those four priorities; a fifth level cannot be expressed and is reported.
    """
    notes: list[str] = []
    region_level: dict[str, int] = {}  # suffix point -> level of the rule deciding the names below it
    lines = commented(header_lines(plan, "adblock-style DNS filter list (AdGuard Home, Pi-hole)"), "!")

    def rule(anchor: str, name: str, level: int) -> None:
        if level > 4:
            notes.append(f"adblock: {name} is nested more than four levels deep; its rule cannot outrank "
                         "the enclosing ones")
            level -= 2 * ((level - 3) // 2)  # the highest level with the same action (odd: block)
        prefix, suffix = _ADBLOCK_LEVELS[level]
        lines.append(f"{prefix}{anchor}{name}^{suffix}")

    for point in plan.points:
        level = region_level[point.parent] if point.parent is not None else 0
        rules: list[tuple[str, int]] = []
        if point.below.action != point.context:
            level += 1
            rules.append(("||", level))
        covering = point.below.action if rules else point.context
        if point.apex.action != covering:
            rules.append(("|", level + 1))
        if point.suffix:
            region_level[point.name] = level
        if rules:
            lines.append(f"! {point.name}: {_why(point)}")
            for anchor, rule_level in rules:
                rule(anchor, point.name, rule_level)
    if plan.networks:
        notes.append(f"adblock: {len(plan.networks)} address rule(s) skipped: names only")
    return Rendered("\n".join(lines) + "\n", notes)


def describe_point(point: Point) -> str:
    return _why(point)
