#!/usr/bin/env python3
"""Regenerate the small sample captures in pcaps/ and their ground-truth files.

    python pcaps/generate.py [--out-dir DIR]

Everything is deterministic (fixed timestamps, MACs, addresses, ports, sequence numbers,
and "random" bytes derived with SHAKE-256 from a label), so running this twice writes
byte-identical files and tests can check the committed samples against it.

Only documentation address ranges are used: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24
(RFC 5737) and 2001:db8::/32 (RFC 3849). MAC OUIs are real vendor prefixes (from Wireshark's
`manuf` file) so vendor lookup has something to find.

Packets are crafted with scapy (Ethernet/IP/TCP/UDP/DNS/DHCP). TLS ClientHellos are built
field by field after RFC 8446 section 4.1.2, shaped like a current Chrome hello
(GREASE, X25519MLKEM768 key share that pushes it past one MSS). QUIC Initials use aioquic's
Initial packet protection (RFC 9001 section 5) and aioquic's transport-parameter encoder.

The helpers at the top (ClientHello, QUIC Initial, pcap/pcapng writers, TCP conversations)
are also imported by benchmarks/gen_capture.py.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicTransportParameters, push_quic_transport_parameters
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

PCAPS_DIR = Path(__file__).resolve().parent

# 2026-01-05 09:00:00 UTC, the start of every sample.
START_TS = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC).timestamp()

# LINKTYPE_* values, https://www.tcpdump.org/linktypes.html
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL2 = 276

QUIC_V1 = 0x00000001  # RFC 9000

# App ids of the eight EO 13971 apps, as the signature set names them; hostnames and their
# app come from /work/shared/research/signatures.md (sources cited there).
APP_OF = {
    "mobilegw.alipay.com": "alipay",
    "mclient.alipay.com": "alipay",
    "api.mch.weixin.qq.com": "wechat_pay",
    "pay.weixin.qq.com": "wechat_pay",
    "api2.wechatpay.cn": "wechat_pay",
    "msfwifi.3g.qq.com": "tencent_qq",
    "qpay.qq.com": "qq_wallet",
    "myun.tenpay.com": "qq_wallet",
    "v4.camscanner.com": "camscanner",
    "www.camscanner.com": "camscanner",
    "api.dalyfeds.com": "shareit",
    "account.wps.cn": "wps_office",
    "dl.wps.cn": "wps_office",
    "vip.wps.cn": "wps_office",
    "publicdata.vmate.in": "vmate",
}


# --------------------------------------------------------------------------- bytes helpers


def det_bytes(label: str, length: int) -> bytes:
    """Stable pseudo-random bytes for `label` (SHAKE-256 gives the same output everywhere)."""
    return hashlib.shake_256(label.encode()).digest(length)


def det_int(label: str, bits: int = 32) -> int:
    return int.from_bytes(det_bytes(label, bits // 8), "big")


def _u8(value: int) -> bytes:
    return struct.pack("!B", value)


def _u16(value: int) -> bytes:
    return struct.pack("!H", value)


def _vec8(data: bytes) -> bytes:
    return _u8(len(data)) + data


def _vec16(data: bytes) -> bytes:
    return _u16(len(data)) + data


def _u24(value: int) -> bytes:
    return struct.pack("!I", value)[1:]


# --------------------------------------------------------------------------- TLS ClientHello

# Values from the IANA TLS registries (RFC 8446, RFC 8701 GREASE, draft-ietf-tls-ecdhe-mlkem).
GREASE = 0x0A0A
GROUP_X25519 = 0x001D
GROUP_X25519MLKEM768 = 0x11EC
MLKEM768_X25519_SHARE_LEN = 1184 + 32  # ML-KEM-768 encapsulation key + X25519 share
EXT_SERVER_NAME = 0x0000
EXT_ECH = 0xFE0D  # draft-ietf-tls-esni
EXT_QUIC_TRANSPORT_PARAMETERS = 0x0039  # RFC 9001 section 8.2
CHROME_CIPHERS = (GREASE, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030,
                  0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035)


def _ext(ext_type: int, data: bytes) -> bytes:
    return _u16(ext_type) + _vec16(data)


def sni_extension(server_name: str) -> bytes:
    """server_name extension (RFC 6066 section 3) with one host_name entry."""
    name = server_name.encode("ascii")
    return _ext(EXT_SERVER_NAME, _vec16(b"\x00" + _vec16(name)))


def client_hello(
    server_name: str | None,
    label: str,
    *,
    alpn: Sequence[bytes] = (b"h2", b"http/1.1"),
    post_quantum: bool = False,
    sni_last: bool = False,
    ech: bool = False,
    quic_transport_parameters: bytes | None = None,
) -> bytes:
    """A ClientHello handshake message (type 1, 3-byte length, body), Chrome-like.

    `post_quantum` adds an X25519MLKEM768 key share, which makes the hello about 1.8 KB, more
    than one TCP MSS or one QUIC packet. `sni_last` puts server_name at the end so it lands in
    the second segment. `ech` adds an outer encrypted_client_hello extension (the real name is
    then hidden and `server_name` is the public outer name). For QUIC pass the encoded
    transport parameters; TLS 1.2 is then not offered and the legacy session id is empty.
    """
    quic = quic_transport_parameters is not None
    groups = [GREASE] + ([GROUP_X25519MLKEM768] if post_quantum else []) + [GROUP_X25519, 0x0017, 0x0018]
    shares = _u16(GREASE) + _vec16(b"\x00")
    if post_quantum:
        shares += _u16(GROUP_X25519MLKEM768) + _vec16(det_bytes(label + "/mlkem", MLKEM768_X25519_SHARE_LEN))
    shares += _u16(GROUP_X25519) + _vec16(det_bytes(label + "/x25519", 32))
    versions = b"\x0a\x0a\x03\x04" + (b"" if quic else b"\x03\x03")
    sigalgs = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)

    extensions = [
        _ext(GREASE, b""),
        _ext(0x0017, b""),  # extended_master_secret
        _ext(0xFF01, b"\x00"),  # renegotiation_info
        _ext(0x000A, _vec16(b"".join(_u16(g) for g in groups))),  # supported_groups
        _ext(0x000B, b"\x01\x00"),  # ec_point_formats
        _ext(0x0023, b""),  # session_ticket
        _ext(0x0010, _vec16(b"".join(_vec8(p) for p in alpn))),  # ALPN
        _ext(0x0005, b"\x01\x00\x00\x00\x00"),  # status_request (OCSP)
        _ext(0x000D, _vec16(b"".join(_u16(s) for s in sigalgs))),  # signature_algorithms
        _ext(0x0012, b""),  # signed_certificate_timestamp
        _ext(0x0033, _vec16(shares)),  # key_share
        _ext(0x002D, b"\x01\x01"),  # psk_key_exchange_modes: psk_dhe_ke
        _ext(0x002B, _vec8(versions)),  # supported_versions
        _ext(0x001B, b"\x02\x00\x02"),  # compress_certificate: brotli
    ]
    if quic_transport_parameters is not None:
        extensions.append(_ext(EXT_QUIC_TRANSPORT_PARAMETERS, quic_transport_parameters))
    if ech:
        # ECHClientHello outer: type 0, HPKE suite (HKDF-SHA256, AES-128-GCM), config id, enc, payload.
        payload = det_bytes(label + "/ech-payload", 208)
        extensions.append(_ext(EXT_ECH, b"\x00" + _u16(1) + _u16(1) + _u8(det_bytes(label, 1)[0])
                               + _vec16(det_bytes(label + "/ech-enc", 32)) + _vec16(payload)))
    if server_name is not None:
        position = len(extensions) if sni_last else 1
        extensions.insert(position, sni_extension(server_name))
    extensions.append(_ext(0x1A1A, b"\x00"))  # trailing GREASE, as Chrome does

    head = (
        b"\x03\x03"
        + det_bytes(label + "/random", 32)
        + _vec8(b"" if quic else det_bytes(label + "/session", 32))
        + _vec16(b"".join(_u16(c) for c in CHROME_CIPHERS))
        + b"\x01\x00"
    )
    unpadded = 4 + len(head) + 2 + sum(map(len, extensions))
    if not quic and 0xFF < unpadded < 0x200:
        # BoringSSL's padding extension (RFC 7685): hellos of 256-511 bytes are padded to 512.
        missing = 0x200 - unpadded
        extensions.insert(-1, _ext(0x0015, bytes(missing - 4 if missing >= 5 else 1)))
    body = head + _vec16(b"".join(extensions))
    return b"\x01" + _u24(len(body)) + body


def tls_record(handshake: bytes, content_type: int = 22) -> bytes:
    """One TLS record (RFC 8446 section 5.1) with the 0x0301 legacy version clients use."""
    return _u8(content_type) + b"\x03\x01" + _vec16(handshake)


def tls_server_flight(label: str, length: int = 1200) -> bytes:
    """ServerHello-ish bytes followed by encrypted records: opaque to netwatch, realistic sizes."""
    hello = b"\x02" + _u24(86) + det_bytes(label + "/server-hello", 86)
    return tls_record(hello) + tls_record(b"\x01", 20) + tls_record(det_bytes(label + "/enc", length), 23)


# --------------------------------------------------------------------------- QUIC Initial


def _varint(value: int) -> bytes:
    """QUIC variable-length integer (RFC 9000 section 16)."""
    buf = Buffer(capacity=8)
    buf.push_uint_var(value)
    return buf.data


def quic_transport_parameters(scid: bytes) -> bytes:
    buf = Buffer(capacity=512)
    params = QuicTransportParameters(
        initial_source_connection_id=scid,
        max_idle_timeout=30_000,
        initial_max_data=15_728_640,
        initial_max_stream_data_bidi_local=6_291_456,
        initial_max_stream_data_bidi_remote=6_291_456,
        initial_max_stream_data_uni=6_291_456,
        initial_max_streams_bidi=100,
        initial_max_streams_uni=103,
        max_udp_payload_size=1472,
    )
    push_quic_transport_parameters(buf, params)
    return buf.data


def quic_initial_datagrams(
    server_name: str,
    label: str,
    *,
    post_quantum: bool = False,
    version: int = QUIC_V1,
    datagram_size: int = 1250,
) -> list[bytes]:
    """Client Initial datagrams carrying a ClientHello for `server_name`, protected by aioquic.

    Without `post_quantum` the hello fits one Initial packet. With it the ~1.8 KB hello is
    split into two CRYPTO frames over two Initial packets (packet numbers 0 and 1), as
    Chrome does; the caller may send them in any order. Each datagram is padded to
    `datagram_size` (RFC 9000 section 14.1 requires at least 1200).
    """
    dcid = det_bytes(label + "/dcid", 8)
    scid = det_bytes(label + "/scid", 8)
    hello = client_hello(server_name, label, alpn=(b"h3",), post_quantum=post_quantum,
                         quic_transport_parameters=quic_transport_parameters(scid))
    half = (len(hello) + 1) // 2 if post_quantum else len(hello)
    chunks = [(0, hello[:half])] + ([(half, hello[half:])] if half < len(hello) else [])
    crypto = CryptoPair()
    crypto.setup_initial(dcid, is_client=True, version=version)
    datagrams = []
    for packet_number, (offset, chunk) in enumerate(chunks):
        frame = b"\x06" + _varint(offset) + _varint(len(chunk)) + chunk  # CRYPTO frame
        pn_length = 4
        header_without_length = (
            _u8(0xC0 | (pn_length - 1)) + struct.pack("!I", version)
            + _vec8(dcid) + _vec8(scid) + _varint(0)  # no token
        )
        overhead = len(header_without_length) + 2 + pn_length + 16  # 2-byte Length varint, AEAD tag
        padding = max(0, datagram_size - overhead - len(frame))
        payload = frame + b"\x00" * padding  # PADDING frames
        length = pn_length + len(payload) + 16
        header = header_without_length + struct.pack("!H", 0x4000 | length) + struct.pack("!I", packet_number)
        datagrams.append(crypto.encrypt_packet(header, payload, packet_number))
    return datagrams


# --------------------------------------------------------------------------- file writers


def pcap_bytes(records: Iterable[tuple[float, bytes]], linktype: int, snaplen: int = 262144) -> bytes:
    """A classic little-endian, microsecond pcap file (https://www.tcpdump.org/manpages/pcap-savefile.5.html)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data in records:
        micros = round(ts * 1_000_000)
        out.append(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(data), len(data)))
        out.append(data)
    return b"".join(out)


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _pcapng_option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


@dataclass(frozen=True)
class Interface:
    linktype: int
    name: str
    tsresol_exp: int = 6  # timestamps in units of 10**-tsresol_exp seconds


def pcapng_bytes(interfaces: Sequence[Interface], records: Iterable[tuple[float, int, bytes]]) -> bytes:
    """A little-endian pcapng file: SHB, one IDB per interface, one EPB per (ts, interface, frame).

    Block layouts from draft-ietf-opsawg-pcapng (section 4.1 SHB, 4.2 IDB, 4.3 EPB).
    """
    shb_options = _pcapng_option(4, b"netwatch pcaps/generate.py") + _pcapng_option(0, b"")  # shb_userappl
    out = [_pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_options)]
    for iface in interfaces:
        options = _pcapng_option(2, iface.name.encode())  # if_name
        if iface.tsresol_exp != 6:
            options += _pcapng_option(9, _u8(iface.tsresol_exp))  # if_tsresol
        options += _pcapng_option(0, b"")
        out.append(_pcapng_block(0x00000001, struct.pack("<HHI", iface.linktype, 0, 262144) + options))
    for ts, iface_id, data in records:
        # Integer arithmetic from whole microseconds: float ts * 1e9 would lose nanoseconds.
        units = round(ts * 1_000_000) * 10 ** interfaces[iface_id].tsresol_exp // 1_000_000
        head = struct.pack("<IIIII", iface_id, units >> 32, units & 0xFFFFFFFF, len(data), len(data))
        out.append(_pcapng_block(0x00000006, head + data))
    return b"".join(out)


def sll2_header(protocol: int, mac: str, ifindex: int = 2, packet_type: int = 4) -> bytes:
    """Linux cooked capture v2 header (https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html).

    packet_type 4 = sent by us (outgoing), 0 = to us; ARPHRD_ETHER = 1.
    """
    address = bytes.fromhex(mac.replace(":", "")) + b"\x00\x00"
    return struct.pack("!HHIHBB", protocol, 0, ifindex, 1, packet_type, 6) + address


# --------------------------------------------------------------------------- packet recorder


@dataclass(frozen=True)
class Endpoint:
    mac: str
    ip: str


@dataclass
class Recorder:
    """Collects frames with a running clock and the ground truth planted in them."""

    ts: float = START_TS
    frames: list[tuple[float, int, bytes]] = field(default_factory=list)  # (ts, interface, frame)
    truth: list[dict] = field(default_factory=list)
    ip_id: int = 0x1000

    def add(self, frame: bytes, gap: float = 0.0004, interface: int = 0) -> int:
        """Append a frame `gap` seconds after the previous one; returns its 1-based frame number."""
        self.ts += gap
        self.frames.append((round(self.ts, 6), interface, frame))
        return len(self.frames)

    def next_ip_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id

    def plant(self, evidence: str, name: str | None, src: Endpoint, dst_ip: str, dst_port: int,
              transport: str, frames: Sequence[int], **extra: object) -> None:
        """Record one thing netwatch must report (client side of the exchange)."""
        app = APP_OF.get(name or "")
        self.truth.append({
            "frame": frames[-1] if frames else None, "frames": list(frames), "evidence": evidence,
            "name": name, "app": app, "banned": app is not None, "source_ip": src.ip,
            "source_mac": src.mac, "destination_ip": dst_ip, "destination_port": dst_port,
            "transport": transport, **extra,
        })

    def pcap_records(self) -> list[tuple[float, bytes]]:
        return [(ts, frame) for ts, _, frame in self.frames]


def link_layer(src_mac: str, dst_mac: str, vlans: Sequence[int] = ()):
    """Ethernet header with optional 802.1Q (one tag) or QinQ (802.1ad outer + 802.1Q inner) tags."""
    layer = Ether(src=src_mac, dst=dst_mac)
    if len(vlans) == 1:
        layer = layer / Dot1Q(vlan=vlans[0])
    elif len(vlans) == 2:
        layer = layer / Dot1AD(vlan=vlans[0]) / Dot1Q(vlan=vlans[1])
    return layer


def ip_layer(rec: Recorder, src_ip: str, dst_ip: str, ttl: int = 64):
    if ":" in src_ip:
        return IPv6(src=src_ip, dst=dst_ip, hlim=ttl)
    return IP(src=src_ip, dst=dst_ip, id=rec.next_ip_id(), flags="DF", ttl=ttl)


def udp_frame(rec: Recorder, src: Endpoint, dst: Endpoint, sport: int, dport: int, payload: bytes,
              vlans: Sequence[int] = ()) -> bytes:
    return bytes(link_layer(src.mac, dst.mac, vlans) / ip_layer(rec, src.ip, dst.ip)
                 / UDP(sport=sport, dport=dport) / payload)


class TcpConversation:
    """One TCP connection between a client and a server, emitted as Ethernet frames.

    Sequence numbers, ACKs and the three-way handshake are consistent, so a tool that
    reassembles TCP (tshark, Zeek, netwatch) sees a real stream.
    """

    MSS = 1460

    def __init__(self, rec: Recorder, client: Endpoint, server: Endpoint, sport: int, dport: int,
                 label: str, vlans: Sequence[int] = (), interface: int = 0) -> None:
        self.rec, self.client, self.server = rec, client, server
        self.sport, self.dport, self.vlans, self.interface = sport, dport, vlans, interface
        self.client_seq = det_int(label + "/cisn")
        self.server_seq = det_int(label + "/sisn")

    def _frame(self, from_client: bool, flags: str, seq: int, ack: int, payload: bytes = b"",
               options: Sequence[tuple] = ()) -> bytes:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        tcp = TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags,
                  window=502 if from_client else 509, options=list(options))
        return bytes(link_layer(src.mac, dst.mac, self.vlans) / ip_layer(self.rec, src.ip, dst.ip) / tcp
                     / payload)

    def _add(self, frame: bytes, gap: float) -> int:
        return self.rec.add(frame, gap, self.interface)

    def handshake(self, rtt: float = 0.012) -> list[int]:
        syn_options = [("MSS", self.MSS), ("SAckOK", b""), ("WScale", 7)]
        frames = [self._add(self._frame(True, "S", self.client_seq, 0, options=syn_options), 0.001)]
        self.client_seq += 1
        frames.append(self._add(self._frame(False, "SA", self.server_seq, self.client_seq,
                                            options=syn_options), rtt))
        self.server_seq += 1
        frames.append(self._add(self._frame(True, "A", self.client_seq, self.server_seq), 0.0002))
        return frames

    def segments(self, data: bytes, cuts: Sequence[int] = ()) -> list[tuple[int, bytes]]:
        """(offset, bytes) pieces of `data` cut at `cuts` and wherever a piece would exceed the MSS."""
        bounds = sorted({0, *cuts, len(data)})
        pieces = []
        for start, end in itertools.pairwise(bounds):
            pieces.extend((pos, data[pos:min(pos + self.MSS, end)]) for pos in range(start, end, self.MSS))
        return pieces

    def client_send(self, data: bytes, cuts: Sequence[int] = (), order: Sequence[int] | None = None,
                    ack: bool = True) -> list[int]:
        """Send `data` cut at the byte offsets `cuts` (plus MSS limits), segments in `order`."""
        pieces = self.segments(data, cuts)
        order = range(len(pieces)) if order is None else order
        frames = []
        for index in order:
            pos, piece = pieces[index]
            frames.append(self._add(self._frame(True, "PA", self.client_seq + pos, self.server_seq, piece),
                                    0.0003))
        self.client_seq += len(data)
        if ack:
            self._add(self._frame(False, "A", self.server_seq, self.client_seq), 0.011)
        return frames

    def server_send(self, data: bytes, ack_every: int = 2) -> list[int]:
        """Bulk from the server in MSS-sized segments; the client ACKs every `ack_every` segments."""
        frames = []
        for count, pos in enumerate(range(0, len(data), self.MSS), start=1):
            piece = data[pos:pos + self.MSS]
            frames.append(self._add(self._frame(False, "PA" if pos + self.MSS >= len(data) else "A",
                                                self.server_seq + pos, self.client_seq, piece), 0.0002))
            if count % ack_every == 0 or pos + self.MSS >= len(data):
                self._add(self._frame(True, "A", self.client_seq, self.server_seq + pos + len(piece)),
                          0.0001)
        self.server_seq += len(data)
        return frames

    def close(self) -> None:
        self._add(self._frame(True, "FA", self.client_seq, self.server_seq), 0.002)
        self.client_seq += 1
        self._add(self._frame(False, "FA", self.server_seq, self.client_seq), 0.011)
        self.server_seq += 1
        self._add(self._frame(True, "A", self.client_seq, self.server_seq), 0.0002)


def dns_query(name: str, qtype: str, txid: int) -> bytes:
    return bytes(DNS(id=txid, rd=1, qd=[DNSQR(qname=name, qtype=qtype)]))


def dns_response(name: str, qtype: str, txid: int, answers: Sequence[str], ttl: int = 300) -> bytes:
    records = [DNSRR(rrname=name, type=qtype, ttl=ttl, rdata=address) for address in answers]
    return bytes(DNS(id=txid, qr=1, rd=1, ra=1, qd=[DNSQR(qname=name, qtype=qtype)], an=records))


def http_get(host: str, path: str, user_agent: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
            "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n").encode()


def http_response(label: str, body_length: int) -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {body_length}"
            "\r\nConnection: keep-alive\r\n\r\n").encode() + det_bytes(label + "/body", body_length)


# --------------------------------------------------------------------------- the office LAN

ROUTER = Endpoint("00:1d:d8:b7:1c:01", "192.0.2.1")  # also the LAN's DNS resolver
ROUTER6 = Endpoint(ROUTER.mac, "2001:db8:0:1::1")
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Device:
    mac: str
    ip: str
    hostname: str
    vendor_class: str | None
    oui_vendor: str  # Wireshark manuf short name for the OUI
    ip6: str | None = None

    @property
    def v4(self) -> Endpoint:
        return Endpoint(self.mac, self.ip)

    @property
    def v6(self) -> Endpoint:
        assert self.ip6 is not None
        return Endpoint(self.mac, self.ip6)


ALICE = Device("a4:c3:f0:5e:11:0a", "192.0.2.10", "alice-laptop", "MSFT 5.0", "IntelCor")
RECEPTION = Device("00:14:22:3c:40:0b", "192.0.2.11", "reception-pc", "MSFT 5.0", "Dell")
# iPhones send no option 60, so this device shows that a missing vendor class is normal.
BOB = Device("f0:18:98:21:7c:0c", "192.0.2.12", "bob-iphone", None, "Apple", ip6="2001:db8:0:1::12")
KIOSK = Device("8c:77:12:9a:50:0d", "192.0.2.13", "kiosk-android", "android-dhcp-13", "SamsungE")
GUEST = Device("28:16:ad:0f:33:0e", "192.0.2.14", "guest-laptop", "MSFT 5.0", "IntelCor")
OFFICE_DEVICES = (ALICE, RECEPTION, BOB, KIOSK, GUEST)

# Where every name resolves: documentation addresses only.
ADDRESSES = {
    "mobilegw.alipay.com": "203.0.113.10",
    "mclient.alipay.com": "203.0.113.11",
    "api.mch.weixin.qq.com": "203.0.113.20",
    "msfwifi.3g.qq.com": "203.0.113.30",
    "qpay.qq.com": "203.0.113.40",
    "myun.tenpay.com": "203.0.113.41",
    "v4.camscanner.com": "203.0.113.50",
    "www.camscanner.com": "203.0.113.51",
    "api.dalyfeds.com": "203.0.113.60",
    "account.wps.cn": "203.0.113.70",
    "dl.wps.cn": "203.0.113.71",
    "vip.wps.cn": "203.0.113.72",
    "pay.weixin.qq.com": "203.0.113.80",
    "api2.wechatpay.cn": "203.0.113.81",
    "publicdata.vmate.in": "203.0.113.90",
    "www.example.com": "198.51.100.10",
    "update.microsoft.com": "198.51.100.20",
    "v.qq.com": "198.51.100.30",
    "www.wikipedia.org": "198.51.100.40",
    "dns.google": "198.51.100.53",
    "cloudflare-ech.com": "198.51.100.60",
    "www.debian.org": "198.51.100.70",
}
ADDRESSES6 = {
    "msfwifi.3g.qq.com": "2001:db8:ffff::30",
    "www.camscanner.com": "2001:db8:ffff::51",
    "api2.wechatpay.cn": "2001:db8:ffff::81",
    "www.wikipedia.org": "2001:db8:ffff::40",
}
NOTES = {
    "v.qq.com": "Tencent Video: a qq.com neighbour of Tencent QQ, not a banned app; low tier at most, "
                "no alert",
    "api.mch.weixin.qq.com": "merchant server-to-server API (role merchant-server)",
}


def server(name: str, v6: bool = False) -> Endpoint:
    return Endpoint(ROUTER.mac, ADDRESSES6[name] if v6 else ADDRESSES[name])


def dhcp_exchange(rec: Recorder, device: Device, xid: int) -> None:
    """DISCOVER, OFFER, REQUEST, ACK; the client's messages carry options 12 and 60 (RFC 2132)."""
    chaddr = bytes.fromhex(device.mac.replace(":", "")) + b"\x00" * 10
    identity = [("client_id", b"\x01" + chaddr[:6]), ("hostname", device.hostname.encode())]
    if device.vendor_class:
        identity.append(("vendor_class_id", device.vendor_class.encode()))
    wanted = ("param_req_list", [1, 3, 6, 15, 31, 33, 43, 44, 46, 47, 119, 121, 249, 252])
    server_options = [("server_id", ROUTER.ip), ("lease_time", 86400), ("subnet_mask", "255.255.255.0"),
                      ("router", ROUTER.ip), ("name_server", ROUTER.ip)]
    client = Endpoint(device.mac, "0.0.0.0")
    everyone = Endpoint(BROADCAST_MAC, "255.255.255.255")

    def client_msg(kind: str, extra: list) -> bytes:
        bootp = BOOTP(op=1, xid=xid, flags=0x8000, chaddr=chaddr)
        options = [("message-type", kind), *identity, *extra, wanted, "end"]
        return udp_frame(rec, client, everyone, 68, 67, bytes(bootp / DHCP(options=options)))

    def server_msg(kind: str) -> bytes:
        bootp = BOOTP(op=2, xid=xid, flags=0x8000, yiaddr=device.ip, siaddr=ROUTER.ip, chaddr=chaddr)
        return udp_frame(rec, ROUTER, everyone, 67, 68,
                         bytes(bootp / DHCP(options=[("message-type", kind), *server_options, "end"])))

    discover = rec.add(client_msg("discover", []), 0.2)
    rec.add(server_msg("offer"), 0.003)
    request = rec.add(client_msg("request", [("requested_addr", device.ip), ("server_id", ROUTER.ip)]), 0.01)
    rec.add(server_msg("ack"), 0.003)
    rec.plant("dhcp_hostname", device.hostname, Endpoint(device.mac, "0.0.0.0"), "255.255.255.255", 67,
              "udp", [discover, request], vendor_class=device.vendor_class, assigned_ip=device.ip)


def dns_lookup(rec: Recorder, device: Device, name: str, txid: int, sport: int, v6: bool = False,
               qtype: str = "A") -> None:
    """A query from the device to the LAN resolver and the resolver's answer."""
    client = device.v6 if v6 else device.v4
    resolver = ROUTER6 if v6 else ROUTER
    address = (ADDRESSES6 if qtype == "AAAA" else ADDRESSES)[name]
    query = rec.add(udp_frame(rec, client, resolver, sport, 53, dns_query(name, qtype, txid)), 0.05)
    rec.add(udp_frame(rec, resolver, client, 53, sport, dns_response(name, qtype, txid, [address])), 0.004)
    rec.plant("dns_query", name, client, resolver.ip, 53, "udp", [query], qtype=qtype, answers=[address],
              **({"note": NOTES[name]} if name in NOTES else {}))


def tls_session(rec: Recorder, device: Device, name: str | None, sport: int, *, v6: bool = False,
                post_quantum: bool = False, sni_last: bool = False, cuts: Sequence[int] = (),
                order: Sequence[int] | None = None, bulk: int = 1500, destination: Endpoint | None = None,
                ech: bool = False, evidence: str = "tls_sni", planted_name: str | None = None,
                **extra: object) -> None:
    """TCP handshake, a ClientHello (optionally split/reordered), a server flight and bulk data."""
    client = device.v6 if v6 else device.v4
    dst = destination or server(name or "", v6)
    label = f"tls/{device.hostname}/{name}/{sport}"
    conversation = TcpConversation(rec, client, dst, sport, 443, label)
    conversation.handshake()
    hello = tls_record(client_hello(name, label, post_quantum=post_quantum, sni_last=sni_last, ech=ech))
    frames = conversation.client_send(hello, cuts=cuts, order=order)
    conversation.server_send(tls_server_flight(label) + det_bytes(label + "/bulk", bulk))
    conversation.close()
    rec.plant(evidence, planted_name or name, client, dst.ip, 443, "tcp", frames, **extra,
              **({"note": NOTES[name]} if name in NOTES else {}))


def quic_session(rec: Recorder, device: Device, name: str, sport: int, *, v6: bool = False,
                 post_quantum: bool = False, order: Sequence[int] | None = None, interface: int = 0) -> None:
    """Client Initial datagram(s) to UDP 443 plus a few opaque server datagrams."""
    client = device.v6 if v6 else device.v4
    dst = server(name, v6)
    label = f"quic/{device.hostname}/{name}/{sport}"
    datagrams = quic_initial_datagrams(name, label, post_quantum=post_quantum)
    frames = []
    for index in order or range(len(datagrams)):
        frames.append(rec.add(udp_frame(rec, client, dst, sport, 443, datagrams[index]), 0.0005, interface))
    for count in range(3):
        reply = b"\xc1" + det_bytes(f"{label}/server/{count}", 1199)  # opaque Initial/Handshake bytes
        rec.add(udp_frame(rec, dst, client, 443, sport, reply), 0.015 if count == 0 else 0.0004, interface)
    rec.plant("quic_sni", name, client, dst.ip, 443, "udp", frames, quic_version=1,
              initial_packets=len(datagrams))


def http_session(rec: Recorder, device: Device, host: str, path: str, sport: int, body: int = 4000) -> None:
    """Plain HTTP/1.1 GET on port 80 with a Host header, then the download."""
    label = f"http/{device.hostname}/{host}/{sport}"
    conversation = TcpConversation(rec, device.v4, server(host), sport, 80, label)
    conversation.handshake()
    frames = conversation.client_send(http_get(host, path, "WPS Office/11.2.0 (Windows NT 10.0)"))
    conversation.server_send(http_response(label, body))
    conversation.close()
    rec.plant("http_host", host, device.v4, server(host).ip, 80, "tcp", frames, path=path)


def office_morning_dhcp(rec: Recorder) -> None:
    for index, device in enumerate(OFFICE_DEVICES):
        dhcp_exchange(rec, device, xid=0x3903F326 + index)


def alice_browsing(rec: Recorder) -> None:
    """Windows laptop: clean browsing, then Alipay, WPS (DNS + HTTP download) and CamScanner."""
    dns_lookup(rec, ALICE, "www.example.com", 0x1A01, 51001)
    tls_session(rec, ALICE, "www.example.com", 50001)
    dns_lookup(rec, ALICE, "update.microsoft.com", 0x1A02, 51002)
    tls_session(rec, ALICE, "update.microsoft.com", 50002, bulk=3000)
    dns_lookup(rec, ALICE, "mobilegw.alipay.com", 0x1A03, 51003)
    tls_session(rec, ALICE, "mobilegw.alipay.com", 50003)
    dns_lookup(rec, ALICE, "account.wps.cn", 0x1A04, 51004)
    http_session(rec, ALICE, "dl.wps.cn", "/wps/download/W.P.S.exe", 50004)
    dns_lookup(rec, ALICE, "v4.camscanner.com", 0x1A05, 51005)
    # Post-quantum hello (~1.8 KB) over two segments, server_name only in the second one.
    tls_session(rec, ALICE, "v4.camscanner.com", 50005, post_quantum=True, sni_last=True,
                split="2 segments, SNI in the second")


def reception_shop(rec: Recorder) -> None:
    """Front-desk PC: Wikipedia, Tencent Video (a qq.com neighbour, not banned), WeChat Pay merchant API."""
    dns_lookup(rec, RECEPTION, "www.wikipedia.org", 0x2B01, 52001)
    tls_session(rec, RECEPTION, "www.wikipedia.org", 50101)
    dns_lookup(rec, RECEPTION, "v.qq.com", 0x2B02, 52002)
    tls_session(rec, RECEPTION, "v.qq.com", 50102, bulk=4000)
    dns_lookup(rec, RECEPTION, "api.mch.weixin.qq.com", 0x2B03, 52003)
    tls_session(rec, RECEPTION, "api.mch.weixin.qq.com", 50103)


def bob_phone(rec: Recorder) -> None:
    """iPhone on IPv6 and IPv4: QQ (AAAA over IPv6), QQ Wallet (hello out of order), WeChat Pay over QUIC."""
    dns_lookup(rec, BOB, "msfwifi.3g.qq.com", 0x3C01, 53001, v6=True, qtype="AAAA")
    dns_lookup(rec, BOB, "www.wikipedia.org", 0x3C02, 53002, v6=True, qtype="AAAA")
    tls_session(rec, BOB, "www.wikipedia.org", 50201, v6=True)
    dns_lookup(rec, BOB, "qpay.qq.com", 0x3C03, 53003)
    # Hello in two segments, the second one sent (captured) first.
    tls_session(rec, BOB, "qpay.qq.com", 50202, cuts=[100], order=[1, 0], split="2 segments, out of order")
    dns_lookup(rec, BOB, "pay.weixin.qq.com", 0x3C04, 53004)
    quic_session(rec, BOB, "pay.weixin.qq.com", 50203)


def kiosk_shareit(rec: Recorder) -> None:
    """Android kiosk running SHAREit."""
    dns_lookup(rec, KIOSK, "api.dalyfeds.com", 0x4D01, 54001)
    tls_session(rec, KIOSK, "api.dalyfeds.com", 50301, bulk=5000)


def guest_encrypted_dns(rec: Recorder) -> None:
    """Guest laptop with DNS over HTTPS: no DNS queries on the wire, so names are hidden.

    It talks to dns.google (DoH), sends an ECH hello whose outer name is cloudflare-ech.com,
    and opens a connection without SNI to the address the LAN resolver gave alice for
    mobilegw.alipay.com (only the `resolved_ip` evidence can catch that).
    """
    tls_session(rec, GUEST, "dns.google", 50401, bulk=2000, evidence="encrypted_dns")
    tls_session(rec, GUEST, "cloudflare-ech.com", 50402, ech=True, evidence="ech")
    tls_session(rec, GUEST, None, 50403, destination=server("mobilegw.alipay.com"), evidence="resolved_ip",
                planted_name="mobilegw.alipay.com", note="no SNI; address answered earlier for this name")


def office_bulk(rec: Recorder) -> None:
    """A larger download so the sample is not only handshakes."""
    tls_session(rec, ALICE, "update.microsoft.com", 50010, bulk=16000)


def office_lan() -> Recorder:
    rec = Recorder()
    for scenario in (office_morning_dhcp, alice_browsing, reception_shop, bob_phone, kiosk_shareit,
                     guest_encrypted_dns, office_bulk):
        scenario(rec)
    return rec


# --------------------------------------------------------------------------- clean office

PI = Device("dc:a6:32:48:77:20", "192.0.2.20", "lab-raspberrypi",
            "dhcpcd-9.4.1:Linux-6.1.21-v8+:aarch64:BCM2835", "Raspberr")


def clean_office() -> Recorder:
    """Ordinary traffic only: nothing here may alert (exit status 0)."""
    rec = Recorder()
    dhcp_exchange(rec, PI, xid=0x11223344)
    dns_lookup(rec, PI, "www.debian.org", 0x5E01, 55001)
    tls_session(rec, PI, "www.debian.org", 50501, bulk=8000)
    dns_lookup(rec, PI, "www.example.com", 0x5E02, 55002)
    http_session(rec, PI, "www.example.com", "/index.html", 50502, body=3000)
    dns_lookup(rec, PI, "www.wikipedia.org", 0x5E03, 55003)
    tls_session(rec, PI, "www.wikipedia.org", 50503, post_quantum=True)
    return rec


# --------------------------------------------------------------------------- mixed link types

IFACE_ETH, IFACE_SLL2, IFACE_RAW6 = 0, 1, 2
MIXED_INTERFACES = (
    Interface(LINKTYPE_ETHERNET, "eth0"),
    Interface(LINKTYPE_LINUX_SLL2, "any", tsresol_exp=9),
    Interface(LINKTYPE_RAW, "tun0"),
)
BRANCH_PC = Device("3c:d9:2b:61:02:31", "192.0.2.31", "branch-pc", None, "HewlettP")
BRANCH_PHONE = Device("00:12:47:61:02:32", "192.0.2.32", "branch-phone", None, "SamsungE")
GATEWAY_HOST = Device("b8:27:eb:61:02:33", "192.0.2.33", "gateway", None, "Raspberr")
GATEWAY_PEER = Device("b8:27:eb:61:02:34", "192.0.2.34", "gateway-peer", None, "Raspberr")
NO_MAC = "00:00:00:00:00:00"  # raw-IP link: no MAC in the capture
TUNNEL_HOST = Device(NO_MAC, "192.0.2.35", "vpn-client", None, "", ip6="2001:db8:0:2::35")


def mixed_vlan_dns_over_tcp(rec: Recorder) -> None:
    """VLAN 100: DNS over TCP with two queries in one segment (RFC 7766 pipelining), and a QinQ query."""
    client = BRANCH_PC.v4
    conversation = TcpConversation(rec, client, ROUTER, 56001, 53, "dns-tcp/branch-pc", vlans=[100],
                                   interface=IFACE_ETH)
    conversation.handshake(rtt=0.001)
    names = ("myun.tenpay.com", "publicdata.vmate.in")
    queries = b"".join(_vec16(dns_query(name, "A", 0x6F01 + i)) for i, name in enumerate(names))
    frames = conversation.client_send(queries)
    answers = b"".join(_vec16(dns_response(name, "A", 0x6F01 + i, [ADDRESSES[name]]))
                       for i, name in enumerate(names))
    conversation.server_send(answers)
    conversation.close()
    for name in names:
        rec.plant("dns_query", name, client, ROUTER.ip, 53, "tcp", frames, vlan=[100],
                  note="two DNS messages in one TCP segment")
    query = udp_frame(rec, BRANCH_PHONE.v4, ROUTER, 56002, 53, dns_query("vip.wps.cn", "A", 0x6F03),
                      vlans=[200, 100])
    frame = rec.add(query, 0.01, IFACE_ETH)
    rec.plant("dns_query", "vip.wps.cn", BRANCH_PHONE.v4, ROUTER.ip, 53, "udp", [frame], vlan=[200, 100],
              note="QinQ 802.1ad + 802.1Q")


def mixed_sll2_fragmented_dns(rec: Recorder) -> None:
    """Linux `any` capture (SLL2): a DNS response too big for one packet, IPv4-fragmented,
    then a second host connects (no SNI) to an address that only the second fragment carries."""
    name, txid, sport = "mclient.alipay.com", 0x7A01, 57001
    client = GATEWAY_HOST.v4
    resolver = Endpoint(ROUTER.mac, "198.51.100.53")
    addresses = [f"203.0.113.{100 + i}" for i in range(60)]

    def sll2(frame: bytes, outgoing: bool) -> bytes:
        ether = Ether(frame)
        mac = ether.src
        return sll2_header(ether.type, mac, packet_type=4 if outgoing else 0) + bytes(ether.payload)

    query = rec.add(sll2(udp_frame(rec, client, resolver, sport, 53, dns_query(name, "A", txid)), True),
                    0.02, IFACE_SLL2)
    rec.plant("dns_query", name, client, resolver.ip, 53, "udp", [query])
    response = IP(src=resolver.ip, dst=client.ip, id=rec.next_ip_id(), ttl=57) / UDP(sport=53, dport=sport) \
        / dns_response(name, "A", txid, addresses, ttl=60)
    fragment_frames = []
    for piece in fragment(response, fragsize=1472):
        fragment_frames.append(rec.add(sll2_header(0x0800, resolver.mac, packet_type=0) + bytes(piece),
                                       0.0002, IFACE_SLL2))
    late_answer = addresses[-1]
    rec.plant("dns_response_fragmented", name, client, resolver.ip, 53, "udp", fragment_frames,
              answers=addresses, note="one UDP datagram in IPv4 fragments; answers, not a query")
    # The peer never asks for the name (hard-coded address): only resolved_ip can flag it.
    start = len(rec.frames)
    tls_session(rec, GATEWAY_PEER, None, 57002, destination=Endpoint(ROUTER.mac, late_answer),
                evidence="resolved_ip", planted_name=name,
                note="no SNI; address only present in the second fragment of the earlier response")
    move_frames(rec, start, IFACE_SLL2, lambda frame: sll2(frame, Ether(frame).src == GATEWAY_PEER.mac))


def move_frames(rec: Recorder, start: int, interface: int, rewrite: Callable[[bytes], bytes]) -> None:
    """Re-header the Ethernet frames recorded since `start` for another interface's link type."""
    for index in range(start, len(rec.frames)):
        ts, _, frame = rec.frames[index]
        rec.frames[index] = (ts, interface, rewrite(frame))


def mixed_tun_ipv6(rec: Recorder) -> None:
    """Raw-IP tunnel interface (LINKTYPE_RAW, no link header): IPv6 TLS SNI and an IPv6 QUIC
    Initial whose post-quantum ClientHello spans two Initial packets captured out of order."""
    start = len(rec.frames)
    tls_session(rec, TUNNEL_HOST, "www.camscanner.com", 58001, v6=True)
    quic_session(rec, TUNNEL_HOST, "api2.wechatpay.cn", 58002, v6=True, post_quantum=True, order=[1, 0])
    move_frames(rec, start, IFACE_RAW6, lambda frame: bytes(Ether(frame).payload))
    for planted in rec.truth[-2:]:
        planted["source_mac"] = None


def mixed_links() -> Recorder:
    rec = Recorder()
    for scenario in (mixed_vlan_dns_over_tcp, mixed_sll2_fragmented_dns, mixed_tun_ipv6):
        scenario(rec)
    return rec


# --------------------------------------------------------------------------- output


def truth_document(capture: str, rec: Recorder, devices: Sequence[Device], expected_exit: int,
                   description: str) -> dict:
    """Ground truth: devices by MAC with what each must be reported for, plus the flat list."""
    named_by_dhcp = {item["source_mac"] for item in rec.truth if item["evidence"] == "dhcp_hostname"}
    by_key: dict[str, dict] = {}
    for device in devices:
        # A device is its MAC where the capture shows one, otherwise its IP (raw-IP links).
        key = device.mac if device.mac != NO_MAC else (device.ip6 or device.ip)
        by_key[key] = {
            "label": device.hostname,
            "hostname": device.hostname if device.mac in named_by_dhcp else None,
            "vendor_class": device.vendor_class if device.mac in named_by_dhcp else None,
            "oui_vendor": device.oui_vendor or None, "ipv4": device.ip, "ipv6": device.ip6,
            "apps": [], "names": [],
        }
    for item in rec.truth:
        entry = by_key.get(item["source_mac"] or item["source_ip"])
        if entry is None:
            continue
        if item["name"] not in entry["names"] and item["evidence"] != "dhcp_hostname":
            entry["names"].append(item["name"])
        if item["app"] and item["app"] not in entry["apps"] and item["evidence"] != "dns_response_fragmented":
            entry["apps"].append(item["app"])
    return {
        "capture": capture,
        "generator": "pcaps/generate.py",
        "description": description,
        "frames": len(rec.frames),
        "first_timestamp": rec.frames[0][0],
        "expected_exit_status": expected_exit,
        "devices": by_key,
        "observations": rec.truth,
    }


def _json(document: dict) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=False) + "\n").encode()


def build_all() -> dict[str, bytes]:
    """Every sample file name -> its exact bytes."""
    office = office_lan()
    office_pcap = pcap_bytes(office.pcap_records(), LINKTYPE_ETHERNET)
    clean = clean_office()
    mixed = mixed_links()
    mixed_truth = truth_document(
        "mixed-links.pcapng", mixed, (BRANCH_PC, BRANCH_PHONE, GATEWAY_HOST, GATEWAY_PEER, TUNNEL_HOST), 1,
        "pcapng, interfaces: 0 eth0 Ethernet (802.1Q/QinQ), 1 any Linux SLL2 (ns timestamps), "
        "2 tun0 raw IPv6 (LINKTYPE_RAW).")

    # Cut office-lan in the middle of a record about two thirds in: records before it stay readable.
    offset, cut_record = 24, int(len(office.frames) * 0.66)
    for _, _, frame in office.frames[:cut_record - 1]:
        offset += 16 + len(frame)
    cut_at = offset + 16 + len(office.frames[cut_record - 1][2]) // 2
    truncated_truth = {
        "capture": "truncated.pcap", "generator": "pcaps/generate.py",
        "description": "office-lan.pcap cut in the middle of a record's data",
        "complete_records": cut_record - 1, "truncated_record_offset": offset, "file_size": cut_at,
        "expected_exit_status": 1,
        "observations": [item for item in office.truth if item["frame"] and item["frame"] < cut_record],
    }
    return {
        "office-lan.pcap": office_pcap,
        "office-lan.truth.json": _json(truth_document(
            "office-lan.pcap", office, OFFICE_DEVICES, 1,
            "Small office LAN: five DHCP clients, DNS, TLS (split and out-of-order hellos), QUIC, HTTP, "
            "DoH, ECH")),
        "clean.pcap": pcap_bytes(clean.pcap_records(), LINKTYPE_ETHERNET),
        "clean.truth.json": _json(truth_document("clean.pcap", clean, (PI,), 0, "Ordinary traffic only")),
        "mixed-links.pcapng": pcapng_bytes(MIXED_INTERFACES, mixed.frames),
        "mixed-links.truth.json": _json(mixed_truth),
        "truncated.pcap": office_pcap[:cut_at],
        "truncated.truth.json": _json(truncated_truth),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=PCAPS_DIR, help="where to write (default: pcaps/)")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in build_all().items():
        (args.out_dir / name).write_bytes(data)
        print(f"{args.out_dir / name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
