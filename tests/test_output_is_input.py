"""`-o` naming one of the inputs is refused before anything is opened for writing: truncating it would
destroy the capture or log before it is read (`scan x.pcap -o x.pcap` emptied the capture)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pcaps" / "office-lan.pcap"
QUERY = ("28-Nov-2026 11:22:14.974 queries: info: client @0x7f54d1495098 10.219.3.10#54067 "
         "(mobilegw.alipay.com): query: mobilegw.alipay.com IN A + (10.219.3.2)\n")


@pytest.mark.parametrize("command", ["scan", "logs"])
def test_output_that_is_an_input_is_refused(command: str, tmp_path: Path) -> None:
    source = tmp_path / ("capture.pcap" if command == "scan" else "querylog")
    if command == "scan":
        shutil.copyfile(SAMPLE, source)
    else:
        source.write_text(QUERY)
    before = source.read_bytes()
    same = tmp_path / "." / source.name  # another spelling of the same file
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", command, str(source), "-o", str(same)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "it is also an input" in done.stderr and "Traceback" not in done.stderr
    assert source.read_bytes() == before
