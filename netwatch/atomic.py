"""Replace a file in one step: readers (a resolver reloading a block list, a browser) never see half of it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    A symbolic link keeps pointing where it did: the file it names is replaced. Something that is
    not a regular file (/dev/stdout, /dev/full, a named pipe) is written to as it is, never renamed
    over. Raises OSError naming `path` (not the temporary file) on failure.
    """
    target = Path(os.path.realpath(path))
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        if _is_special(target):
            with open(target, "wb") as handle:
                handle.write(payload)
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def _is_special(path: Path) -> bool:
    """An existing path that is not a regular file (device, pipe, socket, directory)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
