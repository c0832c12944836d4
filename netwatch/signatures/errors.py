"""Errors and diagnostics that always point at FILE:LINE."""

from __future__ import annotations

from dataclasses import dataclass


def _where(path: str, line: int) -> str:
    """``FILE:LINE: `` like a compiler; ``FILE: `` for a whole file or directory (line 0); nothing for
    a problem with no file (pseudo-paths such as ``<policy>``)."""
    if path.startswith("<"):
        return ""
    return f"{path}:{line}: " if line > 0 else f"{path}: "


class SignatureError(Exception):
    """A signature file cannot be used; str() is ``FILE:LINE: message`` like a compiler error."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{_where(path, line)}{message}")
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{_where(self.path, self.line)}{self.message}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding of the loader or of `signatures check` (severity "error" or "warning")."""

    severity: str
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{_where(self.path, self.line)}{self.severity}: {self.message}"

    def to_error(self) -> SignatureError:
        return SignatureError(self.path, self.line, self.message)
