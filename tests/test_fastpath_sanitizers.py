"""The checked-in fuzz corpus of the C core, replayed under AddressSanitizer and UBSan.

fuzz/build.sh builds the libFuzzer harnesses (framer, classifier with its deferred SYNs and
watch set) with -fsanitize=fuzzer,address,undefined; given files instead of a directory, a
harness runs each once. Any sanitizer report fails the test. CI also fuzzes each target briefly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "fuzz"
TARGETS = ["classifier", "framer"]


@pytest.fixture(scope="module")
def harnesses() -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang not installed (Debian packages: clang, libfuzzer-14-dev)")
    built = subprocess.run([str(FUZZ / "build.sh")], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "fuzzer" in built.stderr and "cannot find" in built.stderr:
        pytest.skip("libFuzzer runtime missing (Debian package: libfuzzer-14-dev)")
    assert built.returncode == 0, built.stderr[-3000:]
    return FUZZ / "build"


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_without_sanitizer_reports(harnesses, target):
    inputs = sorted(str(p) for p in (FUZZ / "corpus" / target).iterdir())
    assert len(inputs) >= 20
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    run = subprocess.run([str(harnesses / f"fuzz_{target}"), *inputs], capture_output=True, text=True,
                         timeout=600, env=env)
    report = run.stderr
    assert run.returncode == 0, report[-3000:]
    assert "ERROR: AddressSanitizer" not in report and "runtime error" not in report, report[-3000:]
    assert f"Executed {inputs[-1]}" in report  # every input was run
