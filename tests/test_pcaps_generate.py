"""The bundled sample captures: deterministic, committed as generated, and truthful.

Every ground-truth entry is checked against the packets with parsers that are not the
generator's own: dnspython for DNS, aioquic's TLS parser for ClientHellos (after TCP
reassembly here, or after aioquic's server-side Initial decryption for QUIC), scapy for DHCP,
and, when tshark is installed, tshark's own dissection of every file.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import shutil
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

import dns.message
import pytest
from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.tls import pull_client_hello
from scapy.layers.dhcp import DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
SAMPLES = ("office-lan.pcap", "clean.pcap", "mixed-links.pcapng", "truncated.pcap")
DOC_NETS = [ipaddress.ip_network(n) for n in
            ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
DHCP_ADDRESSES = {ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("255.255.255.255")}


@cache
def generator():
    spec = importlib.util.spec_from_file_location("pcaps_generate", PCAPS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@cache
def built() -> dict[str, bytes]:
    return generator().build_all()


def truth(name: str) -> dict:
    return json.loads((PCAPS / name).read_text())


# ----------------------------------------------------------------------------- readers


def read_pcap(data: bytes) -> list[tuple[float, bytes]]:
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and linktype == 1
    records, offset = [], 24
    while offset + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, offset)
        if offset + 16 + caplen > len(data):
            break
        records.append((sec + usec / 1e6, data[offset + 16:offset + 16 + caplen]))
        offset += 16 + caplen
    return records


def read_pcapng(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[float, int, bytes]]]:
    """(linktype, tsresol exponent) per interface, and (ts, interface, frame) per EPB."""
    interfaces, packets, offset = [], [], 0
    while offset < len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        body = data[offset + 8:offset + length - 4]
        if block_type == 1:
            linktype = struct.unpack_from("<H", body)[0]
            exponent, pos = 6, 8
            while pos + 4 <= len(body):
                code, size = struct.unpack_from("<HH", body, pos)
                if code == 9:
                    exponent = body[pos + 4]
                pos += 4 + size + (-size % 4)
            interfaces.append((linktype, exponent))
        elif block_type == 6:
            iface, high, low, caplen, _ = struct.unpack_from("<IIIII", body)
            ts = ((high << 32) | low) / 10 ** interfaces[iface][1]
            packets.append((ts, iface, body[20:20 + caplen]))
        offset += length
    return interfaces, packets


def network_layer(linktype: int, frame: bytes) -> Packet:
    """The IP packet of a frame of any link type used in the samples, with scapy."""
    if linktype == 1:
        return Ether(frame)
    if linktype == 276:  # SLL2: 20-byte header, protocol type first
        protocol = struct.unpack_from("!H", frame)[0]
        return IP(frame[20:]) if protocol == 0x0800 else IPv6(frame[20:])
    assert linktype == 101
    return IP(frame) if frame[0] >> 4 == 4 else IPv6(frame)


def office_packets() -> list[Packet]:
    return [Ether(frame) for _, frame in read_pcap((PCAPS / "office-lan.pcap").read_bytes())]


def ip_of(packet: Packet):
    return packet[IP] if IP in packet else packet[IPv6]


def client_hello_from_tcp(packets: list[Packet], frames: list[int]):
    """Reassemble the listed TCP segments by sequence number (any capture order), parse the hello."""
    segments = sorted((packets[n - 1][TCP].seq, bytes(packets[n - 1][TCP].payload)) for n in frames)
    stream = b"".join(payload for _, payload in segments)
    assert stream[0] == 22, "not a TLS handshake record"
    return pull_client_hello(Buffer(data=stream[5:]))


def client_hello_from_quic(datagrams: list[bytes]):
    """Decrypt client Initials as a server would (aioquic) and reassemble the CRYPTO stream."""
    crypto_data: dict[int, bytes] = {}
    for datagram in datagrams:
        dcid = datagram[6:6 + datagram[5]]
        server = CryptoPair()
        server.setup_initial(dcid, is_client=False, version=1)
        pos = 6 + len(dcid)
        pos += 1 + datagram[pos]  # scid
        pos += 1  # token length 0
        pos += 2  # 2-byte Length
        _, payload, _ = server.decrypt_packet(datagram, pos, 0)
        buf = Buffer(data=payload)
        while not buf.eof():
            frame_type = buf.pull_uint_var()
            if frame_type == 0:
                continue
            assert frame_type == 6, f"unexpected frame {frame_type}"
            offset, length = buf.pull_uint_var(), buf.pull_uint_var()
            crypto_data[offset] = buf.pull_bytes(length)
    stream = b"".join(crypto_data[k] for k in sorted(crypto_data))
    return pull_client_hello(Buffer(data=stream))


# ----------------------------------------------------------------------------- tests


def test_generator_is_deterministic():
    assert generator().build_all() == built()


@pytest.mark.parametrize("name", SAMPLES + tuple(s.split(".")[0] + ".truth.json" for s in SAMPLES))
def test_committed_file_matches_generator(name):
    assert (PCAPS / name).read_bytes() == built()[name], f"pcaps/{name} is stale: run python pcaps/generate.py"


def test_generator_writes_to_out_dir(tmp_path):
    assert generator().main(["--out-dir", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == set(built())
    assert set(built()) == set(SAMPLES) | {s.split(".")[0] + ".truth.json" for s in SAMPLES}
    assert (tmp_path / "office-lan.pcap").read_bytes() == built()["office-lan.pcap"]


@pytest.mark.parametrize("name", SAMPLES)
def test_only_documentation_addresses(name):
    data = (PCAPS / name).read_bytes()
    if name.endswith(".pcapng"):
        interfaces, records = read_pcapng(data)
        packets = [network_layer(interfaces[iface][0], frame) for _, iface, frame in records]
    else:
        packets = [Ether(frame) for _, frame in read_pcap(data)]
    assert packets
    for packet in packets:
        layer = ip_of(packet)
        for address in (ipaddress.ip_address(layer.src), ipaddress.ip_address(layer.dst)):
            assert address in DHCP_ADDRESSES or any(address in net for net in DOC_NETS), address


def test_office_lan_truth_matches_packets():
    packets = office_packets()
    document = truth("office-lan.truth.json")
    assert document["frames"] == len(packets)
    answers: dict[str, set[str]] = {}
    seen = set()
    for item in document["observations"]:
        seen.add(item["evidence"])
        first = packets[item["frames"][0] - 1]
        assert first[Ether].src == item["source_mac"]
        if item["evidence"] == "dhcp_hostname":
            options = dict(o for o in first[DHCP].options if isinstance(o, tuple))
            assert options["hostname"].decode() == item["name"]
            assert options.get("vendor_class_id", b"").decode() == (item["vendor_class"] or "")
            continue
        assert ip_of(first).src == item["source_ip"] and ip_of(first).dst == item["destination_ip"]
        payload = bytes(first[UDP].payload if UDP in first else first[TCP].payload)
        if item["evidence"] == "dns_query":
            message = dns.message.from_wire(payload)
            assert message.question[0].name.to_text() == item["name"] + "."
            answers.setdefault(item["name"], set()).update(item["answers"])
        elif item["evidence"] in ("tls_sni", "encrypted_dns", "ech"):
            hello = client_hello_from_tcp(packets, item["frames"])
            assert hello.server_name == item["name"]
            has_ech = any(ext == 0xFE0D for ext, _ in hello.other_extensions)
            assert has_ech == (item["evidence"] == "ech")
        elif item["evidence"] == "quic_sni":
            datagrams = [bytes(packets[n - 1][UDP].payload) for n in item["frames"]]
            assert client_hello_from_quic(datagrams).server_name == item["name"]
        elif item["evidence"] == "http_host":
            assert f"\r\nHost: {item['name']}\r\n".encode() in payload
        elif item["evidence"] == "resolved_ip":
            hello = client_hello_from_tcp(packets, item["frames"])
            assert hello.server_name is None
            assert item["destination_ip"] in answers[item["name"]]
        else:
            pytest.fail(f"unknown evidence {item['evidence']}")
    assert seen == {"dhcp_hostname", "dns_query", "tls_sni", "quic_sni", "http_host", "encrypted_dns", "ech",
                    "resolved_ip"}


def test_office_lan_split_and_reordered_hellos():
    packets = office_packets()
    by_name = {(o["evidence"], o["name"]): o for o in truth("office-lan.truth.json")["observations"]}
    split = by_name[("tls_sni", "v4.camscanner.com")]["frames"]
    assert len(split) == 2 and b"v4.camscanner.com" in bytes(packets[split[1] - 1][TCP].payload)
    assert b"v4.camscanner.com" not in bytes(packets[split[0] - 1][TCP].payload)
    reordered = by_name[("tls_sni", "qpay.qq.com")]["frames"]
    first, second = (packets[n - 1][TCP] for n in reordered)
    assert first.seq > second.seq  # captured in the wrong order
    for evidence_name in by_name:
        if evidence_name[0] == "tls_sni":  # every TLS flow starts with a three-way handshake
            frame = by_name[evidence_name]["frames"][0]
            flags = [str(packets[n][TCP].flags) for n in range(frame - 4, frame - 1) if TCP in packets[n]]
            assert "S" in flags and "SA" in flags


def test_office_lan_devices():
    devices = truth("office-lan.truth.json")["devices"]
    assert devices["a4:c3:f0:5e:11:0a"]["hostname"] == "alice-laptop"
    assert devices["8c:77:12:9a:50:0d"]["vendor_class"] == "android-dhcp-13"
    assert sorted(devices["f0:18:98:21:7c:0c"]["apps"]) == ["qq_wallet", "tencent_qq", "wechat_pay"]
    assert devices["00:14:22:3c:40:0b"]["apps"] == ["wechat_pay"]  # v.qq.com is not an app


def test_mixed_links_interfaces_and_truth():
    interfaces, records = read_pcapng((PCAPS / "mixed-links.pcapng").read_bytes())
    assert interfaces == [(1, 6), (276, 9), (101, 6)]
    assert {iface for _, iface, _ in records} == {0, 1, 2}
    document = truth("mixed-links.truth.json")
    assert len(records) == document["frames"]
    assert abs(records[0][0] - document["first_timestamp"]) < 1e-6
    packets = [network_layer(interfaces[iface][0], frame) for _, iface, frame in records]
    by_name = {(o["evidence"], o["name"]): o for o in document["observations"]}
    pipelined = packets[by_name[("dns_query", "myun.tenpay.com")]["frame"] - 1]
    stream = bytes(pipelined[TCP].payload)
    first_length = struct.unpack_from("!H", stream)[0]
    names = [dns.message.from_wire(part).question[0].name.to_text()
             for part in (stream[2:2 + first_length], stream[4 + first_length:])]
    assert names == ["myun.tenpay.com.", "publicdata.vmate.in."]
    fragments = [packets[n - 1] for n in by_name[("dns_response_fragmented", "mclient.alipay.com")]["frames"]]
    assert len(fragments) >= 2 and fragments[0][IP].flags.MF and fragments[-1][IP].frag > 0
    quic = by_name[("quic_sni", "api2.wechatpay.cn")]
    datagrams = [bytes(packets[n - 1][UDP].payload) for n in quic["frames"]]
    assert len(datagrams) == 2
    assert client_hello_from_quic(datagrams).server_name == "api2.wechatpay.cn"


def test_truncated_is_cut_mid_record():
    data = (PCAPS / "truncated.pcap").read_bytes()
    document = truth("truncated.truth.json")
    assert (PCAPS / "office-lan.pcap").read_bytes().startswith(data) and len(data) == document["file_size"]
    assert len(read_pcap(data)) == document["complete_records"]
    offset = document["truncated_record_offset"]
    caplen = struct.unpack_from("<I", data, offset + 8)[0]
    assert offset + 16 < len(data) < offset + 16 + caplen
    assert any(item["banned"] for item in document["observations"])


def test_clean_has_no_banned_app():
    document = truth("clean.truth.json")
    assert document["expected_exit_status"] == 0
    assert document["observations"] and not any(item["banned"] for item in document["observations"])


def tshark_names(path: Path) -> set[tuple[str, str]]:
    fields = ["ip.src", "ipv6.src", "dns.qry.name", "tls.handshake.extensions_server_name", "http.host"]
    command = ["tshark", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE", "-T", "fields",
               "-E", "occurrence=a", "-Y", "(dns && dns.flags.response == 0) || tls.handshake.type == 1 "
               "|| http.request"]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    found = set()
    for line in output.splitlines():
        ip4, ip6, *names = line.split("\t")
        for value in names:
            for name in filter(None, value.split(",")):
                found.add((ip4 or ip6, name))
    return found


@pytest.mark.system
@pytest.mark.parametrize("name", ["office-lan", "mixed-links", "clean"])
def test_tshark_sees_exactly_the_planted_names(name):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    capture = next(PCAPS.glob(f"{name}.pcap*"))
    document = truth(f"{name}.truth.json")
    planted = {(o["source_ip"], o["name"]) for o in document["observations"]
               if o["evidence"] in ("dns_query", "tls_sni", "quic_sni", "http_host", "encrypted_dns", "ech")}
    assert tshark_names(capture) == planted
