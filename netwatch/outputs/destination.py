"""Where a command's text output goes (a file from -o, or standard output), with write errors named.

A full disk, a missing directory or a closed pipe is an output problem and must be reported as
one: `cannot write OUT: reason`, never as a read error of the capture being analysed. Write
errors are turned into OutputError, which deliberately is not an OSError, so code that handles
read errors of its inputs (which are OSErrors) cannot mistake it for one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Sequence
from typing import IO

# Output files may name devices and people: readable by the owner and the group, not the world.
# The process umask still applies on top (with umask 077 a file is created 0600).
OUTPUT_FILE_MODE = 0o640
STANDARD_OUTPUT = "standard output"


class OutputError(Exception):
    """Writing the output failed; `broken_pipe` when the reader went away (e.g. `| head -1`)."""

    def __init__(self, name: str, exc: OSError) -> None:
        self.name = name
        self.reason = exc.strerror or str(exc)
        self.broken_pipe = isinstance(exc, BrokenPipeError)
        super().__init__(f"cannot write {name}: {self.reason}")


class Output:
    """A text stream whose write, flush and close raise OutputError naming the destination."""

    def __init__(self, stream: IO[str], name: str, *, owned: bool) -> None:
        self._stream = stream
        self.name = name
        self._owned = owned

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(self.name, exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(self.name, exc) from None

    def close(self) -> None:
        """Flush, and close a file we opened (standard output stays open)."""
        try:
            self.flush()
        finally:
            if self._owned:
                with contextlib.suppress(OSError):  # a failed flush above is the error to report
                    self._stream.close()

    def abandon(self) -> None:
        """After a write error: drop what is still buffered so that nothing retries it at exit."""
        with contextlib.suppress(OSError, ValueError):
            if self._owned:
                self._stream.close()
                return
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def open_output(path: str | None, inputs: Sequence[str] = ()) -> Output:
    """`path` truncated or created (mode OUTPUT_FILE_MODE minus the umask), or standard output for None.

    A path that is one of `inputs` (`scan x.pcap -o x.pcap`) is refused: truncating it would destroy
    the input before a byte of it is read.
    """
    if path is None or path == "-":
        return Output(sys.stdout, STANDARD_OUTPUT, owned=False)
    if _same_file_as_an_input(path, inputs):
        raise OutputError(path, OSError(errno.EEXIST, "it is also an input (it would be emptied before it is read)"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, OUTPUT_FILE_MODE)
    except OSError as exc:
        raise OutputError(path, exc) from None
    return Output(os.fdopen(fd, "w", encoding="utf-8", newline=""), path, owned=True)


def _same_file_as_an_input(path: str, inputs: Sequence[str]) -> bool:
    try:
        target = os.stat(path)
    except OSError:
        return False
    if not stat.S_ISREG(target.st_mode):
        return False
    for item in inputs:
        with contextlib.suppress(OSError):
            if item != "-" and os.path.samestat(os.stat(item), target):
                return True
    return False
