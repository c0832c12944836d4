"""The protocol-aware TCP head rule of the C FlowFilter (smart=True, the default).

Each test plays a TCP conversation packet by packet through `FlowFilter.admits` and checks
which packets reach Python. The conversations are built with scapy from real protocol
layouts: TLS records and a ClientHello with server_name (RFC 8446 5.1 / 4.1.2, RFC 6066 3),
HTTP/1.1 request and status lines (RFC 9112), DNS over TCP (RFC 1035 4.2.2). The last tests
run the whole scan pipeline over a written capture and compare smart=True with smart=False.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from netwatch._fastpath import FlowFilter

ETH = 1
DROP_COUNTERS = ("bulk", "no_payload", "non_ip", "other_proto", "unknown_dropped", "done_dropped", "server_dropped")


# --------------------------------------------------------------------------- payload builders


def client_hello(name: str, size: int) -> bytes:
    """A ClientHello handshake message of exactly `size` bytes (if size allows), server_name last.

    padding (RFC 7685, type 21) makes up the size, like a post-quantum key share would; the
    name goes last so it lands in the final segment of a split hello.
    """
    sni = name.encode()
    server_name = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    fixed = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    versions = struct.pack("!HHB", 43, 3, 2) + b"\x03\x04"
    tail = versions + struct.pack("!HH", 0, len(server_name)) + server_name
    pad = size - (4 + len(fixed) + 2 + len(tail) + 4)
    assert pad >= 0
    extensions = struct.pack("!HH", 21, pad) + bytes(pad) + tail
    body = fixed + struct.pack("!H", len(extensions)) + extensions
    return b"\x01" + len(body).to_bytes(3, "big") + body


def tls_records(message: bytes, content_type: int = 22, fragment: int = 16384) -> bytes:
    """`message` in TLS records of at most `fragment` bytes each (legacy version 0x0301)."""
    out = b""
    for start in range(0, len(message), fragment):
        piece = message[start : start + fragment]
        out += bytes([content_type]) + b"\x03\x01" + struct.pack("!H", len(piece)) + piece
    return out


SERVER_HELLO = tls_records(b"\x02" + (86).to_bytes(3, "big") + bytes(86))
APP_DATA = tls_records(bytes(300), content_type=23)
CHANGE_CIPHER_SPEC = tls_records(b"\x01", content_type=20)


def cut(data: bytes, sizes: list[int] | int) -> list[bytes]:
    """Split data in segments of the given sizes (an int: the MSS)."""
    if isinstance(sizes, int):
        return [data[i : i + sizes] for i in range(0, len(data), sizes)]
    out, pos = [], 0
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out.append(data[pos:])
    return out


class Conversation:
    """Ethernet/IPv4/TCP frames of one connection, with consistent sequence numbers."""

    def __init__(self, sport: int = 40000, dport: int = 443) -> None:
        self.sport, self.dport = sport, dport
        self.seq = {True: 1000, False: 900000}

    def frame(self, from_client: bool, payload: bytes = b"", flags: str = "PA", seq: int | None = None) -> bytes:
        src, dst = ("10.0.0.1", "10.0.0.2") if from_client else ("10.0.0.2", "10.0.0.1")
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        own = self.seq[from_client] if seq is None else seq
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=own, ack=self.seq[not from_client])
        if seq is None:
            self.seq[from_client] += len(payload) + (1 if "S" in flags else 0)
        return bytes(Ether() / IP(src=src, dst=dst) / tcp / payload)

    def handshake(self) -> list[bytes]:
        return [self.frame(True, flags="S"), self.frame(False, flags="SA"), self.frame(True, flags="A")]

    def send(self, from_client: bool, segments: list[bytes], order: list[int] | None = None) -> list[bytes]:
        """Segments of one stream, optionally captured in another order."""
        base = self.seq[from_client]
        offsets = [sum(len(s) for s in segments[:i]) for i in range(len(segments))]
        self.seq[from_client] += sum(len(s) for s in segments)
        order = list(range(len(segments))) if order is None else order
        return [self.frame(from_client, segments[i], seq=base + offsets[i]) for i in order]


def decisions(flow_filter: FlowFilter, frames: list[bytes]) -> list[bool]:
    return [flow_filter.admits(ETH, frame, float(i)) for i, frame in enumerate(frames)]


def assert_partition(flow_filter: FlowFilter) -> None:
    """Every frame is admitted or counted under exactly one drop reason."""
    stats = flow_filter.stats()
    assert stats["frames"] == stats["admitted"] + sum(stats[k] for k in DROP_COUNTERS)


# --------------------------------------------------------------------------- TLS


def test_one_segment_hello_admitted_server_and_later_client_records_dropped():
    conv = Conversation()
    flow_filter = FlowFilter()
    hello = tls_records(client_hello("a.example", 517))
    frames = [*conv.handshake(), conv.frame(True, hello), conv.frame(False, SERVER_HELLO + CHANGE_CIPHER_SPEC)]
    frames += [conv.frame(False, APP_DATA), conv.frame(True, CHANGE_CIPHER_SPEC + APP_DATA), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True, False, False, True, False, False, False, False]
    stats = flow_filter.stats()
    assert (stats["tls_hello"], stats["tls_done"], stats["server_dropped"], stats["done_dropped"]) == (1, 1, 2, 2)
    assert_partition(flow_filter)


@pytest.mark.parametrize(("size", "mss", "pieces"), [(1800, 1448, 2), (11418, 1024, 12)])
def test_split_hello_every_segment_admitted_then_done(size, mss, pieces):
    conv = Conversation()
    flow_filter = FlowFilter()
    segments = cut(tls_records(client_hello("split.example", size)), mss)
    assert len(segments) == pieces
    frames = conv.handshake() + conv.send(True, segments)
    frames += [conv.frame(False, SERVER_HELLO), conv.frame(True, CHANGE_CIPHER_SPEC), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True, False, False] + [True] * pieces + [False] * 3
    assert flow_filter.stats()["tls_done"] == 1
    assert_partition(flow_filter)


@pytest.mark.parametrize("order", [[1, 0], [2, 1, 0], [0, 2, 1, 3], [3, 0, 1, 2]])
def test_reordered_hello_segments_admitted(order):
    conv = Conversation()
    flow_filter = FlowFilter()
    segments = cut(tls_records(client_hello("reordered.example", 1800)), [500, 500, 500][: len(order) - 1])
    assert len(segments) == len(order)
    frames = conv.handshake()[2:] + conv.send(True, segments, order) + [conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [False] + [True] * len(order) + [False]


def test_retransmitted_hello_segment_does_not_cost_the_last_one():
    conv = Conversation()
    flow_filter = FlowFilter()
    first, second = cut(tls_records(client_hello("retransmit.example", 1800)), 1448)
    frames = [*conv.send(True, [first, second], order=[0, 0, 0, 1]), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True, True, True, True, False]


def test_hello_fragmented_in_records_with_segments_cut_at_record_boundaries():
    # 512-byte records: a segment that starts at a record boundary begins 16 03 01 ..,
    # then a fragment byte that is not the ClientHello type; none of them may close the direction
    conv = Conversation()
    flow_filter = FlowFilter()
    stream = tls_records(client_hello("fragmented.example", 3000), fragment=512)
    segments = cut(stream, 517)  # one record per segment
    assert len(segments) == 6
    assert all(s[:3] == b"\x16\x03\x01" for s in segments)
    assert any(s[5] != 1 for s in segments[1:])
    frames = [*conv.send(True, segments), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True] * 6 + [False]


def test_hello_in_syn_tcp_fast_open():
    conv = Conversation()
    flow_filter = FlowFilter()
    hello = tls_records(client_hello("tfo.example", 517))
    frames = [conv.frame(True, hello, flags="S"), conv.frame(False, flags="SA"), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True, False, False]
    assert flow_filter.stats()["tls_hello"] == 1


# --------------------------------------------------------------------------- HTTP


def test_http_request_over_two_segments_then_body_and_response_dropped():
    conv = Conversation(dport=80)
    flow_filter = FlowFilter()
    head = b"POST /upload HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5000\r\n\r\n"
    frames = conv.send(True, [head[:30], head[30:] + b"x" * 100])
    frames += [
        conv.frame(True, b"y" * 1400),
        conv.frame(False, b"HTTP/1.1 200 OK\r\n\r\n"),
        conv.frame(False, b"z" * 800),
    ]
    assert decisions(flow_filter, frames) == [True, True, False, False, False]
    stats = flow_filter.stats()
    assert (stats["http_request"], stats["http_done"], stats["server_dropped"]) == (1, 1, 2)
    assert_partition(flow_filter)


@pytest.mark.parametrize("split", [-1, -2, -3])
def test_blank_line_split_across_segments(split):
    conv = Conversation(dport=80)
    flow_filter = FlowFilter()
    head = b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
    frames = [*conv.send(True, [head[:split], head[split:]]), conv.frame(True, b"POST-BODY")]
    assert decisions(flow_filter, frames) == [True, True, False]


def test_keep_alive_requests_each_admitted():
    conv = Conversation(dport=8080)
    flow_filter = FlowFilter()
    frames = []
    for host in ("a.example", "b.example", "c.example"):  # e.g. a client of an HTTP proxy
        frames.append(conv.frame(True, f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()))
        frames.append(conv.frame(False, b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert decisions(flow_filter, frames) == [True, False] * 3


def test_connect_then_hello_in_the_same_direction():
    conv = Conversation(dport=3128)
    flow_filter = FlowFilter()
    connect = b"CONNECT secure.example:443 HTTP/1.1\r\nHost: secure.example:443\r\n\r\n"
    hello = cut(tls_records(client_hello("secure.example", 1800)), 1448)
    frames = [conv.frame(True, connect), conv.frame(False, b"HTTP/1.1 200 Connection established\r\n\r\n")]
    frames += [*conv.send(True, hello), conv.frame(False, SERVER_HELLO), conv.frame(True, APP_DATA)]
    assert decisions(flow_filter, frames) == [True, False, True, True, False, False]


def test_request_line_continuing_with_http_version_is_not_a_response():
    conv = Conversation(dport=80)
    flow_filter = FlowFilter()
    frames = conv.send(True, [b"GET / ", b"HTTP/1.1\r\nHost: slow.example\r\n\r\n"])
    assert decisions(flow_filter, frames) == [True, True]


def test_bulk_text_that_looks_like_a_method_needs_a_request_target():
    conv = Conversation(dport=25)
    flow_filter = FlowFilter()
    frames = [conv.frame(True, b"EHLO mail.example\r\n")] + [
        conv.frame(True, b"DATA LINE %d\r\n" % i) for i in range(6)
    ]
    assert decisions(flow_filter, frames) == [True] * 4 + [False] * 3
    assert flow_filter.stats()["http_request"] == 0


# --------------------------------------------------------------------------- unknown protocols, DNS


def test_unknown_direction_keeps_a_small_budget_and_switches_on_a_hello():
    conv = Conversation(dport=22)
    flow_filter = FlowFilter(head_unknown_packets=3)
    frames = [conv.frame(True, b"SSH-2.0-OpenSSH_9.6\r\n")] + [conv.frame(True, bytes(200)) for _ in range(4)]
    # a STARTTLS-like switch: the hello's bytes are admitted after the unknown budget is spent
    frames += conv.send(True, cut(tls_records(client_hello("late.example", 1800)), 1448))
    frames.append(conv.frame(True, APP_DATA))
    assert decisions(flow_filter, frames) == [True] * 3 + [False] * 2 + [True, True, False]
    assert flow_filter.stats()["unknown_dropped"] == 2


def _dns_query(name: str, txid: int) -> bytes:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    message = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    return struct.pack("!H", len(message)) + message  # RFC 1035 4.2.2: two-byte length prefix


def test_dns_over_tcp_on_an_odd_port_admitted():
    conv = Conversation(sport=41000, dport=5300)
    flow_filter = FlowFilter()
    frames = [conv.frame(True, _dns_query("odd.example", 1)), conv.frame(False, _dns_query("odd.example", 1))]
    frames.append(conv.frame(True, _dns_query("second.example", 2)))
    assert decisions(flow_filter, frames) == [True, True, True]


def test_dns_over_tcp_port_53_keeps_the_plain_head_rule():
    conv = Conversation(sport=41000, dport=53)
    flow_filter = FlowFilter(head_packets=10)
    # a response whose length prefix 0x17 0x03 0x03 .. looks like a TLS application-data record
    looks_like_tls = b"\x17\x03\x03\x00\x10" + bytes(0x1703 - 3)
    frames = [conv.frame(False, looks_like_tls)] + [conv.frame(True, _dns_query(f"q{i}.example", i)) for i in range(12)]
    assert decisions(flow_filter, frames) == [True] + [True] * 10 + [False] * 2


def test_smart_false_restores_the_plain_head_rule():
    conv = Conversation()
    plain, smart = FlowFilter(smart=False), FlowFilter()
    frames = [conv.frame(False, SERVER_HELLO)] + [conv.frame(False, APP_DATA) for _ in range(20)]
    assert decisions(plain, frames) == [True] * 16 + [False] * 5
    assert decisions(smart, frames) == [False] * 21
    assert plain.stats()["server_dropped"] == 0


def test_truncated_captures_fall_back_to_the_unknown_rule():
    conv = Conversation()
    flow_filter = FlowFilter()
    hello = conv.frame(True, tls_records(client_hello("cut.example", 517)))
    ip_end = 14 + 20 + 20
    for keep in (ip_end, ip_end + 3, ip_end + 6, ip_end + 8):  # snaplen cuts inside the payload
        assert flow_filter.admits(ETH, hello[:keep])
    assert_partition(flow_filter)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=40), st.integers(0, 3000)), max_size=30))
def test_hostile_payload_sequences_keep_the_counters_consistent(packets):
    conv = Conversation()
    flow_filter = FlowFilter(head_packets=6)
    prefixes = [b"", b"\x16\x03\x01\x02\x00\x01", b"GET /", b"HTTP/1.1", b"\x17\x03\x03\x00\x05", b"CONNECT x"]
    for i, (from_client, payload, seq) in enumerate(packets):
        data = prefixes[seq % len(prefixes)] + payload
        flow_filter.admits(ETH, conv.frame(from_client, data, seq=seq * 97), float(i))
    assert_partition(flow_filter)


# --------------------------------------------------------------------------- end to end


def _scan_names(path: Path, smart: bool) -> tuple[set[tuple[str, str]], int]:
    from netwatch.pipeline import Pipeline
    from netwatch.scan import scan_paths
    from netwatch.signatures import load_signature_set

    events: list[dict] = []
    flow_filter = FlowFilter(smart=smart)
    summary = scan_paths(
        [str(path)], Pipeline(load_signature_set(), emit_all=True), events.append, flow_filter=flow_filter
    )
    names = {
        (e["netwatch"]["evidence"], e["netwatch"]["name"])
        for e in events
        if "netwatch" in e and "name" in e["netwatch"]
    }
    return names, summary.admitted


def test_scan_finds_the_same_names_with_fewer_candidates(tmp_path):
    frames: list[bytes] = []
    conv = Conversation(sport=40001)
    frames += conv.handshake() + conv.send(True, cut(tls_records(client_hello("qpay.qq.com", 11418)), 1024))
    frames += [conv.frame(False, SERVER_HELLO + bytes(1000))] + [conv.frame(False, APP_DATA) for _ in range(10)]
    conv = Conversation(sport=40002)
    frames += conv.handshake() + conv.send(
        True, cut(tls_records(client_hello("v4.camscanner.com", 1800)), 700), [2, 0, 1]
    )
    conv = Conversation(sport=40003)
    frames += conv.handshake() + conv.send(
        True, cut(tls_records(client_hello("api.mch.weixin.qq.com", 2000), fragment=512), 517)
    )
    conv = Conversation(sport=40004, dport=8080)
    frames += [*conv.handshake(), conv.frame(True, b"CONNECT mobilegw.alipay.com:443 HTTP/1.1\r\n\r\n")]
    frames += [conv.frame(False, b"HTTP/1.1 200 OK\r\n\r\n")]
    frames += conv.send(True, cut(tls_records(client_hello("mobilegw.alipay.com", 1800)), 1448))
    conv = Conversation(sport=40005, dport=80)
    head = b"GET /dl HTTP/1.1\r\nUser-Agent: test\r\nHost: dl.wps.cn\r\n\r\n"
    frames += conv.handshake() + conv.send(True, [head[:20], head[20:]])
    frames += [conv.frame(False, b"HTTP/1.1 200 OK\r\n\r\n" + bytes(1400))] + [
        conv.frame(False, bytes(1400)) for _ in range(20)
    ]
    path = tmp_path / "smart.pcap"
    wrpcap(str(path), [Ether(f) for f in frames])

    smart_names, smart_admitted = _scan_names(path, smart=True)
    plain_names, plain_admitted = _scan_names(path, smart=False)
    expected = {
        ("tls_sni", "qpay.qq.com"),
        ("tls_sni", "v4.camscanner.com"),
        ("tls_sni", "api.mch.weixin.qq.com"),
        ("tls_sni", "mobilegw.alipay.com"),
        ("http_host", "dl.wps.cn"),
    }
    assert expected <= plain_names
    assert smart_names == plain_names
    assert smart_admitted < plain_admitted


def test_ndpi_corpus_tls_head_smaller_and_hello_frames_kept(ndpi_dir):
    from netwatch.capture.files import open_capture

    # tshark: the 11.4 kB ClientHello of tls_with_huge_ch.pcapng is reassembled from these frames
    clienthello_frames = {8, 11, 12, 15, 16, 17, 18, 23, 24, 25, 26, 27}
    admitted = {}
    for smart in (False, True):
        with open_capture(ndpi_dir / "tls_with_huge_ch.pcapng", flow_filter=FlowFilter(smart=smart)) as cap:
            admitted[smart] = {p.frame for p in cap}
    assert clienthello_frames <= admitted[True]
    assert admitted[True] < admitted[False]
