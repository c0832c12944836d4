"""Signed signature bundles: build, sign, read and verify (no installing; that is `store`).

A bundle is a gzip'd tar with exactly these members:

    bundle.json          the manifest: format, version, date, minimum netwatch version, and the
                         size and SHA-256 of every file of the signature tree
    bundle.sig           JSON {"algorithm": "ed25519", "key_id": ..., "signature": base64} over the
                         exact bytes of bundle.json
    signatures/<path>    the signature tree (apps, vendors, policies, MANIFEST.yaml, ...)

Only the manifest is signed; the tree is bound to it by the hashes. Reading never extracts
anything to disk and never trusts a member before the signature and the hash say so; sizes are
bounded at every step, so a hostile bundle costs bounded memory.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from netwatch import __version__

from .store import version_key

FORMAT = "netwatch-signatures/1"
MANIFEST_MEMBER = "bundle.json"
SIGNATURE_MEMBER = "bundle.sig"
TREE_PREFIX = "signatures/"
MAX_BUNDLE_BYTES = 32 * 2**20  # compressed size accepted from a feed
MAX_TREE_BYTES = 128 * 2**20  # uncompressed content of all members together
MAX_FILE_BYTES = 64 * 2**20
MAX_FILES = 10_000
MAX_MANIFEST_BYTES = 4 * 2**20
ADMIN_KEYS_DIR = "/etc/netwatch/signature-keys"
ADMIN_KEYS_ENV = "NETWATCH_SIGNATURE_KEYS_DIR"
SIGNING_KEY_ENV = "NETWATCH_SIGNING_KEY"
SIGNING_PASSPHRASE_ENV = "NETWATCH_SIGNING_KEY_PASSPHRASE"
_VERSION_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,7}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


class BundleError(Exception):
    """The bundle cannot be trusted or used; the message says why, for a human."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a key: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: Ed25519PublicKey
    source: str  # the file it came from


@dataclass(frozen=True)
class Manifest:
    version: str
    date: str
    min_netwatch: str
    files: dict[str, tuple[int, str]]  # relative path -> (size, sha256 hex)


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and hashes checked out: safe to stage."""

    manifest: Manifest
    manifest_bytes: bytes
    signature_bytes: bytes
    files: dict[str, bytes]
    signer: TrustedKey

    @property
    def digest(self) -> str:
        """SHA-256 of the signed manifest: names this exact content."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()


# -- keys ------------------------------------------------------------------------------------------
def load_public_key(path: Path) -> TrustedKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read public key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise BundleError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key")
    return TrustedKey(key_id(key), key, str(path))


def shipped_key_files() -> list[Path]:
    """The project's release keys, installed with the package (netwatch/data/keys/*.pub)."""
    try:
        base = Path(str(resources.files("netwatch") / "data" / "keys"))
    except (ModuleNotFoundError, TypeError):
        return []
    return sorted(base.glob("*.pub")) if base.is_dir() else []


def admin_keys_dir() -> Path:
    return Path(os.environ.get(ADMIN_KEYS_ENV) or ADMIN_KEYS_DIR)


def trusted_keys(pinned: Sequence[Path] = ()) -> list[TrustedKey]:
    """`pinned` key files if given (only those are trusted), else shipped keys + the admin's directory."""
    if pinned:
        files = list(pinned)
    else:
        admin = admin_keys_dir()
        files = shipped_key_files() + (sorted(admin.glob("*.pub")) if admin.is_dir() else [])
    return [load_public_key(f) for f in files]


def load_private_key(key_file: Path | None) -> Ed25519PrivateKey:
    """The signing key from `key_file`, else from the environment (PEM text); never from a flag value."""
    if key_file is not None:
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise BundleError(f"cannot read signing key {key_file}: {exc.strerror or exc}") from None
        where = str(key_file)
    elif os.environ.get(SIGNING_KEY_ENV):
        data, where = os.environ[SIGNING_KEY_ENV].encode(), f"${SIGNING_KEY_ENV}"
    else:
        raise BundleError(f"no signing key: give --key-file FILE or set {SIGNING_KEY_ENV} to the PEM key")
    passphrase = os.environ.get(SIGNING_PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except TypeError:
        raise BundleError(f"{where} is encrypted: set {SIGNING_PASSPHRASE_ENV}") from None
    except ValueError:
        raise BundleError(f"{where} is not a PEM private key (or the passphrase is wrong)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{where} is not an Ed25519 private key")
    return key


# -- building --------------------------------------------------------------------------------------
def _safe_relpath(name: str) -> bool:
    parts = name.split("/")
    return 0 < len(parts) <= 16 and all(_PART_RE.match(p) for p in parts) and len(name) <= 1024


def tree_files(directory: Path) -> dict[str, bytes]:
    """Every regular, non-hidden file below `directory`, by POSIX relative path."""
    root = directory.resolve()
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if path.is_symlink():
            raise BundleError(f"{path}: symbolic links cannot go into a bundle")
        if not path.is_file():
            continue
        if not _safe_relpath(rel):
            raise BundleError(f"{path}: file name not allowed in a bundle (letters, digits, _ . + - only)")
        out[rel] = path.read_bytes()
    return out


def manifest_json(version: str, date: str, min_netwatch: str, files: dict[str, bytes]) -> bytes:
    doc = {
        "format": FORMAT, "version": version, "date": date, "min_netwatch": min_netwatch,
        "files": {rel: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for rel, data in sorted(files.items())},
    }
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def sign(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    sig = {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
           "signature": base64.b64encode(key.sign(manifest_bytes)).decode()}
    return (json.dumps(sig, sort_keys=True) + "\n").encode()


def build_bundle(files: dict[str, bytes], *, version: str, key: Ed25519PrivateKey, date: str | None = None,
                 min_netwatch: str = __version__) -> bytes:
    """The bundle bytes (deterministic for the same inputs and date)."""
    if not _VERSION_RE.match(version):
        raise BundleError(f"version {version!r} must be dotted numbers such as 2026.11.28 (it orders updates)")
    if not _VERSION_RE.match(min_netwatch):
        raise BundleError(f"minimum netwatch version {min_netwatch!r} must be dotted numbers such as 0.1.0")
    when = date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not _DATE_RE.match(when):
        raise BundleError(f"date {when!r} must be YYYY-MM-DDTHH:MM:SSZ")
    manifest = manifest_json(version, when, min_netwatch, files)
    mtime = int(datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = [(MANIFEST_MEMBER, manifest), (SIGNATURE_MEMBER, sign(manifest, key))]
        members += [(TREE_PREFIX + rel, data) for rel, data in sorted(files.items())]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


# -- reading and verifying -------------------------------------------------------------------------
class _Bounded(io.RawIOBase):
    """A readable stream that fails once more than `limit` bytes came out of `inner`."""

    def __init__(self, inner: io.BufferedIOBase, limit: int) -> None:
        self.inner, self.limit, self.left = inner, limit, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise BundleError(f"bundle content is larger than {self.limit:,} bytes uncompressed")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def read_members(data: bytes) -> dict[str, bytes]:
    """The members of a bundle's tar, with every structural rule enforced; never raises but BundleError."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is larger than {MAX_BUNDLE_BYTES // 2**20} MiB")
    if data[:2] != b"\x1f\x8b":
        raise BundleError("not a signature bundle (expected a gzip'd tar; got "
                          f"{'nothing' if not data else repr(data[:16])})")
    members: dict[str, bytes] = {}
    stream = io.BufferedReader(_Bounded(gzip.GzipFile(fileobj=io.BytesIO(data)), MAX_TREE_BYTES))  # type: ignore[arg-type]
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for info in tar:
                if len(members) >= MAX_FILES + 2:
                    raise BundleError(f"bundle has more than {MAX_FILES} files")
                name = info.name
                if not info.isreg():
                    raise BundleError(f"bundle member {name!r} is not a regular file")
                if name in members:
                    raise BundleError(f"bundle member {name!r} appears twice")
                if name not in (MANIFEST_MEMBER, SIGNATURE_MEMBER) and not (
                    name.startswith(TREE_PREFIX) and _safe_relpath(name[len(TREE_PREFIX):])
                ):
                    raise BundleError(f"bundle member {name!r} is not allowed")
                if info.size > MAX_FILE_BYTES:
                    raise BundleError(f"bundle member {name!r} is larger than {MAX_FILE_BYTES // 2**20} MiB")
                handle = tar.extractfile(info)
                body = handle.read() if handle is not None else b""
                if len(body) != info.size:
                    raise BundleError("bundle is truncated (a member ends early)")
                members[name] = body
    except BundleError:
        raise
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile, ValueError, UnicodeError) as exc:
        raise BundleError(f"bundle is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    for required in (MANIFEST_MEMBER, SIGNATURE_MEMBER):
        if required not in members:
            raise BundleError(f"bundle has no {required}")
    return members


def _signature(sig_bytes: bytes) -> tuple[str, bytes]:
    try:
        doc = json.loads(sig_bytes)
        if not isinstance(doc, dict) or doc.get("algorithm") != "ed25519":
            raise ValueError
        kid, sig = doc["key_id"], base64.b64decode(doc["signature"], validate=True)
        if not isinstance(kid, str) or len(sig) != 64:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{SIGNATURE_MEMBER} is not an Ed25519 signature record") from None
    return kid, sig


def verify_signature(manifest_bytes: bytes, sig_bytes: bytes, keys: Iterable[TrustedKey]) -> TrustedKey:
    """The trusted key that signed the manifest; BundleError when none did."""
    kid, sig = _signature(sig_bytes)
    keys = list(keys)
    if not keys:
        raise BundleError("no trusted signature keys (see docs/signatures.md, 'Pinning keys')")
    candidates = [k for k in keys if k.key_id == kid]
    if not candidates:
        known = ", ".join(f"{k.key_id} ({k.source})" for k in keys)
        raise BundleError(f"bundle is signed by key {kid}, which is not trusted (trusted: {known})")
    for key in candidates:
        try:
            key.public_key.verify(sig, manifest_bytes)
            return key
        except InvalidSignature:
            continue
    raise BundleError(f"bad signature: the manifest does not match its signature by key {kid} "
                      "(tampered or corrupted)")


def parse_manifest(manifest_bytes: bytes) -> Manifest:
    """The signed manifest, checked field by field (it is trusted for its signature, not its shape)."""
    if len(manifest_bytes) > MAX_MANIFEST_BYTES:
        raise BundleError("bundle manifest is too large")
    try:
        doc = json.loads(manifest_bytes)
    except ValueError:
        raise BundleError("bundle manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError(f"bundle manifest format is not {FORMAT!r} (a newer netwatch may be needed)")
    version, date, min_nw, files = (doc.get(k) for k in ("version", "date", "min_netwatch", "files"))
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise BundleError(f"bundle manifest has an invalid version {version!r}")
    if not isinstance(date, str) or not _DATE_RE.match(date):
        raise BundleError(f"bundle manifest has an invalid date {date!r}")
    if not isinstance(min_nw, str) or not _VERSION_RE.match(min_nw):
        raise BundleError(f"bundle manifest has an invalid min_netwatch {min_nw!r}")
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        raise BundleError("bundle manifest lists no files")
    entries: dict[str, tuple[int, str]] = {}
    for rel, entry in files.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
        if not ok or not _safe_relpath(rel) or not _SHA256_RE.match(entry["sha256"]):
            raise BundleError(f"bundle manifest entry {rel!r} is invalid")
        entries[rel] = (entry["size"], entry["sha256"])
    return Manifest(version, date, min_nw, entries)


def open_bundle(data: bytes, keys: Iterable[TrustedKey]) -> VerifiedBundle:
    """Read, verify the signature, then check every file against the signed manifest."""
    members = read_members(data)
    manifest_bytes, sig_bytes = members.pop(MANIFEST_MEMBER), members.pop(SIGNATURE_MEMBER)
    signer = verify_signature(manifest_bytes, sig_bytes, keys)
    manifest = parse_manifest(manifest_bytes)
    files = {name[len(TREE_PREFIX):]: body for name, body in members.items()}
    extra = sorted(files.keys() - manifest.files.keys())
    if extra:
        raise BundleError(f"bundle file {extra[0]} is not in the signed manifest")
    for rel, (size, digest) in sorted(manifest.files.items()):
        body = files.get(rel)
        if body is None:
            raise BundleError(f"bundle file {rel} is missing (listed in the signed manifest)")
        if len(body) != size or hashlib.sha256(body).hexdigest() != digest:
            raise BundleError(f"bundle file {rel} does not match its SHA-256 in the signed manifest (tampered)")
    if version_key(__version__) < version_key(manifest.min_netwatch):
        raise BundleError(f"bundle {manifest.version} needs netwatch >= {manifest.min_netwatch} "
                          f"(this is {__version__}); upgrade netwatch first")
    return VerifiedBundle(manifest, manifest_bytes, sig_bytes, files, signer)
