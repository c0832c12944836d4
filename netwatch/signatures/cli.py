"""`netwatch signatures ...`: list, check and explain signatures (a click group the main CLI attaches)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from netwatch.cli import fail

from .check import run_check
from .errors import SignatureError
from .loader import active_signatures_dir, load_signature_set
from .matcher import SignatureSet
from .model import CONFIDENCE_RANK, Explanation, NameMatch

_OVERLAY = click.option(
    "--signatures", "overlays", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Overlay directory (repeatable); its rules add to or replace the bundled ones.",
)
_POLICY = click.option("--policy", default=None, help="Policy id (default: the set's default policy).")


def _load(overlays: tuple[Path, ...], policy: str | None) -> SignatureSet:
    try:
        return load_signature_set(overlays, policy=policy)
    except SignatureError as exc:
        fail(str(exc))
        raise AssertionError from None  # fail() exits


@click.group(name="signatures")
def signatures_group() -> None:
    """Inspect and validate the app signatures."""


@signatures_group.command("list")
@_OVERLAY
@_POLICY
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_command(overlays: tuple[Path, ...], policy: str | None, fmt: str) -> None:
    """Apps, rule counts per confidence tier, the active policy and the set version."""
    sigset = _load(overlays, policy)
    counts = sigset.rule_counts()
    apps = []
    for app in sorted(sigset.apps.values(), key=lambda a: a.id):
        tiers = counts.get(app.id, {"high": 0, "medium": 0, "low": 0})
        apps.append({"id": app.id, "name": app.name, "vendor": app.vendor, "in_policy": app.id in sigset.policy.apps,
                     "parent_platform": app.parent_platform, "rules": tiers})
    vendor_rules = counts.get("(vendor)", {"high": 0, "medium": 0, "low": 0})
    base_dir, base_source = active_signatures_dir()
    summary = {
        "version": sigset.version, "content_hash": sigset.content_hash, "label": sigset.label,
        "base": {"source": base_source, "directory": str(base_dir)},
        "policy": {"id": sigset.policy.id, "name": sigset.policy.name, "min_confidence": sigset.policy.min_confidence,
                   "apps": sorted(sigset.policy.apps), "vendors": sorted(sigset.policy.vendors)},
        "apps": apps, "vendor_contact_rules": vendor_rules, "rules": len(sigset.rules),
        "exclusions": len(sigset.exclusions), "encrypted_dns_resolvers": len(sigset.resolvers),
    }
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"signature set {sigset.label} ({'installed update' if base_source == 'update' else 'bundled'}: "
               f"{base_dir})")
    click.echo(f"policy {sigset.policy.id} ({sigset.policy.name}); alerts at >= {sigset.policy.min_confidence}")
    click.echo(f"{'app':<12} {'name':<14} {'vendor':<15} {'policy':<6} {'high':>5} {'medium':>7} {'low':>5}")
    for row in apps:
        tiers = row["rules"]
        click.echo(f"{row['id']:<12} {row['name']:<14} {row['vendor']:<15} {'yes' if row['in_policy'] else 'no':<6} "
                   f"{tiers['high']:>5} {tiers['medium']:>7} {tiers['low']:>5}")
    click.echo(f"{'(vendor)':<12} {'vendor contact':<14} {'':<15} {'':<6} {vendor_rules['high']:>5} "
               f"{vendor_rules['medium']:>7} {vendor_rules['low']:>5}")
    click.echo(f"{len(sigset.rules)} rules, {len(sigset.exclusions)} exclusions, "
               f"{len(sigset.resolvers)} encrypted-DNS resolver names")


@signatures_group.command("check")
@click.argument("dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-bundled", is_flag=True, help="Check DIRs alone instead of as overlays on the bundled set.")
def check_command(dirs: tuple[Path, ...], no_bundled: bool) -> None:
    """Validate signature files: errors (exit 1) and warnings, each as FILE:LINE."""
    diags = run_check(dirs, include_bundled=not no_bundled)
    for diag in diags:
        click.echo(str(diag))
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    click.echo(f"{errors} error(s), {warnings} warning(s)", err=True)
    sys.exit(1 if errors else 0)


def _match_dict(match: NameMatch) -> dict:
    return {"rule_id": match.rule_id, "match_type": match.match_type, "pattern": match.pattern, "app": match.app,
            "apps": list(match.apps), "app_name": match.app_name, "vendor": match.vendor,
            "confidence": match.confidence, "role": match.role, "note": match.note, "sources": list(match.sources),
            "file": match.file, "line": match.line, "in_policy": match.in_policy}


def _explanation_dict(exp: Explanation) -> dict:
    return {
        "query": exp.query, "normalized": exp.normalized, "kind": exp.kind,
        "winner": _match_dict(exp.winner) if exp.winner else None,
        "beaten": [_match_dict(m) for m in exp.beaten],
        "exclusions": [{"match_type": e.match_type, "pattern": e.pattern, "note": e.note, "file": e.file,
                        "line": e.line} for e in exp.exclusions],
        "encrypted_dns_resolver": exp.resolver,
    }


def _describe(match: NameMatch) -> str:
    who = match.app_name or f"vendor contact ({match.vendor})"
    return (f"{who}: {match.confidence}, role {match.role}, rule {match.match_type} {match.pattern!r} "
            f"at {match.file}:{match.line}")


@signatures_group.command("match")
@click.argument("queries", nargs=-1, required=True)
@_OVERLAY
@_POLICY
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def match_command(queries: tuple[str, ...], overlays: tuple[Path, ...], policy: str | None, fmt: str) -> None:
    """Explain the verdict for each NAME or IP: winning rule, beaten rules, exclusions.

    Exit status, like grep: 0 at least one NAME matched a rule, 1 none did, 2 error.
    """
    sigset = _load(overlays, policy)
    explanations = [sigset.explain(q) for q in queries]
    status = 0 if any(e.winner is not None for e in explanations) else 1
    if fmt == "json":
        click.echo(json.dumps([_explanation_dict(e) for e in explanations], indent=2))
        sys.exit(status)
    for exp in explanations:
        click.echo(f"{exp.query} -> {exp.normalized}")
        if exp.winner is not None:
            alerting = exp.winner.in_policy and (
                CONFIDENCE_RANK[exp.winner.confidence] >= CONFIDENCE_RANK[sigset.policy.min_confidence]
            )
            flag = "alert" if alerting else "record" if exp.winner.in_policy else "outside policy"
            click.echo(f"  match: {_describe(exp.winner)} [{flag} under policy {sigset.policy.id}]")
            if exp.winner.note:
                click.echo(f"  note: {exp.winner.note}")
            for source in exp.winner.sources:
                click.echo(f"  source: {source}")
        elif exp.exclusions:
            click.echo("  no match: excluded")
        else:
            click.echo("  no match")
        for excl in exp.exclusions:
            click.echo(f"  exclusion: {excl.match_type} {excl.pattern!r} at {excl.file}:{excl.line}")
        for beaten in exp.beaten:
            click.echo(f"  beat: {_describe(beaten)}")
        if exp.resolver:
            click.echo(f"  encrypted-DNS resolver: {exp.resolver}")
    sys.exit(status)


def _attach_export() -> None:
    """`netwatch signatures export` lives in netwatch.export; attached here so it shows in this group."""
    from netwatch.export.cli import export_command

    signatures_group.add_command(export_command)


_attach_export()

from .feed_cli import bundle_command, diff_command, update_command, verify_command  # noqa: E402

for _command in (bundle_command, verify_command, update_command, diff_command):
    signatures_group.add_command(_command)
