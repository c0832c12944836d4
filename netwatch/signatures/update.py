"""`netwatch signatures update`: fetch a signed bundle, check it every way, swap it in atomically.

Order matters: nothing from the network is trusted (or written anywhere) before the Ed25519
signature and every file hash check out; the set is then validated like `signatures check`
(together with the admin's overlays) in a staging directory, and only a final rename() makes it
active. Any failure before that rename leaves the active set exactly as it was.
"""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from netwatch import __version__

from .bundle import MAX_BUNDLE_BYTES, SIGNATURE_MEMBER, BundleError, TrustedKey, VerifiedBundle, open_bundle
from .check import run_check
from .errors import Diagnostic
from .loader import bundled_signatures_dir
from .store import (
    TREE,
    Store,
    StoreError,
    active_tree,
    describe_os_error,
    manifest_version,
    version_key,
    write_file,
    write_tree,
)

DEFAULT_TIMEOUT_S = 30.0
TOTAL_TIMEOUT_S = 600.0
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


class UpdateError(Exception):
    """The update did not happen; the active set is unchanged. str() is the whole explanation."""


@dataclass
class UpdateResult:
    old_version: str | None
    new_version: str
    changed: bool
    warnings: list[Diagnostic] = field(default_factory=list)
    note: str = ""


# -- download ----------------------------------------------------------------------------------------
def fetch(url: str, *, max_bytes: int = MAX_BUNDLE_BYTES, timeout: float = DEFAULT_TIMEOUT_S,
          ca_file: Path | None = None) -> bytes:
    """The body at an https:// or file:// URL, at most `max_bytes`; UpdateError on any failure."""
    try:
        return _fetch(url, max_bytes, timeout, ca_file)
    except ValueError as exc:  # urllib's verdict on a malformed URL or redirect ("[::1", port "abc")
        raise UpdateError(f"{url}: not a valid URL ({exc})") from None


def _fetch(url: str, max_bytes: int, timeout: float, ca_file: Path | None) -> bytes:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return _read_local(Path(unquote(parts.path)), max_bytes)
    if parts.scheme != "https":
        raise UpdateError(f"{url}: only https:// and file:// feeds are supported")
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise UpdateError(f"cannot load CA file {ca_file}: {exc}") from None
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    for _ in range(MAX_REDIRECTS + 1):
        try:
            body, location = _https_get(url, context, timeout, max_bytes, deadline)
        except ssl.SSLCertVerificationError as exc:
            raise UpdateError(f"{url}: TLS certificate verification failed: {exc.verify_message}") from None
        except TimeoutError:
            raise UpdateError(f"{url}: timed out (no data for {timeout:g} s)") from None
        except http.client.IncompleteRead as exc:
            raise UpdateError(f"{url}: download truncated ({len(exc.partial)} bytes received, the server "
                              "closed the connection early)") from None
        except http.client.HTTPException as exc:
            raise UpdateError(f"{url}: invalid HTTP response from the server ({type(exc).__name__})") from None
        except (ssl.SSLError, OSError) as exc:
            raise UpdateError(f"{url}: cannot download: {exc.strerror or exc}") from None
        if location is None:
            return body
        url = urljoin(url, location)
        if urlsplit(url).scheme != "https":
            raise UpdateError(f"refusing a redirect away from https:// (to {url})")
    raise UpdateError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _https_get(url: str, context: ssl.SSLContext, timeout: float, max_bytes: int,
               deadline: float) -> tuple[bytes, str | None]:
    """(body, None) or (b"", redirect location)."""
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, timeout=timeout, context=context)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers={"User-Agent": f"netwatch/{__version__}",
                                             "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            return b"", resp.getheader("Location")
        if resp.status != 200:
            raise UpdateError(f"{url}: HTTP {resp.status} {resp.reason}")
        length_text = resp.getheader("Content-Length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        if length is not None and length > max_bytes:
            raise UpdateError(f"{url}: bundle is {length:,} bytes, more than the limit of {max_bytes:,}")
        chunks, received = [], 0
        while True:
            if time.monotonic() > deadline:
                raise UpdateError(f"{url}: download took longer than {TOTAL_TIMEOUT_S:g} s")
            chunk = resp.read(_CHUNK)
            if not chunk:
                break
            received += len(chunk)
            if received > max_bytes:
                raise UpdateError(f"{url}: bundle is larger than the limit of {max_bytes:,} bytes")
            chunks.append(chunk)
        if length is not None and received < length:
            raise UpdateError(f"{url}: download truncated ({received:,} of {length:,} bytes)")
        return b"".join(chunks), None
    finally:
        conn.close()


def _read_local(path: Path, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UpdateError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UpdateError(f"{path}: bundle is larger than the limit of {max_bytes:,} bytes")
    return data


# -- checks --------------------------------------------------------------------------------------------
def validate_tree(tree: Path, overlays: Sequence[Path], expected_version: str) -> list[Diagnostic]:
    """Warnings of `signatures check` for the tree as the base set under `overlays`; UpdateError on errors."""
    diags = run_check(overlays, bundled_dir=tree)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        shown = "\n  ".join(str(d) for d in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise UpdateError(f"the new set fails validation ({len(errors)} error(s)):\n  {shown}{more}")
    found = manifest_version(tree)
    if found != expected_version:
        raise UpdateError(f"the set's MANIFEST.yaml says version {found!r}, the signed manifest "
                          f"{expected_version!r}")
    return [d for d in diags if d.severity == "warning"]


def stage_bundle(store: Store, bundle: VerifiedBundle) -> Path:
    """Write the verified bundle into a fresh staging directory (fsync'd); StoreError if the disk refuses."""
    staging = store.new_staging()
    try:
        write_tree(bundle.files, staging / TREE)
        write_file(staging / "bundle.json", bundle.manifest_bytes)
        write_file(staging / SIGNATURE_MEMBER, bundle.signature_bytes)
    except BaseException as exc:  # a full disk, or Ctrl-C: leave nothing half-written behind
        store.discard(staging)
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write the new set in {store.root}: {describe_os_error(exc)}") from None
        raise
    return staging


def install(data: bytes, store: Store, keys: Sequence[TrustedKey], *, overlays: Sequence[Path] = (),
            allow_downgrade: bool = False) -> UpdateResult:
    """Verify `data` as a bundle and make it the active set, or raise UpdateError leaving all as it was."""
    try:
        bundle = open_bundle(data, keys)
    except BundleError as exc:
        raise UpdateError(str(exc)) from None
    new = bundle.manifest.version
    try:
        with store.lock():
            active_dir, source = active_tree(bundled_signatures_dir(), store.root)
            old = manifest_version(active_dir)
            same_content = source == "update" and store.link("current") == f"sets/{_set_name(bundle)}"
            if same_content:
                return UpdateResult(old, new, False, note="already installed")
            if old is not None and version_key(new) <= version_key(old) and not allow_downgrade:
                if version_key(new) == version_key(old):
                    return UpdateResult(old, new, False, note=f"version {new} is already active")
                raise UpdateError(f"refusing to install {new}: older than the active set {old} (a stale or "
                                  "replayed bundle); --allow-downgrade installs it anyway")
            staging = stage_bundle(store, bundle)
            try:
                warnings = validate_tree(staging / TREE, overlays, new)
                store.commit(staging, _set_name(bundle))
            except BaseException:
                store.discard(staging)
                raise
            now_dir, now_source = active_tree(bundled_signatures_dir(), store.root)
            note = "" if now_source == "update" else (f"the bundled set {manifest_version(now_dir)} is newer and "
                                                      "stays active")
            return UpdateResult(old, new, True, warnings, note)
    except StoreError as exc:
        raise UpdateError(str(exc)) from None


def _set_name(bundle: VerifiedBundle) -> str:
    return f"{bundle.manifest.version}-{bundle.digest[:16]}"


def rollback(store: Store, overlays: Sequence[Path] = ()) -> tuple[str | None, str | None]:
    """Make the previous set active again (or the bundled set); (old version, new version)."""
    if store.link("current") is None and store.link("previous") is None:
        raise UpdateError(f"nothing to roll back to: no update installed in {store.root}")
    try:
        with store.lock():
            bundled = bundled_signatures_dir()
            old = manifest_version(active_tree(bundled, store.root)[0])
            target = store.set_dir("previous")
            if store.link("previous") is not None and target is None:
                raise UpdateError(f"the previous set in {store.root} is damaged; not rolling back to it")
            if target is not None:
                validate_tree(target / TREE, overlays, manifest_version(target / TREE) or "")
            store.rollback()
            return old, manifest_version(active_tree(bundled, store.root)[0])
    except StoreError as exc:
        raise UpdateError(str(exc)) from None
