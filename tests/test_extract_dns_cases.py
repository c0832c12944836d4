"""DNS cases found on real traffic, each on a capture built here: tunnel names with odd bytes, forward
compression pointers, NetBIOS name service, UPDATE/NOTIFY zone names."""

from __future__ import annotations

import struct

import dns.message
import dns.opcode
import dns.update
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.netbios import NBNSHeader, NBNSQueryRequest
from scapy.packet import Raw
from scapy.utils import wrpcap

from netwatch.pipeline import Pipeline
from netwatch.scan import scan_paths
from netwatch.signatures import load_signature_set


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def capture(tmp_path, payloads: list[tuple[int, bytes]]):
    """One client-to-resolver UDP datagram per (destination port, payload)."""
    frames = []
    for index, (port, payload) in enumerate(payloads):
        frame = (Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:01") / IP(src="192.0.2.10", dst="192.0.2.53")
                 / UDP(sport=40000 + index, dport=port) / Raw(payload))
        frame.time = 1767600000 + index
        frames.append(frame)
    path = tmp_path / "dns.pcap"
    wrpcap(str(path), frames)
    return path


def scan(path, sigset) -> list[tuple[str, str, str | None]]:
    events: list[dict] = []
    pipeline = Pipeline(sigset, emit_all=True)
    scan_paths([str(path)], pipeline, events.append)
    return [(e["netwatch"]["evidence"], e["netwatch"]["name"], e["netwatch"]["app"]) for e in events]


def query(name_wire: bytes, qtype: int = 16, *, ident: int = 7, questions: int = 1) -> bytes:
    return struct.pack("!6H", ident, 0x0100, questions, 0, 0, 0) + name_wire + struct.pack("!HH", qtype, 1)


def wire(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


# --- names with odd bytes (DNS tunnels) ---


def test_tunnel_names_are_shown_escaped_on_any_port(tmp_path, sigset):
    tunnel = wire(b"aGVsbG8\x01\x02\x7fx", b"t", b"example", b"net")
    path = capture(tmp_path, [(53, query(tunnel)), (5300, query(tunnel, ident=8))])
    assert scan(path, sigset) == [("dns_query", "agvsbg8\\001\\002\\127x.t.example.net", None)] * 2


def test_only_host_name_labels_are_matched(tmp_path, sigset):
    path = capture(tmp_path, [
        (53, query(wire(b"x.alipay", b"com"))),  # one label "x.alipay" under com: not Alipay
        (53, query(wire(b"a\x00b", b"mobilegw", b"alipay", b"com"))),  # a subdomain of mobilegw.alipay.com
        (53, query(wire(b"a\x00b", b"openapi", b"alipay", b"com"))),  # exact rule openapi.*: a subdomain is not it
    ])
    found = scan(path, sigset)
    assert found[0] == ("dns_query", "x\\.alipay.com", None)
    assert found[1] == ("dns_query", "a\\000b.mobilegw.alipay.com", "alipay")
    assert found[2][1:] == ("a\\000b.openapi.alipay.com", "alipay")
    assert found[2][0] == "dns_query"


# --- compression pointers ---


def test_forward_pointer_keeps_the_whole_message(tmp_path, sigset):
    """A real client's query: its first name is "www" plus a pointer forward to the second question."""
    second = wire(b"mobilegw", b"alipay", b"com")
    first_question = b"\x03www\xc0\x16" + struct.pack("!HH", 1, 1)  # the second name starts at 12 + 10
    message = struct.pack("!6H", 9, 0x0100, 2, 0, 0, 0) + first_question + second + struct.pack("!HH", 28, 1)
    found = scan(capture(tmp_path, [(53, message), (5353, message)]), sigset)
    names = [name for _, name, _ in found]
    assert names == ["www.mobilegw.alipay.com", "mobilegw.alipay.com"] * 2


def test_pointer_loop_is_still_malformed(tmp_path, sigset):
    tail = struct.pack("!HH", 1, 1)  # "a" -> pointer to the second name "b" -> pointer back to "a"
    loop = struct.pack("!6H", 9, 0x0100, 2, 0, 0, 0) + b"\x01a\xc0\x14" + tail + b"\x01b\xc0\x0c" + tail
    assert scan(capture(tmp_path, [(53, loop)]), sigset) == []


# --- not queries ---


def test_netbios_name_service_is_not_dns_evidence(tmp_path, sigset):
    nbns = bytes(NBNSHeader() / NBNSQueryRequest(QUESTION_NAME="MOBILEGW", QUESTION_TYPE="NB"))
    path = capture(tmp_path, [(137, nbns)])
    assert scan(path, sigset) == []


def test_update_and_notify_zone_names_are_not_queries(tmp_path, sigset):
    update = dns.update.UpdateMessage("alipay.com")
    update.add("host", 300, "A", "192.0.2.1")
    notify = dns.message.make_query("alipay.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    plain = dns.message.make_query("mobilegw.alipay.com", "A")
    path = capture(tmp_path, [(53, update.to_wire()), (53, notify.to_wire()), (53, plain.to_wire())])
    assert scan(path, sigset) == [("dns_query", "mobilegw.alipay.com", "alipay")]
