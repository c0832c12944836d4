"""TCP streams: a hello with a lost segment, proxies (HTTP CONNECT, SOCKS), TLS after a plaintext
prologue (STARTTLS and friends), several requests on one kept-alive HTTP connection."""

from __future__ import annotations

import struct

import pytest

from netwatch.model import Segment
from netwatch.signatures import load_signature_set
from tests.quicbuild import browser_client_hello
from tests.test_extract_detect import run as extract_and_detect

SYN, ACK, PSH = 0x02, 0x10, 0x08


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def tls_record(handshake: bytes) -> bytes:
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


class Conversation:
    """Segments of one TCP connection in both directions, with sequence numbers kept right."""

    def __init__(self, *, client: str = "192.0.2.7", server: str = "203.0.113.5", sport: int = 40001,
                 dport: int = 443) -> None:
        self.client, self.server, self.sport, self.dport = client, server, sport, dport
        self.seq = {True: 1000, False: 5000}
        self.frame = 0
        self.segments: list[Segment] = []
        self._packet(True, b"", SYN, advance=1)
        self._packet(False, b"", SYN | ACK, advance=1)

    def _packet(self, from_client: bool, payload: bytes, flags: int, *, advance: int | None = None,
                lost: bool = False) -> None:
        self.frame += 1
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        if not lost:
            self.segments.append(Segment(
                frame=self.frame, ts=100.0 + self.frame / 100, transport="tcp", src_ip=src, dst_ip=dst,
                src_port=sport, dst_port=dport, payload=payload, tcp_seq=self.seq[from_client], tcp_flags=flags,
                src_mac="02:aa:00:00:00:07" if from_client else "02:aa:00:00:00:01"))
        self.seq[from_client] = (self.seq[from_client] + (len(payload) if advance is None else advance)) % (1 << 32)

    def client_sends(self, payload: bytes, *, lost: bool = False) -> Conversation:
        self._packet(True, payload, ACK | PSH, lost=lost)
        return self

    def server_sends(self, payload: bytes) -> Conversation:
        self._packet(False, payload, ACK | PSH)
        return self


def run(segments: list[Segment], sigset):
    return extract_and_detect(segments, sigset, emit_all=True)[0]


def names(detections) -> list[tuple[str, str | None]]:
    return [(d.evidence, d.name) for d in detections]


# --- a hello with a lost segment ---


def test_tcp_hello_with_a_lost_segment_inside_key_share(sigset):
    record = tls_record(browser_client_hello("pay.weixin.qq.com", total=1938))
    talk = Conversation().client_sends(record[:84]).client_sends(record[84:1054], lost=True)
    talk.client_sends(record[1054:])
    detections = run(talk.segments, sigset)
    assert names(detections) == [("tls_sni", "pay.weixin.qq.com")]
    assert detections[0].obs.detail.get("partial") is True


def test_tcp_hello_whose_sni_lies_in_the_hole_gives_no_name(sigset):
    record = tls_record(browser_client_hello("pay.weixin.qq.com", total=1938))
    at = record.index(b"pay.weixin")
    talk = Conversation().client_sends(record[:84]).client_sends(record[84:at + 4], lost=True)
    talk.client_sends(record[at + 4:])
    assert names(run(talk.segments, sigset)) == []


def small_hello(name: str) -> bytes:
    return tls_record(browser_client_hello(name, total=600, post_quantum=False))


# --- proxies ---


def socks5(name: bytes, port: int = 443, *, auth: bool = False) -> list[bytes]:
    greeting = b"\x05\x02\x00\x02" if auth else b"\x05\x01\x00"
    messages = [greeting]
    if auth:
        messages.append(b"\x01\x05alice\x06secret")
    messages.append(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    return messages


@pytest.mark.parametrize("auth", [False, True])
def test_socks5_connect_by_name_then_clienthello(sigset, auth):
    talk = Conversation(dport=1080)
    for message in socks5(b"mobilegw.alipay.com", auth=auth):
        talk.client_sends(message).server_sends(b"\x05\x00")
    talk.client_sends(small_hello("mobilegw.alipay.com"))
    detections = run(talk.segments, sigset)
    assert names(detections) == [("proxy_connect", "mobilegw.alipay.com"), ("tls_sni", "mobilegw.alipay.com")]
    proxy = detections[0]
    assert proxy.kind == "alert" and proxy.device.id == "02:aa:00:00:00:07"
    assert proxy.obs.detail == {"proxy": "socks5", "port": 443}


def test_socks4a_name_then_http_request(sigset):
    talk = Conversation(dport=1080)
    talk.client_sends(b"\x04\x01\x00\x50\x00\x00\x00\x01anon\x00dl.wps.cn\x00")
    talk.server_sends(b"\x00\x5a" + bytes(6))
    talk.client_sends(b"GET /update HTTP/1.1\r\nHost: dl.wps.cn\r\n\r\n")
    assert names(run(talk.segments, sigset)) == [("proxy_connect", "dl.wps.cn"), ("http_host", "dl.wps.cn")]


def test_socks4_and_socks5_by_address(sigset):
    talk = Conversation(dport=1080)
    talk.client_sends(b"\x04\x01\x01\xbb\xc6\x33\x64\x07\x00").client_sends(small_hello("qpay.qq.com"))
    assert names(run(talk.segments, sigset)) == [("proxy_connect", "198.51.100.7"), ("tls_sni", "qpay.qq.com")]
    talk = Conversation(dport=1080, sport=40002)
    talk.client_sends(b"\x05\x01\x00").client_sends(b"\x05\x01\x00\x04" + bytes(15) + b"\x01\x01\xbb")
    assert names(run(talk.segments, sigset)) == [("proxy_connect", "::1")]


def test_http_connect_slash_is_not_a_host(sigset):
    talk = Conversation(dport=8080).client_sends(b"CONNECT / HTTP/1.1\r\nHost: proxy.example\r\n\r\n")
    assert names(run(talk.segments, sigset)) == [("http_host", "proxy.example")]
    talk = Conversation(dport=8080).client_sends(b"CONNECT / HTTP/1.1\r\n\r\n")
    assert names(run(talk.segments, sigset)) == []


# --- TLS after a plaintext prologue ---


@pytest.mark.parametrize(("port", "commands"), [
    (25, [b"EHLO laptop.example\r\n", b"STARTTLS\r\n"]),
    (587, [b"EHLO laptop.example\r\nSTARTTLS\r\n"]),
    (143, [b"a001 CAPABILITY\r\n", b"a002 STARTTLS\r\n"]),
    (110, [b"CAPA\r\n", b"STLS\r\n"]),
    (21, [b"AUTH TLS\r\n"]),
    (389, [bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037"]),
    (5432, [bytes.fromhex("0000000804d2162f")]),
])
def test_tls_after_a_plaintext_prologue(sigset, port, commands):
    talk = Conversation(dport=port)
    for command in commands:
        talk.server_sends(b"220 ready\r\n").client_sends(command)
    talk.server_sends(b"S" if port == 5432 else b"220 go ahead\r\n").client_sends(small_hello("imap.exmail.qq.com"))
    assert names(run(talk.segments, sigset)) == [("tls_sni", "imap.exmail.qq.com")]


def test_plain_smtp_without_upgrade_is_left_alone(sigset):
    talk = Conversation(dport=25).client_sends(b"EHLO laptop\r\n").client_sends(b"MAIL FROM:<a@b>\r\n")
    assert names(run(talk.segments, sigset)) == []


# --- kept-alive HTTP connections ---


def test_later_requests_on_a_kept_alive_connection_name_other_hosts(sigset):
    talk = Conversation(dport=80)
    talk.client_sends(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n").server_sends(b"HTTP/1.1 200 OK\r\n\r\n")
    talk.client_sends(b"POST /a HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 5\r\n\r\nhello")
    talk.client_sends(b"GET /up HTTP/1.1\r\nHost: dl.wps.cn\r\n\r\nGET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    detections = run(talk.segments, sigset)
    assert names(detections) == [("http_host", "www.example.com"), ("http_host", "dl.wps.cn")]
    assert detections[1].obs.detail["request"] == 3


@pytest.mark.parametrize("request_head", [
    b"GET /index.html\r\nHost: dl.wps.cn\r\n\r\n",  # no version
    b"GET HTTP/1.1\r\nHost: dl.wps.cn\r\n\r\n",  # no target
])
def test_request_line_without_version_or_target_still_names_the_host(sigset, request_head):
    talk = Conversation(dport=80).client_sends(request_head)
    assert names(run(talk.segments, sigset)) == [("http_host", "dl.wps.cn")]


# --- end to end: a capture built with scapy, every output format ---


def write_tcp_pcap(path, segments: list[Segment]):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    flags = {SYN: "S", SYN | ACK: "SA", ACK | PSH: "PA"}
    frames = []
    for segment in segments:
        frame = (Ether(src=segment.src_mac, dst="02:aa:00:00:00:99") / IP(src=segment.src_ip, dst=segment.dst_ip)
                 / TCP(sport=segment.src_port, dport=segment.dst_port, seq=segment.tcp_seq,
                       flags=flags[segment.tcp_flags]) / segment.payload)
        frame.time = segment.ts
        frames.append(frame)
    wrpcap(str(path), frames)
    return path


def test_socks_capture_in_every_output_format(tmp_path):
    import csv
    import io
    import json
    import subprocess
    import sys
    from pathlib import Path

    talk = Conversation(dport=1080)
    for message in socks5(b"mobilegw.alipay.com"):
        talk.client_sends(message).server_sends(b"\x05\x00")
    path = write_tcp_pcap(tmp_path / "socks.pcap", talk.segments)
    repo = Path(__file__).resolve().parent.parent

    def scan(fmt: str) -> str:
        done = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", str(path), "--format", fmt],
                              capture_output=True, text=True, cwd=repo)
        assert done.returncode == 1, done.stderr
        return done.stdout

    (event,) = [json.loads(line) for line in scan("jsonl").splitlines()]
    assert event["netwatch"]["evidence"] == "proxy_connect" and event["url"]["domain"] == "mobilegw.alipay.com"
    assert event["event"]["type"] == ["connection", "protocol"] and event["network"]["protocol"] == "socks"
    assert event["netwatch"]["detail"] == {"proxy": "socks5", "port": 443}
    (row,) = csv.DictReader(io.StringIO(scan("csv")))
    assert (row["netwatch.evidence"], row["netwatch.name"]) == ("proxy_connect", "mobilegw.alipay.com")
    assert "proxy_connect=1" in scan("table")


# --- DNS on UDP port 443 ---


def udp(payload: bytes, *, sport: int = 40000, dport: int = 443, frame: int = 1) -> Segment:
    return Segment(frame=frame, ts=100.0 + frame, transport="udp", src_ip="192.0.2.7", dst_ip="198.51.100.53",
                   src_port=sport, dst_port=dport, payload=payload, src_mac="02:aa:00:00:00:07")


def test_dnscrypt_certificate_query_on_udp_443_is_dns_and_a_blind_spot(sigset):
    from dns.message import make_query

    query = make_query("2.dnscrypt-cert.opendns.com", "TXT").to_wire()
    detections = run([udp(query)], sigset)
    assert [(d.evidence, d.dataset, d.name, d.resolver) for d in detections] == [
        ("encrypted_dns", "netwatch.blind_spot", "2.dnscrypt-cert.opendns.com", "opendns.com"),
        ("dns_query", "netwatch.observation", "2.dnscrypt-cert.opendns.com", None)]
    # The same 4-tuple already carried QUIC: a whole DNS message on it is still read.
    from tests.quicbuild import padded, protect_initial
    initial = protect_initial(padded(b"\x01"), dcid=bytes(8))
    later = run([udp(initial, sport=40001), udp(query, sport=40001, frame=2)], sigset)
    assert ("dns_query", "2.dnscrypt-cert.opendns.com") in names(later)


def test_dns_over_quic_alpn_is_encrypted_dns(sigset):
    from tests.quicbuild import crypto_frame, padded, protect_initial

    hello = browser_client_hello("dns.example.net", total=600, post_quantum=False, alpn=b"doq")
    detections = run([udp(protect_initial(padded(crypto_frame(0, hello)), dcid=bytes(8)))], sigset)
    assert [(d.evidence, d.resolver) for d in detections] == [("encrypted_dns", "dns.example.net"),
                                                              ("quic_sni", None)]
