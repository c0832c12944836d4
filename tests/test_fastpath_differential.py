"""Differential test of the C core against the pure-Python reference path.

The C classifier may only drop packets that cannot change what netwatch reports. So over every
capture the tests use (pcaps/, nDPI's corpus, the captures the tests generate, encapsulations,
fuzzed variants) the events of a scan with the default classifier must equal, one for one, the
events of a scan that admits every frame to the Python decoder and parsers (`admit_all=True`).
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from captures_for_scale import craft
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import GRE, LLC, SNAP, Dot3, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Raw
from scapy.utils import wrpcap

from netwatch._fastpath import FlowFilter
from netwatch.pipeline import Pipeline
from netwatch.scan import scan_paths
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (REPO / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))

_SIGSET = load_signature_set()


def _ether(**fields) -> Ether:
    """Ethernet with fixed addresses: scapy would otherwise resolve them with ARP on a real interface."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **fields)


def events(path: Path, flow_filter: FlowFilter) -> Counter[str]:
    """Every event of an --all scan (every name, not only matches), as canonical JSON."""
    out: list[dict] = []
    scan_paths([str(path)], Pipeline(_SIGSET, emit_all=True), out.append, flow_filter=flow_filter)
    return Counter(json.dumps(e, sort_keys=True) for e in out)


def names(found: Counter[str]) -> set[tuple[str, str]]:
    pairs = set()
    for text in found:
        nw = json.loads(text).get("netwatch", {})
        if nw.get("name"):
            pairs.add((nw["evidence"], nw["name"]))
    return pairs


def assert_c_path_equals_reference(path: Path) -> Counter[str]:
    reference = events(path, FlowFilter(admit_all=True))
    core = events(path, FlowFilter())
    missing = reference - core
    extra = core - reference
    assert not missing and not extra, (
        f"{path.name}: only the reference reported {sorted(names(missing))}, "
        f"only the C path reported {sorted(names(extra))}"
    )
    return reference


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples(path):
    assert_c_path_equals_reference(path)


def test_ndpi_corpus(ndpi_dir):
    captures = sorted(ndpi_dir.glob("*.pcap*"))
    assert captures
    for path in captures:
        assert_c_path_equals_reference(path)


# --------------------------------------------------------------------------- encapsulations

def _client_packets(name: str) -> list:
    """A DNS query and a TLS ClientHello (after enough bulk to exhaust a plain flow head) for `name`."""
    g = craft()
    hello = g.tls_record(g.client_hello(name, "c-core"))
    dns_query = bytes.fromhex("123401000001000000000000") + b"".join(
        bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00\x00\x01\x00\x01"
    inner = [IP(src="10.9.0.2", dst="198.51.100.7") / UDP(sport=40000, dport=53) / Raw(dns_query)]
    inner.append(IP(src="10.9.0.2", dst="198.51.100.8") / TCP(sport=40001, dport=443, flags="S", seq=999))
    inner.append(IP(src="10.9.0.2", dst="198.51.100.8") / TCP(sport=40001, dport=443, flags="PA", seq=1000)
                 / Raw(hello))
    return inner


def _pptp(ip) -> bytes:
    # Enhanced GRE (RFC 2637): flags K+S, version 1, protocol PPP, payload length, call id, sequence.
    ppp_frame = b"\xff\x03\x00\x21" + bytes(ip)
    gre = struct.pack("!BBHHHI", 0x30, 0x01, 0x880B, len(ppp_frame), 7, 1)
    return bytes(_ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / Raw(gre + ppp_frame))


def _erspan2(ip) -> bytes:
    # ERSPAN type II: GRE with S set, protocol 0x88be, 8-byte ERSPAN header, the mirrored frame.
    gre = struct.pack("!HHI", 0x1000, 0x88BE, 1)
    erspan = struct.pack("!II", 0x10000001, 0)
    return bytes(_ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / Raw(gre + erspan + bytes(_ether() / ip)))


def _gtp_u(ip) -> bytes:
    payload = bytes(ip)
    gtp = struct.pack("!BBHI", 0x30, 0xFF, len(payload), 0x1234)
    return bytes(_ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=2152, dport=2152) / Raw(gtp + payload))


def _geneve(ip) -> bytes:
    geneve = struct.pack("!BBHI", 0, 0, 0x6558, 0x000100)
    return bytes(_ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5000, dport=6081)
                 / Raw(geneve + bytes(_ether() / ip)))


ENCAPSULATIONS = {
    # PPPoE with PPP protocol-field compression (RFC 1661 6.5): 0x21 alone means IPv4.
    "pppoe_compressed_protocol": lambda ip: bytes(_ether(type=0x8864) / PPPoE(sessionid=1) / Raw(b"\x21" + bytes(ip))),
    "pppoe": lambda ip: bytes(_ether() / PPPoE(sessionid=1) / PPP(proto=0x0021) / ip),
    "pptp_gre_v1": _pptp,
    "erspan_type2": _erspan2,
    "llc_snap": lambda ip: bytes(Dot3(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                                 / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / ip),
    "gre_v0": lambda ip: bytes(_ether() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x0800) / ip),
    "gtp_u": _gtp_u,
    "geneve": _geneve,
}


@pytest.mark.parametrize("encapsulation", sorted(ENCAPSULATIONS))
def test_encapsulations_the_c_filter_must_admit(tmp_path, encapsulation):
    wrap = ENCAPSULATIONS[encapsulation]
    frames = []
    for i, ip in enumerate(_client_packets("qpay.qq.com")):
        frame = Ether(wrap(ip)) if encapsulation != "llc_snap" else Dot3(wrap(ip))
        frame.time = 1_700_000_000 + i
        frames.append(frame)
    path = tmp_path / f"{encapsulation}.pcap"
    wrpcap(str(path), frames)
    reference = assert_c_path_equals_reference(path)
    assert {("dns_query", "qpay.qq.com"), ("tls_sni", "qpay.qq.com")} <= names(reference)


# --------------------------------------------------------------------------- fuzzed variants

def _mutate(frame: bytes, rnd: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rnd.randint(1, 4)):
        choice = rnd.random()
        if choice < 0.6 and data:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif choice < 0.8 and len(data) > 20:
            del data[rnd.randrange(14, len(data)):]
        else:
            pos = rnd.randrange(len(data) + 1)
            data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
    return bytes(data)


def _pcapng(frames: list[tuple[float, int, bytes]]) -> bytes:
    """A pcapng with one interface per link type (the samples mix link types)."""
    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    interfaces: dict[int, int] = {}
    for ts, linktype, data in frames:
        if linktype not in interfaces:
            interfaces[linktype] = len(interfaces)
            out.append(block(1, struct.pack("<HHI", linktype, 0, 262144)))
        micros = round(ts * 1e6)
        out.append(block(6, struct.pack("<IIIII", interfaces[linktype], micros >> 32, micros & 0xFFFFFFFF,
                                        len(data), len(data)) + data))
    return b"".join(out)


@pytest.mark.parametrize("seed", range(int(os.environ.get("NW_FUZZ_SEEDS", "40"))))
def test_fuzzed_captures(tmp_path, seed):
    """Mutated frames of the sample captures, mixed with their intact originals (NW_FUZZ_SEEDS=400 for more)."""
    from netwatch.capture.files import open_capture

    rnd = random.Random(seed)
    source = SAMPLES[seed % len(SAMPLES)]
    with open_capture(source, flow_filter=FlowFilter(admit_all=True)) as capture:
        frames = [(pkt.ts, pkt.linktype, bytes(pkt.data)) for pkt in capture]
    mutated = [(ts, linktype, _mutate(data, rnd) if rnd.random() < 0.3 else data) for ts, linktype, data in frames]
    path = tmp_path / f"fuzz{seed}.pcapng"
    path.write_bytes(_pcapng(mutated))
    assert_c_path_equals_reference(path)


# --------------------------------------------------------------------------- deferred SYNs

def _dns_answer(name: str, address: str, txid: int) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + qname + b"\x00\x01\x00\x01"
            + b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", 60, 4) + bytes(int(x) for x in address.split(".")))


def test_syn_flood_stays_in_c_and_connections_that_are_evidence_still_reach_python(tmp_path):
    """A SYN flood and a port scan never reach Python; a SYN-only connection to an address a banned
    name resolved to (later in the same read buffer) and one to an address rule are still reported."""
    rnd = random.Random(7)
    client, resolver = "192.0.2.50", "192.0.2.1"
    frames = []
    for i in range(3000):
        frames.append(IP(src=f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", dst="192.0.2.9")
                      / TCP(sport=rnd.randrange(1024, 65535), dport=rnd.randrange(1, 65535), flags="S", seq=i))
    frames.append(IP(src=resolver, dst=client) / UDP(sport=53, dport=41000)
                  / Raw(_dns_answer("qpay.qq.com", "198.51.100.77", 0x4242)))
    frames.append(IP(src=client, dst="198.51.100.77") / TCP(sport=41001, dport=443, flags="S", seq=5))
    frames.append(IP(src=client, dst="119.29.29.99") / TCP(sport=41002, dport=443, flags="S", seq=6))
    for i in range(1000):
        frames.append(IP(src="10.0.0.66", dst="192.0.2.9") / TCP(sport=50000, dport=i + 1, flags="S", seq=i))
    packets = []
    for i, frame in enumerate(frames):
        pkt = _ether() / frame
        pkt.time = 1_700_000_000 + i / 1000
        packets.append(pkt)
    path = tmp_path / "flood.pcap"
    wrpcap(str(path), packets)

    reference = assert_c_path_equals_reference(path)
    evidence = {(json.loads(e)["netwatch"]["evidence"], json.loads(e)["destination"]["ip"]) for e in reference}
    assert ("resolved_ip", "198.51.100.77") in evidence
    assert ("ip_match", "119.29.29.99") in evidence

    flow_filter = FlowFilter()
    summary = scan_paths([str(path)], Pipeline(_SIGSET, emit_all=True), lambda event: None,
                         flow_filter=flow_filter)
    stats = flow_filter.stats()
    assert stats["syn_deferred"] == 4000 + 1  # the flood, the scan and the resolved one (until learnt)
    assert stats["syn_released"] == 1
    assert summary.counters["candidates"] == 3  # the answer and the two evidence SYNs, nothing else
    assert stats["watched_addresses"] == 1 and stats["watched_ranges"] == 3


def test_watch_arguments():
    flow_filter = FlowFilter()
    assert flow_filter.watch_address("198.51.100.1") is True
    assert flow_filter.watch_address("2001:db8::1") is True
    assert flow_filter.watch_address("not an address") is False
    assert flow_filter.watch_address("::") is False
    with pytest.raises(ValueError):
        flow_filter.watch([(b"\x00" * 4, b"\xff" * 4)])
    with pytest.raises(ValueError):
        flow_filter.watch([(b"\xff" * 16, b"\x00" * 16)])
    with pytest.raises(TypeError):
        flow_filter.watch([b"\x00" * 16])
    flow_filter.watch([])
    assert flow_filter.stats()["watched_addresses"] == 2
    assert flow_filter.release_held("198.51.100.1", 0) == []
