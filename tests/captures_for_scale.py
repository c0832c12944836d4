"""Captures built for the multi-file and parallel scan tests (pcaps/generate.py's real packet builders)."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


@cache
def craft() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pcaps_generate_scale", REPO / "pcaps" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def write_pcap(path: Path, rec) -> Path:
    g = craft()
    path.write_bytes(g.pcap_bytes(rec.pcap_records(), 1))
    return path


def hello_on(rec, conversation, name: str, label: str, *, post_quantum: bool = False, sni_last: bool = False,
             cuts=()) -> list[int]:
    g = craft()
    hello = g.tls_record(g.client_hello(name, label, post_quantum=post_quantum, sni_last=sni_last))
    return conversation.client_send(hello, cuts=cuts)


def reused_tuple_pair(directory: Path) -> tuple[Path, Path]:
    """Two unrelated captures whose TLS and QUIC flows use the same addresses and ports.

    The first has complete connections; the second was started mid-connection (no SYN) and
    carries other names on the same 5-tuples, as two captures from different days may.
    """
    g = craft()
    alice, qpay = g.ALICE, g.server("qpay.qq.com")
    first = g.Recorder()
    conv = g.TcpConversation(first, alice.v4, qpay, 50000, 443, "reuse/a")
    conv.handshake()
    hello_on(first, conv, "qpay.qq.com", "reuse/a")
    conv.server_send(g.tls_server_flight("reuse/a") + g.det_bytes("reuse/a/bulk", 3000))
    for datagram in g.quic_initial_datagrams("pay.weixin.qq.com", "reuse/qa"):
        first.add(g.udp_frame(first, alice.v4, qpay, 50001, 443, datagram))
    second = g.Recorder(ts=g.START_TS + 86400)
    conv = g.TcpConversation(second, alice.v4, qpay, 50000, 443, "reuse/b")
    hello_on(second, conv, "v4.camscanner.com", "reuse/b")
    conv.server_send(g.tls_server_flight("reuse/b"))
    for datagram in g.quic_initial_datagrams("account.wps.cn", "reuse/qb"):
        second.add(g.udp_frame(second, alice.v4, qpay, 50001, 443, datagram))
    return write_pcap(directory / "a-day1.pcap", first), write_pcap(directory / "b-day2.pcap", second)


def hello_across_rotation(directory: Path) -> tuple[Path, Path]:
    """One capture rotated in the middle of a ClientHello whose server name is in its second segment."""
    g = craft()
    rec = g.Recorder()
    conv = g.TcpConversation(rec, g.BOB.v4, g.server("mobilegw.alipay.com"), 50100, 443, "rotate")
    conv.handshake()
    hello_on(rec, conv, "mobilegw.alipay.com", "rotate", post_quantum=True, sni_last=True)
    conv.server_send(g.tls_server_flight("rotate"))
    records = rec.pcap_records()
    cut = 4  # SYN, SYN-ACK, ACK, first hello segment | the rest
    first, second = directory / "rot-000.pcap", directory / "rot-001.pcap"
    first.write_bytes(g.pcap_bytes(records[:cut], 1))
    second.write_bytes(g.pcap_bytes(records[cut:], 1))
    return first, second


BANNED = ("qpay.qq.com", "v4.camscanner.com", "mobilegw.alipay.com", "account.wps.cn", "api.dalyfeds.com",
          "pay.weixin.qq.com", "msfwifi.3g.qq.com", "www.camscanner.com")
CLEAN = ("www.example.com", "www.wikipedia.org", "www.debian.org", "update.microsoft.com")


def busy_capture(path: Path, sessions: int = 40) -> tuple[Path, list[dict]]:
    """Many devices looking names up and opening TLS (ClientHellos over 2-3 segments) and QUIC.

    Returns the file and the recorder's ground truth (frame numbers of every planted exchange).
    """
    g = craft()
    rec = g.Recorder()
    devices = g.OFFICE_DEVICES
    names = BANNED + CLEAN
    for index in range(sessions):
        device = devices[index % len(devices)]
        name = names[index % len(names)]
        g.dns_lookup(rec, device, name, 0x2000 + index, 40000 + index)
        if index % 5 == 4 and name in g.ADDRESSES:
            g.quic_session(rec, device, name, 41000 + index)
        else:
            g.tls_session(rec, device, name, 42000 + index, post_quantum=index % 2 == 0,
                          cuts=(300,) if index % 3 else (), bulk=2500 + 150 * index)
    path.write_bytes(g.pcap_bytes(rec.pcap_records(), 1))
    return path, rec.truth


def record_offsets(data: bytes) -> list[int]:
    """Byte offset of every record of a little-endian classic pcap (index 0 is frame 1)."""
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
    return offsets


class SlowCapture:
    """A named pipe that serves a capture: to the first `kills` readers half of it, then kills the
    reader (the worker analysing it); to the next reader all of it, if `then_serve`."""

    def __init__(self, path: Path, data: bytes, kills: int, then_serve: bool = True) -> None:
        self.path, self.data, self.kills, self.then_serve = path, data, kills, then_serve
        self.readers: list[int] = []
        os.mkfifo(path)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.then_serve or len(self.readers) < self.kills:
            try:
                with open(self.path, "wb") as pipe:  # blocks until a worker opens the file
                    if len(self.readers) == self.kills:
                        pipe.write(self.data)
                        return
                    pipe.write(self.data[:len(self.data) // 2])
                    pipe.flush()
                    reader = _process_reading(self.path)
                    os.kill(reader, signal.SIGKILL)  # the worker dies in the middle of the file
                    self.readers.append(reader)
                    deadline = time.monotonic() + 30
                    while reader in _processes_reading(self.path) and time.monotonic() < deadline:
                        time.sleep(0.01)  # the dying process still holds the pipe
                    _drain(self.path)  # the unread rest must not reach the next reader
            except BrokenPipeError:
                continue  # the reader was a process still dying: wait for the next one

    def join(self) -> None:
        self.thread.join(timeout=120)


def _drain(path: Path) -> None:
    """Read and drop what is left in the pipe (the write end is still open, so this never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                if not os.read(fd, 1 << 16):
                    return
            except BlockingIOError:
                return
    finally:
        os.close(fd)


def _processes_reading(path: Path) -> list[int]:
    """The pids of the processes that have `path` open (the Dask worker analysing it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) != os.getpid() and any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
                                               for fd in os.listdir(f"/proc/{pid}/fd")):
                found.append(int(pid))
        except OSError:
            continue
    return found


def _process_reading(path: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        readers = _processes_reading(path)
        if readers:
            assert len(readers) == 1, readers
            return readers[0]
        time.sleep(0.05)
    raise AssertionError(f"no process opened {path}")
