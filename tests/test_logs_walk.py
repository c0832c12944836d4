"""`netwatch logs DIRECTORY` reads the regular files in it: a FIFO or a broken link found while
walking is skipped (as `netwatch scan` does), instead of blocking the run or failing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = ("28-Nov-2026 11:22:14.974 queries: info: client @0x7f54d1495098 10.219.3.10#54067 "
         "(mobilegw.alipay.com): query: mobilegw.alipay.com IN A + (10.219.3.2)\n")


def test_fifo_and_broken_link_in_a_log_directory(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "named").mkdir(parents=True)
    (logs / "named" / "querylog").write_text(QUERY)
    os.mkfifo(logs / "named" / "pipe.log")
    (logs / "current.log").symlink_to(tmp_path / "rotated-away.log")
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", str(logs), "--format", "jsonl"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "mobilegw.alipay.com" in done.stdout
    assert "pipe.log" not in done.stderr and "current.log" not in done.stderr, done.stderr
