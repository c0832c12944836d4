"""Ctrl-C ends `netwatch logs` while it waits for a silent writer (a FIFO, `tail -f | netwatch logs -`
from another process group), reporting what was read with the usual status, as `netwatch scan` does."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUERY = ("28-Nov-2026 11:22:14.974 queries: info: client @0x7f54d1495098 10.219.3.10#54067 "
         "(mobilegw.alipay.com): query: mobilegw.alipay.com IN A + (10.219.3.2)\n")


def _unread_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_ctrl_c_while_the_writer_is_silent(tmp_path: Path) -> None:
    fifo = tmp_path / "querylog"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "netwatch.cli", "logs", "--input-format", "bind", str(fifo),
                             "--format", "jsonl"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = os.open(fifo, os.O_WRONLY)  # returns once netwatch has opened the FIFO for reading
    try:
        os.write(writer, QUERY.encode())
        deadline = time.monotonic() + 60
        while _unread_bytes(writer) and time.monotonic() < deadline:  # netwatch has taken the line
            time.sleep(0.05)
        time.sleep(0.5)  # into its next (blocking) read
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the writer is still open: only Ctrl-C can end the run
    finally:
        os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "mobilegw.alipay.com" in out and "interrupted (Ctrl-C)" in err and "Traceback" not in err
