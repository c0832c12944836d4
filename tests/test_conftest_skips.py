"""The test harness itself: missing tools skip naming their Debian package, CI turns skips into failures,
and the nDPI corpus can live anywhere (NETWATCH_NDPI_CORPUS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
from tests.conftest import require_tool

def test_needs_a_missing_tool():
    require_tool("netwatch-no-such-tool", "netwatch-no-such-package")

def test_sees_the_corpus(ndpi_dir):
    assert (ndpi_dir / "marker.pcap").is_file()
'''


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run PROBE under pytest with this repo's conftest loaded as a plugin."""
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    environment = {k: v for k, v in os.environ.items() if k not in ("NETWATCH_STRICT_SKIPS", "NETWATCH_NDPI_CORPUS")}
    environment.update(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-rs", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(probe)],
        capture_output=True, text=True, cwd=REPO, env=environment, timeout=120,
    )


def test_a_missing_tool_skips_with_its_debian_package(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "marker.pcap").write_bytes(b"")
    proc = run_probe(tmp_path, NETWATCH_NDPI_CORPUS=str(corpus))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "netwatch-no-such-tool is not installed (Debian package netwatch-no-such-package)" in proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout, proc.stdout  # and the corpus was found where the variable says


def test_ci_fails_on_every_skip(tmp_path: Path) -> None:
    proc = run_probe(tmp_path, NETWATCH_STRICT_SKIPS="1", NETWATCH_NDPI_CORPUS=str(tmp_path / "absent"))
    assert proc.returncode == 1
    assert "1 failed, 1 error" in proc.stdout, proc.stdout  # the fixture skip fails at setup
    assert "skipped in CI, where every test must run" in proc.stdout
    assert "set NETWATCH_NDPI_CORPUS" in proc.stdout
