"""Files that `signatures export`, `signatures bundle` and `report` write: replaced whole, but never
by renaming over something that is not a regular file (a named pipe, /dev/stdout, /dev/full) or over
a symbolic link (the file it names is replaced and the link stays)."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from netwatch.atomic import write_atomically

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pcaps" / "office-lan.pcap"


def _netwatch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


class _FifoReader:
    """Everything written into a named pipe while the block runs (opened first, so writers never block)."""

    def __init__(self, fifo: Path) -> None:
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.data = bytearray()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._drain, daemon=True)

    def _drain(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            chunk = os.read(self.fd, 65536) if ready else b""
            self.data += chunk
            if not chunk and self.done.is_set():
                return

    def __enter__(self) -> _FifoReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        os.close(self.fd)


def test_write_atomically_keeps_a_symlink_and_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real.conf"
    target.write_text("old\n")
    link = tmp_path / "current.conf"
    link.symlink_to(target)
    write_atomically(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.conf", "real.conf"]


def test_write_atomically_error_names_the_file_not_its_temporary(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "list.conf"
    with pytest.raises(OSError) as caught:
        write_atomically(missing, "x")
    assert caught.value.filename == str(missing)


def _written_through_fifo(tmp_path: Path, *args: str) -> str:
    """Run netwatch with `{fifo}` in `args` replaced by a named pipe; what came through it."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    with _FifoReader(fifo) as reader:
        done = _netwatch(*(str(fifo) if arg == "{fifo}" else arg for arg in args))
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the named pipe was replaced by a regular file"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"
    return reader.data.decode()


def test_export_into_a_named_pipe(tmp_path: Path) -> None:
    assert "0.0.0.0 alipay.com" in _written_through_fifo(tmp_path, "signatures", "export", "--format", "hosts",
                                                         "-o", "{fifo}")


def test_report_into_a_named_pipe(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="netwatch report needs matplotlib (pip install '.[report]')")
    events = tmp_path / "events.jsonl"
    done = _netwatch("scan", str(SAMPLE), "--format", "jsonl", "-q", "-o", str(events))
    assert done.returncode == 1, done.stderr
    page = _written_through_fifo(tmp_path, "report", str(events), "--html", "{fifo}")
    assert "Alipay" in page and page.rstrip().endswith("</html>")


@pytest.mark.skipif(not os.path.exists("/dev/full") or not stat.S_ISCHR(os.stat("/dev/full").st_mode),
                    reason="needs the /dev/full character device")
def test_a_full_device_is_a_write_error() -> None:
    done = _netwatch("signatures", "export", "--format", "hosts", "-o", "/dev/full")
    assert done.returncode == 2 and "cannot write /dev/full: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_export_error_names_the_output() -> None:
    done = _netwatch("signatures", "export", "--format", "rpz", "-o", "/nonexistent-dir/x.rpz")
    assert done.returncode == 2 and "netwatch: cannot write /nonexistent-dir/x.rpz: " in done.stderr
