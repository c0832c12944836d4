"""A config file that is not UTF-8 text (a binary file given by mistake) is a config error naming the
file, exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.sensor.config import ConfigError, load_config_file

REPO = Path(__file__).resolve().parents[1]


def test_binary_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "sensor.toml"
    config.write_bytes(b"\xde\xad\xbe\xef interfaces = ['lo']\n")
    with pytest.raises(ConfigError, match=r"sensor\.toml: not a TOML file"):
        load_config_file(config)
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "sensor", "--config", str(config),
                           "--db", str(tmp_path / "state.db")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a TOML file" in done.stderr and "Traceback" not in done.stderr
