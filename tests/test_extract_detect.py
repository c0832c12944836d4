"""The extraction dispatcher and the detector, fed decoded segments directly."""

from __future__ import annotations

import struct

import pytest
from dns.message import make_query

from netwatch.detect.devices import DeviceInventory, mac_vendor
from netwatch.detect.engine import Detector, downgrade
from netwatch.extract import Extractor
from netwatch.model import Segment
from netwatch.signatures import load_signature_set
from pcaps.generate import client_hello

SYN, ACK, PSH = 0x02, 0x10, 0x08


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def seg(payload: bytes = b"", *, transport: str = "tcp", src: str = "192.0.2.7", dst: str = "203.0.113.5",
        sport: int = 40001, dport: int = 443, seq: int = 1001, flags: int = ACK | PSH, frame: int = 1,
        ts: float = 100.0, mac: str | None = "02:aa:00:00:00:07") -> Segment:
    return Segment(frame=frame, ts=ts, transport=transport, src_ip=src, dst_ip=dst, src_port=sport,
                   dst_port=dport, payload=payload, src_mac=mac, tcp_seq=seq, tcp_flags=flags)


def tls_record(handshake: bytes) -> bytes:
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def run(segments: list[Segment], sigset, **kw):
    extractor, detector = Extractor(), Detector(sigset, **kw)
    detections = []
    for s in segments:
        for obs in extractor.segment(s):
            detections.extend(detector.observe(obs))
    for obs in extractor.flush():
        detections.extend(detector.observe(obs))
    return detections, detector


def test_clienthello_split_over_three_segments_out_of_order(sigset) -> None:
    record = tls_record(client_hello("api.mch.weixin.qq.com", "t", post_quantum=True))
    a, b, c = record[:700], record[700:1400], record[1400:]
    segments = [
        seg(flags=SYN, seq=1000, payload=b""),
        seg(c, seq=1001 + 1400, frame=4),
        seg(a, seq=1001, frame=2),
        seg(b, seq=1001 + 700, frame=3),
    ]
    detections, _ = run(segments, sigset)
    sni = [d for d in detections if d.evidence == "tls_sni"]
    assert len(sni) == 1 and sni[0].name == "api.mch.weixin.qq.com"
    assert sni[0].match.app == "wechat_pay" and sni[0].kind == "alert"


def test_http_connect_then_clienthello_in_the_same_stream(sigset) -> None:
    connect = b"CONNECT openapi.alipay.com:443 HTTP/1.1\r\nHost: openapi.alipay.com:443\r\n\r\n"
    hello = tls_record(client_hello("openapi.alipay.com", "c"))
    detections, _ = run([seg(connect + hello, dport=3128)], sigset)
    kinds = sorted(d.evidence for d in detections)
    assert kinds == ["http_host", "tls_sni"]
    assert {d.name for d in detections} == {"openapi.alipay.com"}


def test_dns_over_tcp_on_an_odd_port_two_messages_in_one_segment(sigset) -> None:
    wire = b"".join(struct.pack("!H", len(m)) + m for m in
                    (make_query("account.wps.cn", "A").to_wire(), make_query("qpay.qq.com", "AAAA").to_wire()))
    detections, _ = run([seg(wire, dport=5300)], sigset)
    assert sorted((d.evidence, d.name) for d in detections) == [
        ("dns_query", "account.wps.cn"), ("dns_query", "qpay.qq.com")]


def test_dns_message_split_across_segments(sigset) -> None:
    message = make_query("v4.camscanner.com", "A").to_wire()
    framed = struct.pack("!H", len(message)) + message
    detections, _ = run([seg(framed[:9], dport=53, seq=1), seg(framed[9:], dport=53, seq=10, frame=2)], sigset)
    assert [(d.evidence, d.name) for d in detections] == [("dns_query", "v4.camscanner.com")]


def test_resolved_ip_only_for_connections_without_a_name_of_their_own(sigset) -> None:
    answer = make_query("mobilegw.alipay.com", "A")
    from dns.message import make_response
    from dns.rrset import from_text

    response = make_response(answer)
    response.answer.append(from_text("mobilegw.alipay.com.", 60, "IN", "A", "203.0.113.77"))
    segments = [
        seg(response.to_wire(), transport="udp", src="192.0.2.1", dst="192.0.2.7", sport=53, dport=5353 + 1),
        # a connection with no name at all: SYN only, never a payload
        seg(flags=SYN, dst="203.0.113.77", sport=40100, seq=5, frame=2),
        # a connection that does name itself: no resolved_ip for it
        seg(flags=SYN, dst="203.0.113.77", sport=40101, seq=9, frame=3),
        seg(tls_record(client_hello("mobilegw.alipay.com", "r")), dst="203.0.113.77", sport=40101, seq=10,
            frame=4),
    ]
    detections, _ = run(segments, sigset)
    resolved = [d for d in detections if d.evidence == "resolved_ip"]
    assert len(resolved) == 1
    assert resolved[0].obs.src_port == 40100
    assert resolved[0].resolved_from == "mobilegw.alipay.com"
    assert resolved[0].confidence == downgrade("high") == "medium"


def test_address_rule_and_encrypted_dns_blind_spot_once_per_device(sigset) -> None:
    segments = [
        seg(flags=SYN, dst="119.29.29.99", dport=443, sport=41000, seq=1),  # Tencent HTTP-DNS range
        seg(tls_record(client_hello("dns.google", "d")), dport=443, sport=41001),
        seg(tls_record(client_hello("dns.google", "d2")), dport=443, sport=41002, frame=2),
        seg(tls_record(client_hello("resolver.example", "dot")), dport=853, sport=41003, frame=3),
    ]
    detections, detector = run(segments, sigset)
    ip = [d for d in detections if d.evidence == "ip_match"]
    assert len(ip) == 1 and ip[0].match.vendor == "Tencent"
    blind = [d for d in detections if d.dataset == "netwatch.blind_spot"]
    assert sorted(d.resolver for d in blind) == ["dns.google", "resolver.example"]
    device = detector.inventory.get("02:aa:00:00:00:07")
    assert set(device.blind_spots) == {"encrypted_dns:dns.google", "encrypted_dns:resolver.example"}


def test_alert_threshold_and_vendor_contacts(sigset) -> None:
    query = make_query("short.weixin.qq.com", "A").to_wire()
    strict, _ = run([seg(query, transport="udp", dport=53)], sigset, min_confidence="high")
    default, _ = run([seg(query, transport="udp", dport=53)], sigset)
    assert [d.kind for d in strict] == ["event"]
    assert [d.kind for d in default] == ["alert"] and default[0].confidence == "medium"
    assert "WeChat" in (default[0].match.note or "")


def test_device_seen_by_ip_first_is_folded_into_its_mac_device() -> None:
    inventory = DeviceInventory()
    by_ip = inventory.device("192.0.2.9", None, 1.0)
    by_ip.hostname = "printer"
    merged = inventory.device("192.0.2.9", "00:14:22:00:00:09", 2.0)
    assert len(inventory) == 1
    assert merged.id == "00:14:22:00:00:09" and merged.hostname == "printer"
    assert inventory.device("192.0.2.9", None, 3.0) is merged


def test_inventory_is_bounded() -> None:
    inventory = DeviceInventory(max_devices=10)
    for i in range(50):
        inventory.device(f"198.51.100.{i}", None, float(i))
    assert len(inventory) == 10 and inventory.evicted == 40


def test_mac_vendor() -> None:
    assert mac_vendor("00:14:22:3c:40:0b") == "Dell Inc."
    assert mac_vendor("02:11:22:33:44:55") == "(randomized)"
    assert mac_vendor("01:00:5e:00:00:01") is None
    assert mac_vendor("zz") is None
