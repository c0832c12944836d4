"""`resolved_ip` is causal and per client: only answers seen before the connection, the client's own
(or its resolver's) first, several apps on one address reported as ambiguous, never for a connection
that names itself."""

from __future__ import annotations

import dns.message
import dns.rrset
import pytest

from netwatch.detect.engine import Detector
from netwatch.extract import Extractor
from netwatch.model import Segment
from netwatch.pipeline import Pipeline
from netwatch.scan import scan_paths
from netwatch.signatures import load_signature_set
from tests.quicbuild import browser_client_hello

SERVER = "203.0.113.80"  # one CDN address that several names resolve to
RESOLVER = "192.0.2.1"
SYN = 0x02


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def answer(name: str, client: str, ts: float, *, resolver: str = RESOLVER, address: str = SERVER) -> Segment:
    query = dns.message.make_query(name, "A")
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", address))
    return Segment(frame=int(ts * 10), ts=ts, transport="udp", src_ip=resolver, dst_ip=client, src_port=53,
                   dst_port=33000, payload=response.to_wire())


def ask(name: str, client: str, ts: float, *, resolver: str = RESOLVER) -> Segment:
    return Segment(frame=int(ts * 10), ts=ts, transport="udp", src_ip=client, dst_ip=resolver, src_port=33000,
                   dst_port=53, payload=dns.message.make_query(name, "A").to_wire())


def connect(client: str, ts: float, *, sport: int = 45000, payload: bytes = b"") -> list[Segment]:
    syn = Segment(frame=int(ts * 10), ts=ts, transport="tcp", src_ip=client, dst_ip=SERVER, src_port=sport,
                  dst_port=443, payload=b"", tcp_seq=100, tcp_flags=SYN)
    if not payload:
        return [syn]
    data = Segment(frame=int(ts * 10) + 1, ts=ts + 0.01, transport="tcp", src_ip=client, dst_ip=SERVER,
                   src_port=sport, dst_port=443, payload=payload, tcp_seq=101, tcp_flags=0x18)
    return [syn, data]


def resolved(segments: list[Segment], sigset) -> list:
    detector = Detector(sigset)
    extractor = Extractor(wants_answers=detector.wants_answers, interesting_address=detector.interesting_address)
    found = []
    for segment in segments:
        for obs in extractor.segment(segment):
            found.extend(detector.observe(obs))
    for obs in extractor.flush():
        found.extend(detector.observe(obs))
    return [d for d in found if d.evidence == "resolved_ip"]


def test_only_answers_seen_before_the_connection(sigset):
    segments = [
        answer("mobilegw.alipay.com", "192.0.2.20", 1.0),  # another client, earlier
        *connect("192.0.2.10", 2.0),
        answer("pay.weixin.qq.com", "192.0.2.30", 3.0),  # later, by a third client: cannot explain it
    ]
    (found,) = resolved(segments, sigset)
    assert (found.resolved_from, found.match.app, found.kind) == ("mobilegw.alipay.com", "alipay", "alert")
    # Nothing answered before the connection: no finding at all.
    assert resolved([*connect("192.0.2.10", 2.0), answer("mobilegw.alipay.com", "192.0.2.10", 3.0)], sigset) == []


def test_the_clients_own_answer_wins_over_others(sigset):
    segments = [
        answer("mobilegw.alipay.com", "192.0.2.10", 1.0),
        answer("pay.weixin.qq.com", "192.0.2.20", 1.5),
        *connect("192.0.2.10", 2.0),
        *connect("192.0.2.20", 2.1, sport=45001),
    ]
    found = resolved(segments, sigset)
    assert [(d.obs.src_ip, d.resolved_from) for d in found] == [
        ("192.0.2.10", "mobilegw.alipay.com"), ("192.0.2.20", "pay.weixin.qq.com")]


def test_answers_to_the_clients_resolver_count_as_its_own(sigset):
    segments = [
        ask("example.org", "192.0.2.10", 0.5, resolver="192.0.2.2"),  # the client uses 192.0.2.2
        answer("mobilegw.alipay.com", "192.0.2.2", 1.0, resolver="198.51.100.53"),  # upstream answer to it
        answer("pay.weixin.qq.com", "192.0.2.20", 1.5),
        *connect("192.0.2.10", 2.0),
    ]
    (found,) = resolved(segments, sigset)
    assert found.resolved_from == "mobilegw.alipay.com"


def test_an_address_of_several_apps_is_ambiguous(sigset):
    segments = [
        answer("mobilegw.alipay.com", "192.0.2.20", 1.0),
        answer("pay.weixin.qq.com", "192.0.2.30", 1.5),
        *connect("192.0.2.10", 2.0),
    ]
    (found,) = resolved(segments, sigset)
    assert found.kind == "event" and found.confidence == "low" and found.name is None
    assert set(found.match.apps) == {"alipay", "wechat_pay"} and found.label == "Alipay or WeChat Pay"
    assert found.obs.detail["candidates"] == ["mobilegw.alipay.com", "pay.weixin.qq.com"]
    # Two names of one app are not ambiguous.
    same_app = [answer("mobilegw.alipay.com", "192.0.2.20", 1.0), answer("openapi.alipay.com", "192.0.2.30", 1.5),
                *connect("192.0.2.10", 2.0)]
    (found,) = resolved(same_app, sigset)
    assert found.match.app == "alipay" and found.kind == "alert"


def test_no_resolved_ip_when_the_stream_names_itself(sigset):
    ech_cover = b"\x16\x03\x01" + len(hello := browser_client_hello(
        "cloudflare-ech.com", total=600, post_quantum=False)).to_bytes(2, "big") + hello
    segments = [answer("mobilegw.alipay.com", "192.0.2.10", 1.0), *connect("192.0.2.10", 2.0, payload=ech_cover)]
    assert resolved(segments, sigset) == []


def test_ambiguous_address_end_to_end(tmp_path, sigset):
    """The same story as a capture (scapy), through `netwatch scan`'s pipeline and the ECS output."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    frames = []
    for segment in [answer("mobilegw.alipay.com", "192.0.2.20", 1.0), answer("pay.weixin.qq.com", "192.0.2.30", 1.5),
                    *connect("192.0.2.10", 2.0)]:
        layer = (UDP(sport=segment.src_port, dport=segment.dst_port) if segment.transport == "udp"
                 else TCP(sport=segment.src_port, dport=segment.dst_port, flags="S", seq=100))
        frame = Ether() / IP(src=segment.src_ip, dst=segment.dst_ip) / layer / Raw(segment.payload)
        frame.time = 1767600000 + segment.ts
        frames.append(frame)
    path = tmp_path / "shared.pcap"
    wrpcap(str(path), frames)
    events: list[dict] = []
    scan_paths([str(path)], Pipeline(sigset), events.append)
    (event,) = [e for e in events if e["netwatch"]["evidence"] == "resolved_ip"]
    assert event["event"]["kind"] == "event" and event["netwatch"]["confidence"] == "low"
    assert event["netwatch"]["apps"] == ["alipay", "wechat_pay"]
    assert event["netwatch"]["detail"]["candidates"] == ["mobilegw.alipay.com", "pay.weixin.qq.com"]
