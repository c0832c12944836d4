"""The README is what a new user tries first: its commands, its example output and its pointers must be true."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else len(README)]


def shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, **(env or {})})


def test_quick_start_is_two_commands_in_a_virtual_environment() -> None:
    """Debian 12's Python refuses a bare `pip install` (PEP 668): both commands make and use a venv."""
    install, tests = shell_blocks(section("Quick start"))  # exactly two set-up commands
    for command in (install, tests):
        assert "\n" not in command
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install "), command
    sample = install.rsplit("netwatch scan ", 1)[1]
    assert sample.startswith("pcaps/") and (REPO / sample).is_file()
    assert tests.endswith("'.[test]' && python3 -m pytest")
    for package in ("build-essential", "python3-dev", "python3-venv"):
        assert package in section("Quick start").replace("\n", " ")


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    _, tests = shell_blocks(section("Quick start"))
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def _normalised(text: str) -> str:
    """The parts of a table that change from run to run or with every signature update."""
    text = re.sub(r"signatures \S+", "signatures VERSION", text)
    return re.sub(r"[\d.]+ s \([\d,]+ packets/s\)", "T s (R packets/s)", text)


def test_readme_table_is_the_real_output() -> None:
    shown = README.split("$ netwatch scan pcaps/office-lan.pcap\n", 1)[1].split("```", 1)[0]
    real = cli("scan", "pcaps/office-lan.pcap", "--format", "table").stdout
    assert _normalised(shown) == _normalised(real), "update README.md's example table from this output:\n" + real


def test_readme_json_event_is_the_real_output() -> None:
    shown = json.loads(README.split("every finding is one [ECS](docs/events.md) document:\n\n```json\n", 1)[1]
                       .split("```", 1)[0])
    output = cli("scan", "pcaps/office-lan.pcap", "--format", "jsonl").stdout
    events = [json.loads(line) for line in output.splitlines()]
    real = next(e for e in events if e["event"]["id"] == shown["event"]["id"])
    for event in (shown, real):  # what differs per machine and with every signature update
        del event["observer"]["hostname"]
        event["rule"]["version"] = event["rule"]["reference"] = "SIGNATURE DATA"
    assert shown == real, "update README.md's example event from:\n" + json.dumps(real, indent=2)


def test_readme_mentions_health_and_completion_that_works() -> None:
    assert "netwatch health" in README
    assert 'eval "$(_NETWATCH_COMPLETE=bash_source netwatch)"' in README
    script = cli(env={"_NETWATCH_COMPLETE": "bash_source"})
    assert script.returncode == 0, script.stderr
    assert "complete -o nosort -F _netwatch_completion netwatch" in script.stdout
    words = cli(env={"_NETWATCH_COMPLETE": "bash_complete", "COMP_WORDS": "netwatch sc", "COMP_CWORD": "1"})
    assert "plain,scan" in words.stdout.splitlines(), words.stdout
