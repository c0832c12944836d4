"""Shared fixtures, the skips for missing system tools, and the CI rule that no test may skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "pcaps"
# Tests use the bundled signatures, never a signature update installed on this machine.
os.environ["NETWATCH_SIGNATURE_UPDATES"] = ""
NDPI_CORPUS_VARIABLE = "NETWATCH_NDPI_CORPUS"


def ndpi_corpus() -> Path:
    """nDPI's real test captures: $NETWATCH_NDPI_CORPUS, else ../shared/pcaps/ndpi beside the repo."""
    configured = os.environ.get(NDPI_CORPUS_VARIABLE)
    return Path(configured) if configured else REPO.parent / "shared" / "pcaps" / "ndpi"


SHARED_PCAPS = ndpi_corpus()


@pytest.fixture(scope="session")
def ndpi_dir() -> Path:
    """nDPI's real test captures, outside the repo (never copied into it)."""
    if not SHARED_PCAPS.is_dir():
        pytest.skip(f"nDPI corpus not found at {SHARED_PCAPS} (set {NDPI_CORPUS_VARIABLE} to its folder)")
    return SHARED_PCAPS


def find_tool(binary: str) -> str | None:
    """The path of a system tool, also in the sbin folders a non-root PATH often lacks."""
    found = shutil.which(binary)
    if found is None:
        found = next((str(p) for p in (Path("/usr/sbin") / binary, Path("/sbin") / binary) if p.is_file()), None)
    return found


def require_tool(binary: str, package: str) -> str:
    """The tool's path, or skip naming the Debian package that provides it (.ci/run installs it)."""
    found = find_tool(binary)
    if found is None:
        pytest.skip(f"{binary} is not installed (Debian package {package})")
    return found


def require_rsyslog_with_tls() -> str:
    """rsyslogd with its TLS driver: the test server always opens a TLS port next to UDP and TCP."""
    rsyslogd = require_tool("rsyslogd", "rsyslog")
    if not any(Path("/usr/lib").glob("**/rsyslog/lmnsd_gtls.so")):
        pytest.skip("rsyslog's TLS driver lmnsd_gtls.so is not installed (Debian package rsyslog-gnutls)")
    return rsyslogd


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With NETWATCH_STRICT_SKIPS=1 (set by .ci/run) a skipped test fails: CI must run every test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("NETWATCH_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
