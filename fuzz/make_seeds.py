"""Seed the fuzz corpora from test captures (run from the repo: python3 fuzz/make_seeds.py).

framer/: capture files under 64 kB (one seed each, the first byte chooses the refill cut);
classifier/: the first 64 frames of each capture (cut at 2 kB) in the harness's record format, 32 a seed.
Captures: pcaps/ and nDPI's corpus beside the repo (../shared/pcaps/ndpi) when present.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from netwatch._fastpath import FlowFilter  # noqa: E402
from netwatch.capture.files import open_capture  # noqa: E402

# the harness's linktype selector table (fuzz_classifier.c LINKTYPES)
LINKTYPES = [0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 204, 228, 229, 276, 147]
MAX_FRAMER_SEED = 64 * 1024
FRAMES_PER_SEED = 32
MAX_FRAME_BYTES = 2048


def save(directory: Path, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> None:
    captures = sorted((REPO / "pcaps").glob("*.pcap*")) + sorted((REPO.parent / "shared/pcaps/ndpi").glob("*.pcap*"))
    for path in captures:
        raw = path.read_bytes()
        if len(raw) <= MAX_FRAMER_SEED:
            save(HERE / "corpus/framer", bytes([128]) + raw)
        with open_capture(path, flow_filter=FlowFilter(admit_all=True)) as capture:
            frames = [(pkt.linktype, bytes(pkt.data)) for pkt in capture]
        for start in range(0, min(len(frames), 2 * FRAMES_PER_SEED), FRAMES_PER_SEED):
            records = b""
            for linktype, data in frames[start:start + FRAMES_PER_SEED]:
                if linktype in LINKTYPES:
                    data = data[:MAX_FRAME_BYTES]
                    records += struct.pack("<BH", LINKTYPES.index(linktype), len(data)) + data
            if records:
                save(HERE / "corpus/classifier", records)


if __name__ == "__main__":
    main()
