"""The sensor's -o file on a full disk: the alert that cannot be written is logged, and stopping the
sensor (which flushes and closes the file once more) logs it again instead of ending in a traceback."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_sensor_system import REPO, netns_available

pytestmark = pytest.mark.system

SENSOR_CODE = "from netwatch.sensor.cli import sensor; sensor()"
# A DNS query for mobilegw.alipay.com (Alipay), sent on the namespace's loopback.
QUERY = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x08mobilegw\x06alipay\x03com\x00\x00\x01\x00\x01")
SEND_CODE = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
             f"bytes.fromhex('{QUERY.hex()}'), ('127.0.0.1', 53))")


def _wait_for(stream, text: str) -> list[str]:
    lines = []
    for line in stream:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"the sensor ended before logging {text!r}: {''.join(lines)}")


@pytest.mark.skipif(not os.path.exists("/dev/full") or not stat.S_ISCHR(os.stat("/dev/full").st_mode),
                    reason="needs the /dev/full character device")
def test_alert_output_on_a_full_disk(tmp_path: Path) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    ns = f"nwtest-{secrets.token_hex(3)}-f"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    sensor = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        sensor = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SENSOR_CODE, "-i", "lo",
                                   "--db", str(tmp_path / "n.db"), "-o", "/dev/full"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        assert sensor.stderr is not None
        log = _wait_for(sensor.stderr, '"msg":"sensor started"')
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SEND_CODE], check=True, timeout=30)
        log += _wait_for(sensor.stderr, '"msg":"cannot write output"')
        sensor.send_signal(signal.SIGINT)
        _, rest = sensor.communicate(timeout=60)
    finally:
        if sensor is not None and sensor.poll() is None:
            sensor.kill()
            sensor.communicate()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    err = "".join(log) + rest
    assert "Traceback" not in err, err
    errors = [json.loads(line) for line in err.splitlines() if '"level":"error"' in line]
    assert errors and all(e["msg"] == "cannot write output" and e["output"] == "/dev/full" for e in errors), err
