"""Captures built for the multi-file and parallel scan tests (pcaps/generate.py's real packet builders)."""

from __future__ import annotations

import importlib.util
import sys
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
