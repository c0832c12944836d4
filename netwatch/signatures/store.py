"""Where updated signature sets live on disk, which set is active, and the atomic swap.

    DIR/                                   (default /var/lib/netwatch/signatures)
      sets/<version>-<digest>/signatures/  an installed signature tree
      sets/<version>-<digest>/bundle.json  its signed manifest and signature, kept for audit
      current  -> sets/<...>               the installed set: a symlink replaced with one rename()
      previous -> sets/<...>               the set before it, for `--rollback`
      .lock                                one update at a time

Nothing under `sets/` is ever modified after it is renamed into place, so a reader that resolved
`current` keeps a consistent tree; a crash at any point leaves `current` on the old or the new set.
This module imports nothing from the loader (the loader asks it which directory to load).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .errors import SignatureError
from .yamlread import read_yaml_file

UPDATES_ENV = "NETWATCH_SIGNATURE_UPDATES"
DEFAULT_UPDATES_DIR = "/var/lib/netwatch/signatures"
TREE = "signatures"
MANIFEST_FILE = "MANIFEST.yaml"
_INCOMING = ".incoming-"


class StoreError(Exception):
    """The store cannot be changed; the active set is as it was."""


def updates_dir() -> Path | None:
    """The update store: $NETWATCH_SIGNATURE_UPDATES, else the default; None when set to empty (off)."""
    value = os.environ.get(UPDATES_ENV)
    if value is None:
        return Path(DEFAULT_UPDATES_DIR)
    return Path(value) if value else None


def manifest_version(tree: Path) -> str | None:
    """The `version` of a signature tree's MANIFEST.yaml, or None if it has none or cannot be read."""
    try:
        doc, _ = read_yaml_file(tree / MANIFEST_FILE)
    except (SignatureError, OSError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else None


def version_key(version: str) -> tuple[int, ...]:
    """Orderable key of a dotted numeric version ("2026.11.27"); other text compares by its numbers."""
    return tuple(int(n) for n in re.findall(r"[0-9]+", version)[:8])


def active_tree(bundled: Path, store_dir: Path | None = None) -> tuple[Path, str]:
    """(directory, "update" | "bundled"): the installed update unless the bundled set is newer.

    A netwatch upgrade that ships newer signatures than the last update is therefore never shadowed.
    """
    root = store_dir if store_dir is not None else updates_dir()
    if root is None:
        return bundled, "bundled"
    tree = root / "current" / TREE
    installed = manifest_version(tree) if (tree / MANIFEST_FILE).is_file() else None
    if installed is None:
        return bundled, "bundled"
    shipped = manifest_version(bundled)
    if shipped is not None and version_key(shipped) > version_key(installed):
        return bundled, "bundled"
    return tree, "update"


def write_tree(files: dict[str, bytes], root: Path) -> None:
    """Write `files` below `root` and fsync each file and directory (for a crash-safe swap later)."""
    made: set[Path] = {root}
    root.mkdir(parents=True, exist_ok=True)
    for rel, body in sorted(files.items()):
        path = root.joinpath(*PurePosixPath(rel).parts)
        for parent in reversed(path.relative_to(root).parents[:-1]):
            directory = root / parent
            if directory not in made:
                directory.mkdir(exist_ok=True)
                made.add(directory)
        write_file(path, body)
    for directory in sorted(made, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(directory)


def write_file(path: Path, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    return exc.strerror or str(exc)


class Store:
    """One update directory. Every change happens under `lock()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sets = root / "sets"

    def link(self, name: str) -> str | None:
        """The target of `current` or `previous` (relative, e.g. ``sets/2026.11.28-ab12``), or None."""
        try:
            return os.readlink(self.root / name)
        except OSError:
            return None

    def set_dir(self, name: str) -> Path | None:
        """The installed set `current` or `previous` points at, if it is intact."""
        target = self.link(name)
        if target is None:
            return None
        path = self.root / target
        return path if (path / TREE / MANIFEST_FILE).is_file() else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        try:
            self.sets.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot use {self.root}: {describe_os_error(exc)}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"another signature update is running in {self.root}") from None
            yield
        finally:
            os.close(fd)

    def new_staging(self) -> Path:
        staging = self.sets / f"{_INCOMING}{secrets.token_hex(6)}"
        try:
            staging.mkdir()
        except OSError as exc:
            raise StoreError(f"cannot write in {self.sets}: {describe_os_error(exc)}") from None
        return staging

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def commit(self, staging: Path, name: str) -> None:
        """Rename the staged set into place, then point `previous` at the old and `current` at the new."""
        final = self.sets / name
        try:
            if final.exists():  # the same signed content was installed before: reuse it
                self.discard(staging)
            else:
                os.rename(staging, final)
                fsync_dir(self.sets)
            old = self.link("current")
            if old is not None and old != f"sets/{name}":
                self._point("previous", old)
            self._point("current", f"sets/{name}")
        except OSError as exc:
            self.discard(staging)
            raise StoreError(f"cannot install the new set in {self.root}: {describe_os_error(exc)}") from None
        self.prune()

    def rollback(self) -> None:
        """Swap `current` and `previous`; with no `previous`, retire `current` (the bundled set is used)."""
        current, previous = self.link("current"), self.link("previous")
        try:
            if previous is not None:
                self._point("current", previous)
                if current is not None:
                    self._point("previous", current)
                else:
                    os.unlink(self.root / "previous")
                    fsync_dir(self.root)
            elif current is not None:
                self._point("previous", current)
                os.unlink(self.root / "current")
                fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(f"cannot roll back in {self.root}: {describe_os_error(exc)}") from None

    def _point(self, link: str, target: str) -> None:
        tmp = self.root / f".{link}.new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, self.root / link)
        fsync_dir(self.root)

    def prune(self) -> None:
        """Remove sets neither `current` nor `previous` points at, and leftovers of interrupted updates."""
        keep = {Path(t).name for t in (self.link("current"), self.link("previous")) if t}
        for path in self.sets.iterdir() if self.sets.is_dir() else ():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)


class UpdateWatch:
    """Tells a long-running process (the sensor) that `current` moved: an update or rollback landed."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else updates_dir()
        self.last = self._state()

    def _state(self) -> str | None:
        if self.root is None:
            return None
        try:
            return os.readlink(self.root / "current")
        except OSError:
            return None

    def changed(self) -> bool:
        state = self._state()
        if state == self.last:
            return False
        self.last = state
        return True
