"""Enforcement lists from the signatures: resolver, DNS-filter and IDS formats (`netwatch signatures export`)."""

from __future__ import annotations

from collections.abc import Callable

from .dns import render_adblock, render_dnsmasq, render_domains, render_hosts, render_rpz, render_unbound
from .ids import render_suricata, render_zeek_intel
from .plan import BLOCK, PASS, BlockPlan, Point, Selection, build_plan
from .render import ACTIONS, ExportOptions, Rendered

FORMATS: dict[str, Callable[[BlockPlan, ExportOptions], Rendered]] = {
    "rpz": render_rpz,
    "unbound": render_unbound,
    "dnsmasq": render_dnsmasq,
    "hosts": render_hosts,
    "adblock": render_adblock,
    "domains": render_domains,
    "suricata": render_suricata,
    "zeek-intel": render_zeek_intel,
}

__all__ = ["ACTIONS", "BLOCK", "FORMATS", "PASS", "BlockPlan", "ExportOptions", "Point", "Rendered", "Selection",
           "build_plan"]
