"""`netwatch signatures export`: write a block list for a resolver, DNS filter or IDS."""

from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path

import click

from netwatch.atomic import write_atomically
from netwatch.signatures import SignatureError, load_signature_set
from netwatch.signatures.names import hostname_problem, normalize_name

from . import ACTIONS, FORMATS, ExportOptions, Selection, build_plan
from .ids import SID_RANGE
from .render import DEFAULT_SID_BASE


def _fail(message: str) -> None:
    click.echo(f"netwatch: {message}", err=True)
    sys.exit(2)


def _address(value: str, version: int, option: str) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != version:
        _fail(f"{option}: {value!r} is not an IPv{version} address")
    return str(address)


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True,
              help="rpz (BIND, Unbound, PowerDNS, Knot), unbound (local-zone), dnsmasq, hosts, adblock "
                   "(AdGuard Home, Pi-hole), domains (plain list), suricata, zeek-intel.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE (replaced atomically) instead of standard output.")
@click.option("--signatures", "overlays", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Overlay directory added to the bundled set (repeatable).")
@click.option("--policy", default=None, help="Policy id (default: the set's default, eo13971).")
@click.option("--min-confidence", type=click.Choice(["low", "medium", "high"]), default=None,
              help="Lowest tier that is blocked (default: the policy's alert threshold, normally medium).")
@click.option("--app", "apps", multiple=True, metavar="ID", help="Only these apps of the policy (repeatable).")
@click.option("--action", type=click.Choice(ACTIONS), default="nxdomain", show_default=True,
              help="DNS formats: answer NXDOMAIN, or the sinkhole addresses.")
@click.option("--sinkhole-ipv4", default="0.0.0.0", show_default=True)
@click.option("--sinkhole-ipv6", default="::", show_default=True)
@click.option("--zone-name", default="rpz.netwatch", show_default=True, help="rpz: the policy zone's name (SOA).")
@click.option("--serial", type=click.IntRange(1, 2**32 - 1), default=None,
              help="rpz: SOA serial (default: the current Unix time).")
@click.option("--sid-base", type=click.IntRange(1, 2**32 - 1 - SID_RANGE), default=DEFAULT_SID_BASE,
              show_default=True, help=f"suricata: first sid; the list uses at most {SID_RANGE:,} from here.")
@click.option("--no-quic", is_flag=True, help="suricata: leave out quic.sni rules (Suricata 6).")
@click.option("-q", "--quiet", is_flag=True, help="Do not report on stderr what the format cannot express.")
def export_command(fmt: str, output: Path | None, overlays: tuple[Path, ...], policy: str | None,
                   min_confidence: str | None, apps: tuple[str, ...], action: str, sinkhole_ipv4: str,
                   sinkhole_ipv6: str, zone_name: str, serial: int | None, sid_base: int, no_quic: bool,
                   quiet: bool) -> None:
    """Write a block list of the names netwatch alerts on, for a resolver, DNS filter or IDS.

    Exclusions stay resolvable where the format can say so; what a format cannot express is
    reported on stderr. Exit status: 0 written, 2 usage, signature or output error.
    """
    zone_problem = hostname_problem(normalize_name(zone_name))
    if zone_problem:
        _fail(f"--zone-name: {zone_name!r}: {zone_problem}")
    try:
        sigset = load_signature_set(overlay_dirs=overlays, policy=policy)
    except SignatureError as exc:
        _fail(str(exc))
    unknown = sorted(set(apps) - set(sigset.apps))
    if unknown:
        _fail(f"--app: unknown app id(s) {', '.join(unknown)} (known: {', '.join(sorted(sigset.apps))})")
    outside = sorted(set(apps) - set(sigset.policy.apps))
    if outside:
        _fail(f"--app: {', '.join(outside)} not in policy {sigset.policy.id}; choose a policy that flags it")
    selection = Selection(sigset.policy.id, min_confidence or sigset.policy.min_confidence,
                          frozenset(apps) if apps else None)
    sources = ["bundled netwatch signatures", *(f"overlay {path}" for path in overlays)]
    plan = build_plan(sigset, selection, sources)
    options = ExportOptions(
        action=action, sinkhole_v4=_address(sinkhole_ipv4, 4, "--sinkhole-ipv4"),
        sinkhole_v6=_address(sinkhole_ipv6, 6, "--sinkhole-ipv6"), zone_name=normalize_name(zone_name),
        serial=serial if serial is not None else int(time.time()) % 2**32, sid_base=sid_base, quic=not no_quic)
    try:
        rendered = FORMATS[fmt](plan, options)
    except ValueError as exc:
        _fail(str(exc))
    if output is None:
        click.echo(rendered.text, nl=False)
    else:
        try:
            write_atomically(output, rendered.text)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}")
    if not quiet:
        for note in rendered.notes:
            click.echo(f"netwatch: note: {note}", err=True)
