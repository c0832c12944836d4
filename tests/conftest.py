"""Shared fixtures and the CI rule that no test may skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_PCAPS = REPO.parent / "shared" / "pcaps" / "ndpi"
SAMPLES = REPO / "pcaps"
# Tests use the bundled signatures, never a signature update installed on this machine.
os.environ["NETWATCH_SIGNATURE_UPDATES"] = ""


@pytest.fixture(scope="session")
def ndpi_dir() -> Path:
    """nDPI's real test captures, beside the repo (never copied into it)."""
    if not SHARED_PCAPS.is_dir():
        pytest.skip(f"nDPI corpus not found at {SHARED_PCAPS}")
    return SHARED_PCAPS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With NETWATCH_STRICT_SKIPS=1 (set by .ci/run) a skipped test fails: CI must run every test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("NETWATCH_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
