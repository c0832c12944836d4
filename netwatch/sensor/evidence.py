"""Evidence capture: the packets that triggered each alert, in a rotating classic pcap.

An analyst opens these in Wireshark next to the alert (frame numbers in the alert refer to
the live capture, so each alert's packets are written together and the file name is logged).
Classic pcap holds one link type per file, so a packet of another link type starts a new file.
Disk use is bounded by `max_bytes * max_files`.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

_PCAP_MAGIC_US = 0xA1B2C3D4  # microsecond timestamps (https://www.tcpdump.org/manpages/pcap-savefile.5.html)
_PCAP_VERSION = (2, 4)
_SNAPLEN = 262144


class EvidenceRing:
    """Append packets to `dir/evidence-<time>-<n>.pcap`, rotating by size, keeping `max_files`."""

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = 16 << 20,
                 max_files: int = 8) -> None:
        self.dir = Path(directory)
        self.max_bytes = max(4096, int(max_bytes))
        self.max_files = max(1, int(max_files))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = None
        self._linktype: int | None = None
        self._size = 0
        self._frames = 0
        self._seq = 0
        self.current: Path | None = None
        self.packets_written = 0

    def write(self, packets: Iterable[tuple[float, int, bytes]]) -> tuple[Path | None, int]:
        """Write (ts, linktype, data) packets; return (file, 1-based frame number of the first one).

        Raises OSError (full disk, unwritable directory): the caller reports it and goes on.
        """
        first_frame = 0
        for ts, linktype, data in packets:
            if self._fh is None or linktype != self._linktype or self._size >= self.max_bytes:
                self._rotate(linktype)
            sec = int(ts)
            usec = min(999_999, max(0, round((ts - sec) * 1_000_000)))
            data = data[:_SNAPLEN]
            record = struct.pack("<IIII", sec & 0xFFFFFFFF, usec, len(data), len(data)) + data
            self._fh.write(record)
            self._size += len(record)
            self._frames += 1
            self.packets_written += 1
            first_frame = first_frame or self._frames
        if self._fh is not None:
            self._fh.flush()
        return self.current, first_frame

    def _rotate(self, linktype: int) -> None:
        self.close()
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.current = self.dir / f"evidence-{stamp}-{os.getpid()}-{self._seq:04d}.pcap"
        self._fh = open(self.current, "wb")  # noqa: SIM115 - kept open across writes, closed in close()
        self._fh.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, *_PCAP_VERSION, 0, 0, _SNAPLEN, linktype))
        self._size = 24
        self._frames = 0
        self._linktype = linktype
        self._prune()

    def _prune(self) -> None:
        files = sorted(self.dir.glob("evidence-*.pcap"), key=lambda p: (p.stat().st_mtime, p.name))
        for old in files[: max(0, len(files) - self.max_files)]:
            if old != self.current:
                old.unlink(missing_ok=True)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
