"""`netwatch signatures bundle | verify | update | diff`: signed signature feeds (attached in cli.py)."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import click

from netwatch.atomic import write_atomically
from netwatch.cli import fail

from .bundle import (
    MAX_BUNDLE_BYTES,
    BundleError,
    TrustedKey,
    build_bundle,
    load_private_key,
    open_bundle,
    tree_files,
    trusted_keys,
)
from .diff import diff_sets, format_text
from .errors import Diagnostic
from .loader import active_signatures_dir, bundled_signatures_dir, collect
from .matcher import SignatureSet
from .store import TREE, Store, active_tree, manifest_version, updates_dir, write_tree
from .update import DEFAULT_TIMEOUT_S, UpdateError, fetch, install, rollback, validate_tree

FEED_URL_ENV = "NETWATCH_SIGNATURES_URL"
T = TypeVar("T")


def _is_url(text: str) -> bool:
    return text.startswith(("https://", "file://", "http://"))


_TRUSTED_KEY = click.option(
    "--trusted-key", "pinned_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Trust only this Ed25519 public key (PEM; repeatable). Default: the keys shipped with netwatch "
         "plus /etc/netwatch/signature-keys/*.pub.")
_OVERLAYS = click.option(
    "--signatures", "overlays", multiple=True, type=click.Path(file_okay=False, path_type=Path),
    help="Overlay directory the new set must work with (repeatable; give the sensor's).")
_CA_FILE = click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="CA certificates (PEM) for an https:// feed with a private CA.")
_TIMEOUT = click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT_S, show_default=True,
                        help="Seconds without progress before a download is abandoned.")


def _keys(pinned: tuple[Path, ...]) -> list[TrustedKey]:
    try:
        return trusted_keys(pinned)
    except BundleError as exc:
        fail(str(exc))
        raise AssertionError from None  # unreachable: fail() exits


def _fetch(source: str, ca_file: Path | None, timeout: float, max_bytes: int = MAX_BUNDLE_BYTES) -> bytes:
    try:
        return fetch(source if _is_url(source) else Path(source).resolve().as_uri(), max_bytes=max_bytes,
                     timeout=timeout, ca_file=ca_file)
    except UpdateError as exc:
        fail(str(exc))
        raise AssertionError from None


@click.command("bundle")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Bundle file to write (.tar.gz).")
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Ed25519 private key (PEM). Without it the key is read from $NETWATCH_SIGNING_KEY.")
@click.option("--min-netwatch", default=None, help="Oldest netwatch version that may install it (default: this one).")
@click.option("--date", default=None, help="Bundle date YYYY-MM-DDTHH:MM:SSZ (default: now; fixed = reproducible).")
def bundle_command(directory: Path, output: Path, key_file: Path | None, min_netwatch: str | None,
                   date: str | None) -> None:
    """Build and sign a bundle from a signature DIRECTORY (its MANIFEST.yaml gives the version).

    The private key comes from --key-file or the NETWATCH_SIGNING_KEY environment variable (PEM text;
    NETWATCH_SIGNING_KEY_PASSPHRASE if it is encrypted), never from a command-line value.
    """
    from netwatch import __version__

    key = _or_fail(lambda: load_private_key(key_file))
    errors = [d for d in _check(directory) if d.severity == "error"]
    if errors:
        for diag in errors:
            click.echo(str(diag), err=True)
        fail(f"{directory} has {len(errors)} error(s); a set that does not validate is not signed")
    version = manifest_version(directory)
    if version is None:
        fail(f"{directory} has no MANIFEST.yaml with a 'version'")
    files = _or_fail(lambda: tree_files(directory))
    data = _or_fail(lambda: build_bundle(files, version=version, key=key, date=date,
                                         min_netwatch=min_netwatch or __version__))
    try:
        write_atomically(output, data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"wrote {output}: signatures {version}, {len(files)} files, {len(data):,} bytes")


def _or_fail(make: Callable[[], T]) -> T:
    try:
        return make()
    except BundleError as exc:
        fail(str(exc))
        raise AssertionError from None


def _check(tree: Path, overlays: tuple[Path, ...] = ()) -> list[Diagnostic]:
    from .check import run_check

    return run_check(overlays, bundled_dir=tree)


@contextmanager
def _unpacked(data: bytes, keys: list[TrustedKey], overlays: tuple[Path, ...]) -> Iterator[tuple]:
    """A verified, validated bundle unpacked in a temporary directory: (bundle, tree, warnings)."""
    try:
        bundle = open_bundle(data, keys)
    except BundleError as exc:
        fail(str(exc))
    with tempfile.TemporaryDirectory(prefix="netwatch-bundle-") as tmp:
        tree = Path(tmp) / TREE
        try:
            write_tree(bundle.files, tree)
            warnings = validate_tree(tree, overlays, bundle.manifest.version)
        except OSError as exc:
            fail(f"cannot unpack the bundle in {tmp}: {exc.strerror or exc}")
        except UpdateError as exc:
            fail(str(exc))
        yield bundle, tree, warnings


@click.command("verify")
@click.argument("source")
@_TRUSTED_KEY
@_OVERLAYS
@_CA_FILE
@_TIMEOUT
def verify_command(source: str, pinned_keys: tuple[Path, ...], overlays: tuple[Path, ...], ca_file: Path | None,
                   timeout: float) -> None:
    """Check a bundle (FILE or https:// / file:// URL): signature, file hashes, and every rule.

    Exit status: 0 the bundle is good, 2 it is not (the reason is on stderr).
    """
    data = _fetch(source, ca_file, timeout)
    with _unpacked(data, _keys(pinned_keys), overlays) as (bundle, _tree, warnings):
        m = bundle.manifest
        click.echo(f"{source}: good signature by key {bundle.signer.key_id} ({bundle.signer.source})")
        click.echo(f"  version {m.version}, date {m.date}, needs netwatch >= {m.min_netwatch}, "
                   f"{len(m.files)} files, all hashes match, rules valid ({len(warnings)} warning(s))")


@click.command("update")
@click.option("--url", default=None, help=f"Feed URL, https:// or file:// (default: ${FEED_URL_ENV}).")
@click.option("--dir", "store_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where updates are installed (default: $NETWATCH_SIGNATURE_UPDATES, else "
                   "/var/lib/netwatch/signatures).")
@click.option("--allow-downgrade", is_flag=True, help="Install even if the bundle is not newer than the active set.")
@click.option("--rollback", "do_rollback", is_flag=True, help="Make the previous set active again; no download.")
@_TRUSTED_KEY
@_OVERLAYS
@_CA_FILE
@_TIMEOUT
@click.option("--max-size", type=click.IntRange(min=1), default=MAX_BUNDLE_BYTES // 2**20, show_default=True,
              help="Largest bundle to download, in MiB.")
def update_command(url: str | None, store_dir: Path | None, allow_downgrade: bool, do_rollback: bool,
                   pinned_keys: tuple[Path, ...], overlays: tuple[Path, ...], ca_file: Path | None, timeout: float,
                   max_size: int) -> None:
    """Fetch a signed signature bundle and make it the active set, atomically.

    Any failure (download, signature, hashes, version, validation, disk) leaves the active set as it was
    and exits with status 2. A running sensor picks up a successful update by itself.
    """
    root = store_dir or updates_dir()
    if root is None:
        fail("signature updates are off ($NETWATCH_SIGNATURE_UPDATES is empty); give --dir DIR")
    store = Store(root)
    before = manifest_version(active_tree(bundled_signatures_dir(), root)[0])
    if do_rollback:
        try:
            old, new = rollback(store, overlays)
        except UpdateError as exc:
            fail(f"rollback failed: {exc}")
        click.echo(f"netwatch: signatures rolled back {old} -> {new}"
                   + (" (the bundled set)" if store.link("current") is None else ""))
        return
    url = url or os.environ.get(FEED_URL_ENV)
    if not url:
        fail(f"no feed: give --url URL or set {FEED_URL_ENV} (see docs/signatures.md)")
    keys = _keys(pinned_keys)
    try:
        data = fetch(url, max_bytes=max_size * 2**20, timeout=timeout, ca_file=ca_file)
        result = install(data, store, keys, overlays=overlays, allow_downgrade=allow_downgrade)
    except UpdateError as exc:
        fail(f"update failed: {exc}; the active set ({before}) is unchanged")
    except KeyboardInterrupt:
        now = manifest_version(active_tree(bundled_signatures_dir(), root)[0])
        fail(f"update interrupted; the active set is {now}")
    for warning in result.warnings:
        click.echo(f"netwatch: warning: {warning}", err=True)
    if not result.changed:
        click.echo(f"netwatch: signatures are up to date ({result.new_version}; {result.note})")
        return
    click.echo(f"netwatch: signatures updated {result.old_version} -> {result.new_version} in {root}; "
               "the previous set is kept for --rollback")
    if result.note:
        click.echo(f"netwatch: note: {result.note}")


def _load_for_diff(spec: str, keys: list[TrustedKey] | None, ca_file: Path | None, timeout: float,
                   tmp: Path) -> SignatureSet:
    """OLD/NEW of `diff`: bundled | active | previous | a directory | a bundle file or URL."""
    if spec == "bundled":
        tree = bundled_signatures_dir()
    elif spec == "active":
        tree = active_signatures_dir()[0]
    elif spec == "previous":
        root = updates_dir()
        found = Store(root).set_dir("previous") if root else None
        if found is None:
            fail(f"no previous set in {root}")
        tree = found / TREE
    elif _is_url(spec) or Path(spec).is_file():
        data = _fetch(spec, ca_file, timeout)
        try:
            bundle = open_bundle(data, keys if keys is not None else _keys(()))
        except BundleError as exc:
            fail(f"{spec}: {exc}")
        tree = tmp / f"{len(list(tmp.iterdir()))}" / TREE
        write_tree(bundle.files, tree)
    elif Path(spec).is_dir():
        tree = Path(spec)
    else:
        fail(f"{spec}: no such directory or bundle (or use bundled, active, previous)")
    sigset, diags = collect((), None, tree)
    if sigset is None:
        for diag in diags:
            if diag.severity == "error":
                click.echo(str(diag), err=True)
        fail(f"{spec}: the signature set does not load")
    return sigset


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_TRUSTED_KEY
@_CA_FILE
@_TIMEOUT
def diff_command(old: str, new: str, fmt: str, pinned_keys: tuple[Path, ...], ca_file: Path | None,
                 timeout: float) -> None:
    """Rules added, removed and changed per app between two signature sets.

    OLD and NEW: a directory, a bundle file or URL (its signature must verify), or `bundled`, `active`,
    `previous`. Exit status: 0 no differences, 1 differences, 2 error.
    """
    keys = _keys(pinned_keys) if pinned_keys else None
    with tempfile.TemporaryDirectory(prefix="netwatch-diff-") as tmp:
        before = _load_for_diff(old, keys, ca_file, timeout, Path(tmp))
        after = _load_for_diff(new, keys, ca_file, timeout, Path(tmp))
    result = diff_sets(before, after)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(format_text(result), nl=False)
    sys.exit(0 if result["identical"] else 1)
