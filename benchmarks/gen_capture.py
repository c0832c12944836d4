#!/usr/bin/env python3
"""Generate a large, realistic capture for the scan benchmark, plus its ground truth.

    python benchmarks/gen_capture.py -o benchmarks/out/bulk.pcap              # ~1.1 GB, ~1.1 M packets
    python benchmarks/gen_capture.py -o /tmp/b.pcap --size 100M --packets 100k
    python benchmarks/gen_capture.py --small-flows -o benchmarks/out/small.pcap --repeat 200

Default mode: mostly bulk TCP (long concurrent flows, large segments both ways, ACKs), with
planted DNS queries/responses, TLS ClientHellos (whole, split over 2-3 segments, out of order),
real QUIC Initials (aioquic), HTTP requests, on IPv4 and IPv6, some hosts 802.1Q-tagged.
Bulk frames are written with struct from per-flow header templates (building a million scapy
packets would take minutes); planted exchanges reuse the sample generator's builders
(pcaps/generate.py). `<out>.truth.json` lists every planted (client ip, name, evidence).

`--small-flows`: the nDPI test corpus (/work/shared/pcaps/ndpi) merged with mergecap, rewritten
to Ethernet where the link type differs, repeated N times with shifted timestamps. Its truth
file holds what tshark extracts from one copy (when tshark is installed).
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "pcaps"))
import generate as craft  # noqa: E402  (pcaps/generate.py: ClientHello, QUIC Initial, TCP builders)

NDPI_CORPUS = REPO.parent / "shared" / "pcaps" / "ndpi"

# Banned-app names and their app ids, from /work/shared/research/signatures.md.
BANNED_APPS = {
    "mobilegw.alipay.com": "alipay", "mclient.alipay.com": "alipay", "openapi.alipay.com": "alipay",
    "wappaygw.alipay.com": "alipay", "api.mch.weixin.qq.com": "wechat_pay", "pay.weixin.qq.com": "wechat_pay",
    "api2.wechatpay.cn": "wechat_pay", "payapp.weixin.qq.com": "wechat_pay", "msfwifi.3g.qq.com": "tencent_qq",
    "msfwifiv6.3g.qq.com": "tencent_qq", "qpay.qq.com": "qq_wallet", "myun.tenpay.com": "qq_wallet",
    "mqq.tenpay.com": "qq_wallet", "v4.camscanner.com": "camscanner", "www.camscanner.com": "camscanner",
    "api-cs.intsig.net": "camscanner", "api.dalyfeds.com": "shareit", "active.dalyfeds.com": "shareit",
    "account.wps.cn": "wps_office", "vip.wps.cn": "wps_office", "drive.wps.cn": "wps_office",
    "publicdata.vmate.in": "vmate",
}
BANNED_NAMES = sorted(BANNED_APPS)
CLEAN_NAMES = [
    "www.example.com", "update.microsoft.com", "www.wikipedia.org", "v.qq.com", "www.debian.org",
    "github.com", "api.github.com", "www.google.com", "fonts.gstatic.com", "cdn.jsdelivr.net",
    "login.microsoftonline.com", "outlook.office365.com", "www.bbc.co.uk", "s3.amazonaws.com",
    "static.xx.fbcdn.net", "www.apple.com", "time.cloudflare.com", "registry.npmjs.org",
]
ROUTER_MAC = "00:1d:d8:b7:1c:01"
SNAPLEN = 262144
ETH_HEADER = 14
VLAN_TAG = 4


def parse_count(text: str) -> int:
    """'1.1G' -> 1100000000, '100k' -> 100000 (decimal units)."""
    units = {"k": 10**3, "m": 10**6, "g": 10**9}
    text = text.strip().lower().rstrip("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


# ----------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class Host:
    mac: str
    ip: str
    vlan: int | None

    @property
    def v6(self) -> bool:
        return ":" in self.ip


def make_hosts(rng: random.Random, count: int) -> list[Host]:
    """Clients: one in four on IPv6, one in five tagged with an 802.1Q VLAN id (at most 500 IPv4)."""
    hosts = []
    for index in range(count):
        mac = f"02:00:5e:{index >> 16 & 0xFF:02x}:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"
        if index % 4 == 3:
            ip = str(ipaddress.IPv6Address(f"2001:db8:10:{index >> 8:x}::{index & 0xFF:x}"))  # canonical form
        else:
            ip = f"192.0.2.{index % 250 + 1}" if index < 250 else f"198.51.100.{index % 250 + 1}"
        hosts.append(Host(mac, ip, 100 + index % 3 if index % 5 == 0 else None))
    return hosts


def server_ip(rng: random.Random, v6: bool) -> str:
    if v6:
        return str(ipaddress.IPv6Address(f"2001:db8:ff:{rng.randrange(1, 0xFFFF):x}::{rng.randrange(1, 0xFFFF):x}"))
    return f"203.0.113.{rng.randrange(1, 255)}"


# ----------------------------------------------------------------------------- bulk flows


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class BulkFlow:
    """A long TCP flow whose frames come from fixed header templates (fast, no scapy)."""

    def __init__(self, client: Host, server: str, sport: int, dport: int, rng: random.Random,
                 payload_size: int, upload: bool) -> None:
        self.client, self.server, self.sport, self.dport = client, server, sport, dport
        self.v6 = client.v6
        self.payload_size = payload_size
        self.upload = upload  # client sends the bulk (both directions occur across flows)
        self.seq = {True: rng.getrandbits(32), False: rng.getrandbits(32)}  # from_client -> next seq
        self.ip_id = rng.getrandbits(16)
        client_mac = bytes.fromhex(client.mac.replace(":", ""))
        router_mac = bytes.fromhex(ROUTER_MAC.replace(":", ""))
        ethertype = 0x86DD if self.v6 else 0x0800
        tag = b"" if client.vlan is None else struct.pack("!HH", 0x8100, client.vlan)
        self.l2 = {True: router_mac + client_mac + tag + struct.pack("!H", ethertype),
                   False: client_mac + router_mac + tag + struct.pack("!H", ethertype)}
        family = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.addr = {True: (socket.inet_pton(family, client.ip), socket.inet_pton(family, server)),
                     False: (socket.inet_pton(family, server), socket.inet_pton(family, client.ip))}

    def frame(self, from_client: bool, flags: int, payload: bytes) -> bytes:
        src, dst = self.addr[from_client]
        sport, dport = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        seq, ack = self.seq[from_client], self.seq[not from_client]
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 2048, 0, 0)
        self.seq[from_client] = (seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        length = 20 + len(payload)
        if self.v6:
            ip = struct.pack("!IHBB", 0x60000000, length, 6, 64) + src + dst
        else:
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, self.ip_id, 0x4000, 64, 6, 0, src, dst)
            ip = head[:10] + struct.pack("!H", ipv4_checksum(head)) + head[12:]
        return self.l2[from_client] + ip + tcp + payload

    def opening(self) -> list[bytes]:
        frames = [self.frame(True, 0x02, b""), self.frame(False, 0x12, b""), self.frame(True, 0x10, b"")]
        request = b"GET /bulk HTTP/1.1\r\n\r\n" if not self.upload else b""
        if request:  # opaque request bytes on a non-HTTP port: not a name-bearing protocol
            frames.append(self.frame(True, 0x18, request))
        return frames

    def burst(self, blob: memoryview, offset: int, segments: int) -> list[bytes]:
        """`segments` data segments in the bulk direction, an ACK after every second one."""
        frames = []
        sender = self.upload
        for count in range(segments):
            start = (offset + count * 7919) % (len(blob) - self.payload_size)
            frames.append(self.frame(sender, 0x10, bytes(blob[start:start + self.payload_size])))
            if count % 2 == 1:
                frames.append(self.frame(not sender, 0x10, b""))
        return frames

    def closing(self) -> list[bytes]:
        return [self.frame(True, 0x11, b""), self.frame(False, 0x11, b""), self.frame(True, 0x10, b"")]


# ----------------------------------------------------------------------------- planted exchanges


class Planter:
    """Builds small name-bearing exchanges with the sample generator's builders."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rec = craft.Recorder()
        self.truth: list[dict] = []
        self.counter = 0

    def plant(self, ts: float, client: Host) -> None:
        rng, rec = self.rng, self.rec
        self.counter += 1
        label = f"bench/{self.counter}"
        name = rng.choice(BANNED_NAMES) if rng.random() < 0.5 else rng.choice(CLEAN_NAMES)
        kind = rng.choices(["dns", "tls", "tls_split", "tls_reorder", "quic", "quic_split", "http"],
                           [30, 22, 10, 6, 14, 6, 12])[0]
        rec.ts = ts
        me = craft.Endpoint(client.mac, client.ip)
        vlans = [] if client.vlan is None else [client.vlan]
        sport = 20000 + self.counter % 40000
        if kind == "dns":
            resolver = craft.Endpoint(ROUTER_MAC, "2001:db8::53" if client.v6 else "192.0.2.53")
            qtype, answer = ("AAAA", server_ip(rng, True)) if client.v6 else ("A", server_ip(rng, False))
            txid = self.counter & 0xFFFF
            rec.add(craft.udp_frame(rec, me, resolver, sport, 53, craft.dns_query(name, qtype, txid), vlans))
            rec.add(craft.udp_frame(rec, resolver, me, 53, sport,
                                    craft.dns_response(name, qtype, txid, [answer]), vlans), 0.003)
            evidence, dst = "dns_query", resolver.ip
        elif kind.startswith("quic"):
            dst = server_ip(rng, client.v6)
            datagrams = craft.quic_initial_datagrams(name, label, post_quantum=kind == "quic_split")
            if len(datagrams) > 1 and rng.random() < 0.5:
                datagrams.reverse()
            for datagram in datagrams:
                rec.add(craft.udp_frame(rec, me, craft.Endpoint(ROUTER_MAC, dst), sport, 443, datagram, vlans))
            evidence = "quic_sni"
        else:
            dst = server_ip(rng, client.v6)
            port = 80 if kind == "http" else rng.choice([443, 443, 443, 8443])
            conversation = craft.TcpConversation(rec, me, craft.Endpoint(ROUTER_MAC, dst), sport, port, label,
                                                 vlans=vlans)
            conversation.handshake()
            if kind == "http":
                conversation.client_send(craft.http_get(name, "/", "Mozilla/5.0"))
                conversation.server_send(craft.http_response(label, 2000))
                evidence = "http_host"
            else:
                split = kind != "tls"
                hello = craft.tls_record(craft.client_hello(name, label, post_quantum=split, sni_last=split))
                cuts = sorted(rng.sample(range(100, 1400), rng.choice([0, 1]))) if split else []
                pieces = len(conversation.segments(hello, cuts))
                order = list(reversed(range(pieces))) if kind == "tls_reorder" else None
                conversation.client_send(hello, cuts=cuts, order=order)
                conversation.server_send(craft.tls_server_flight(label, 600))
                evidence = "tls_sni"
            conversation.close()
        self.truth.append({"ts": round(ts, 6), "client_ip": client.ip, "client_mac": client.mac, "name": name,
                           "evidence": evidence, "app": BANNED_APPS.get(name), "variant": kind,
                           "vlan": client.vlan, "destination_ip": dst})

    def frames(self) -> list[tuple[float, bytes]]:
        return [(ts, frame) for ts, _, frame in self.rec.frames]


# ----------------------------------------------------------------------------- writer


def record(ts: float, frame: bytes) -> bytes:
    micros = round(ts * 1_000_000)
    return struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)) + frame


def bulk_frames(rng: random.Random, hosts: list[Host], packet_budget: int, size_budget: int,
                start: float, pps: float) -> Iterator[tuple[float, bytes]]:
    """Concurrent long flows, interleaved burst by burst, until a budget is spent."""
    mean_frame = size_budget / max(packet_budget, 1)
    # data frames + one ACK (~66 B) per 2 data frames should average `mean_frame`
    payload = int(max(200, min(8960, 1.5 * mean_frame - 0.5 * 70 - 58)))
    blob = memoryview(craft.det_bytes("bench-bulk-blob", 4 << 20))
    active: list[BulkFlow] = []
    ts, packets, size = start, 0, 0
    while packets < packet_budget and size < size_budget:
        if len(active) < 48 or rng.random() < 0.002:
            client = rng.choice(hosts)
            flow = BulkFlow(client, server_ip(rng, client.v6), rng.randrange(32768, 61000),
                            rng.choice([443, 443, 22, 445, 8080, 993]), rng, payload, rng.random() < 0.3)
            active.append(flow)
            burst = flow.opening()
        else:
            flow = active[rng.randrange(len(active))]
            if rng.random() < 0.0005:
                active.remove(flow)
                burst = flow.closing()
            else:
                burst = flow.burst(blob, rng.randrange(1 << 22), rng.randrange(2, 16, 2))
        for frame in burst:
            ts += rng.expovariate(pps)
            packets += 1
            size += 16 + len(frame)
            yield ts, frame


def generate(out: Path, size: int, packets: int, seed: int, planted: int, hosts_count: int) -> dict:
    rng = random.Random(seed)
    hosts = make_hosts(rng, hosts_count)
    start = craft.START_TS
    pps = 20_000.0
    duration = packets / pps
    planter = Planter(random.Random(seed + 1))
    for ts in sorted(start + rng.random() * duration for _ in range(planted)):
        planter.plant(ts, rng.choice(hosts))
    planted_frames = planter.frames()
    planted_bytes = sum(16 + len(f) for _, f in planted_frames)
    bulk = bulk_frames(rng, hosts, packets - len(planted_frames), size - 24 - planted_bytes, start, pps)
    count, written = 0, 24
    with out.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, craft.LINKTYPE_ETHERNET))
        chunk: list[bytes] = []
        for ts, frame in heapq.merge(bulk, planted_frames, key=lambda item: item[0]):
            chunk.append(record(ts, frame))
            count += 1
            written += 16 + len(frame)
            if len(chunk) >= 8192:
                handle.write(b"".join(chunk))
                chunk.clear()
        handle.write(b"".join(chunk))
    return {"capture": out.name, "generator": "benchmarks/gen_capture.py", "seed": seed, "packets": count,
            "bytes": written, "planted": len(planter.truth), "planted_frames": len(planted_frames),
            "observations": planter.truth}


# ----------------------------------------------------------------------------- small flows


def read_pcapng(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(linktype, ts seconds, microseconds, frame) from a little-endian pcapng written by mergecap."""
    interfaces: list[tuple[int, int]] = []
    offset = 0
    while offset + 12 <= len(data):
        block_type, length = struct.unpack_from("<II", data, offset)
        body = data[offset + 8:offset + length - 4]
        if block_type == 0x0A0D0D0A:
            interfaces = []
        elif block_type == 1:
            exponent, pos = 6, 8
            while pos + 4 <= len(body):
                code, size = struct.unpack_from("<HH", body, pos)
                if code == 0:
                    break
                if code == 9:
                    exponent = body[pos + 4]
                pos += 4 + size + (-size % 4)
            interfaces.append((struct.unpack_from("<H", body)[0], exponent))
        elif block_type == 6:
            iface, high, low, caplen, _ = struct.unpack_from("<IIIII", body)
            linktype, exponent = interfaces[iface]
            units = (high << 32) | low
            scale = 10**exponent if exponent < 128 else 2 ** (exponent & 0x7F)
            yield linktype, units // scale, (units % scale) * 1_000_000 // scale, body[20:20 + caplen]
        offset += length


def to_ethernet(linktype: int, frame: bytes) -> bytes | None:
    """Rewrite a frame of another link type as Ethernet (fake MACs), or None when unknown."""
    macs = bytes.fromhex("020000000002" "020000000001")
    if linktype == craft.LINKTYPE_ETHERNET:
        return frame
    if linktype == 113 and len(frame) >= 16:  # LINUX_SLL: protocol at offset 14
        return macs + frame[14:16] + frame[16:]
    if linktype == craft.LINKTYPE_LINUX_SLL2 and len(frame) >= 20:
        return macs + frame[0:2] + frame[20:]
    if linktype in (craft.LINKTYPE_RAW, 228, 229, 12) and frame:  # raw IP (101, IPV4, IPV6, OpenBSD RAW)
        return macs + (b"\x86\xdd" if frame[0] >> 4 == 6 else b"\x08\x00") + frame
    if linktype == 9 and len(frame) >= 4:  # PPP: address/control ff03 then the protocol
        body = frame[2:] if frame[:2] == b"\xff\x03" else frame
        protocol = struct.unpack_from("!H", body)[0]
        ethertype = {0x0021: b"\x08\x00", 0x0057: b"\x86\xdd"}.get(protocol)
        return None if ethertype is None else macs + ethertype + body[2:]
    return None


def small_flows(out: Path, repeat: int, corpus: Path) -> dict:
    if shutil.which("mergecap") is None:
        raise SystemExit("--small-flows needs mergecap (Debian package wireshark-common)")
    files = sorted(p for p in corpus.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged.pcapng"
        subprocess.run(["mergecap", "-a", "-F", "pcapng", "-w", str(merged), *map(str, files)], check=True)
        frames = []
        skipped = 0
        for linktype, sec, usec, frame in read_pcapng(merged.read_bytes()):
            ethernet = to_ethernet(linktype, frame)
            if ethernet is None:
                skipped += 1
            else:
                frames.append((sec, usec, ethernet))
    # Corpus captures span years: re-time the frames 1 ms apart in file order, then start each
    # copy 10 minutes after the previous one ends so flow tables time out between copies.
    base = [(index / 1000.0, frame) for index, (_, _, frame) in enumerate(frames)]
    one_copy = out.with_suffix(".one.pcap")
    one_copy.write_bytes(craft.pcap_bytes([(craft.START_TS + ts, f) for ts, f in base], craft.LINKTYPE_ETHERNET))
    span = base[-1][0] + 600.0
    count, written = 0, 24
    with out.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, craft.LINKTYPE_ETHERNET))
        for copy in range(repeat):
            offset = craft.START_TS + copy * span
            chunk = [record(offset + ts, frame) for ts, frame in base]
            handle.write(b"".join(chunk))
            count += len(chunk)
            written += sum(map(len, chunk))
    observations = tshark_truth(one_copy)
    one_copy.unlink()
    return {"capture": out.name, "generator": "benchmarks/gen_capture.py --small-flows", "repeat": repeat,
            "corpus_files": [p.name for p in files], "frames_per_copy": len(base),
            "skipped_unknown_linktype": skipped, "packets": count, "bytes": written,
            "truth_source": "tshark on one copy" if observations is not None else None,
            "observations": observations or []}


def tshark_truth(path: Path) -> list[dict] | None:
    """What tshark extracts from one copy: the reference for recall on real traffic."""
    if shutil.which("tshark") is None:
        return None
    command = ["tshark", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE", "-T", "fields",
               "-E", "occurrence=a", "-e", "ip.src", "-e", "ipv6.src", "-e", "dns.qry.name",
               "-e", "tls.handshake.extensions_server_name", "-e", "http.host", "-e", "quic.packet_length",
               "-Y", "(dns && dns.flags.response == 0) || tls.handshake.type == 1 || (http.request && tcp)"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=600).stdout
    seen: dict[tuple[str, str, str], dict] = {}
    for line in output.splitlines():
        ip4, ip6, dns_names, sni, host, quic = (line.split("\t") + [""] * 6)[:6]
        # Tunnels (6in4, IP-in-IP) carry two source addresses; which one is inner depends on
        # the encapsulation, so every candidate is kept and any of them counts as a match.
        candidates = [a for a in ip4.split(",") + ip6.split(",") if a]
        client = ip6.split(",")[-1] if ip4 and ip6 else candidates[-1] if candidates else ""
        found = [("dns_query", n) for n in dns_names.split(",") if n]
        found += [("quic_sni" if quic else "tls_sni", n) for n in sni.split(",") if n]
        found += [("http_host", n.rsplit(":", 1)[0] if n.count(":") == 1 else n) for n in host.split(",") if n]
        for evidence, name in found:
            seen.setdefault((client, name, evidence), {"client_ip": client, "client_ips": candidates,
                                                       "name": name, "evidence": evidence})
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "out" / "bulk.pcap")
    parser.add_argument("--size", default="1.1G", help="target file size (default 1.1G)")
    parser.add_argument("--packets", default="1.1M", help="target packet count (default 1.1M)")
    parser.add_argument("--seed", type=int, default=13971)
    parser.add_argument("--planted", type=int, default=3000, help="planted name-bearing exchanges")
    parser.add_argument("--hosts", type=int, default=400, help="client hosts")
    parser.add_argument("--small-flows", action="store_true", help="merge the nDPI corpus instead")
    parser.add_argument("--repeat", type=int, default=300, help="--small-flows: copies of the corpus")
    parser.add_argument("--corpus", type=Path, default=NDPI_CORPUS)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if args.small_flows:
        truth = small_flows(args.output, args.repeat, args.corpus)
    else:
        truth = generate(args.output, parse_count(args.size), parse_count(args.packets), args.seed,
                         args.planted, args.hosts)
    truth_path = args.output.with_name(args.output.name + ".truth.json")
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    print(f"{args.output}: {truth['packets']} packets, {truth['bytes'] / 1e6:.1f} MB, "
          f"{len(truth['observations'])} truth entries -> {truth_path} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
