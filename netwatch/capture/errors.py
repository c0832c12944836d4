"""Errors and warnings of the capture sources.

A capture that cannot be read at all raises; a capture that is damaged part way
(truncated last record, corrupt record header, truncated gzip stream) yields what was
readable and records a CaptureWarning, because the packets before the damage are
still evidence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class CaptureError(Exception):
    """A capture source could not be opened or read."""


class NotACaptureError(CaptureError):
    """The file (after gzip decompression) starts with neither a pcap nor a pcapng magic."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"{os.fspath(path)}: not a pcap or pcapng file")
        self.path = os.fspath(path)


@dataclass
class CaptureWarning:
    """Damage found while reading a capture; reading stopped or continued as the message says."""

    path: str
    offset: int  # byte offset in the (decompressed) capture stream
    message: str
