"""Errors and diagnostics that always point at FILE:LINE."""

from __future__ import annotations

from dataclasses import dataclass


class SignatureError(Exception):
    """A signature file cannot be used; str() is ``FILE:LINE: message`` like a compiler error."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding of the loader or of `signatures check` (severity "error" or "warning")."""

    severity: str
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"

    def to_error(self) -> SignatureError:
        return SignatureError(self.path, self.line, self.message)
