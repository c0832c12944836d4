"""Without matplotlib, `netwatch report` says how to get it in a way that works from a checkout:
`pip install 'netwatch[report]'` would look for a package named netwatch on the index instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WITHOUT_MATPLOTLIB = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['netwatch'] + sys.argv[1:]; "
                      "from netwatch.cli import main; main()")


def test_missing_matplotlib_names_an_install_that_works(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", str(REPO / "pcaps" / "office-lan.pcap"),
                           "--format", "jsonl", "-q", "-o", str(events)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    done = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, "report", str(events), "--markdown", "-"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'matplotlib>=3.8'" in done.stderr and "netwatch[report]" not in done.stderr
