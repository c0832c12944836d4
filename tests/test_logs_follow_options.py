"""`netwatch logs --follow` set-up errors: a taken metrics port or an impossible option is one clear
message and exit 2, never a traceback (the sensor behaves the same)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUERY = ("28-Nov-2026 11:22:14.974 queries: info: client @0x7f54d1495098 10.219.3.10#54067 "
         "(mobilegw.alipay.com): query: mobilegw.alipay.com IN A + (10.219.3.2)\n")


def _follow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    log = tmp_path / "querylog"
    log.write_text(QUERY)
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", "--follow", str(log),
                           "--db", str(tmp_path / "logs.db"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_metrics_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = _follow(tmp_path, "--metrics-port", str(taken.getsockname()[1]))
    assert done.returncode == 2, done.stderr
    assert "cannot serve metrics" in done.stderr and "Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--metrics-port", "99999"], "--metrics-port"),
    (["--poll-interval", "-1"], "--poll-interval"),
])
def test_impossible_options_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = _follow(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
