#!/usr/bin/env python3
"""Generate a hostile capture (floods a sensor meets on a LAN) with planted names, plus its truth.

    python benchmarks/gen_hostile.py -o benchmarks/out/hostile.pcap            # ~1.5 M packets
    python benchmarks/gen_hostile.py -o /tmp/h.pcap --syn 100k --dns 30k --fragments 5k --hellos 10k

Mixed in time order: a random-port SYN flood from spoofed sources (one new flow per SYN), DNS
queries for random names, first IP fragments whose rest never comes, TCP connections that send
the first bytes of a ClientHello and nothing more, and the planted DNS/TLS/QUIC/HTTP exchanges of
gen_capture.py (banned and clean names). Flood frames are written with struct; `<out>.truth.json`
lists every planted (client ip, name, evidence) in gen_capture.py's format for bench_scan.py.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import struct
import time
from collections.abc import Iterator
from pathlib import Path

from gen_capture import REPO, SNAPLEN, Planter, craft, ipv4_checksum, make_hosts, parse_count, record

ROUTER = bytes.fromhex("02005e0001fe")
VICTIM_MAC = bytes.fromhex("02005e000101")


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, frag: int = 0x4000) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, proto, 0, src, dst)
    return ROUTER + VICTIM_MAC + b"\x08\x00" + head[:10] + struct.pack("!H", ipv4_checksum(head)) + head[12:] + payload


def tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 64240, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def spoofed(rng: random.Random) -> bytes:
    return bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])


def syn_flood(rng: random.Random, count: int, start: float, duration: float) -> Iterator[tuple[float, bytes]]:
    victim = bytes([192, 0, 2, 80])
    for i in range(count):
        yield (start + duration * i / count,
               ipv4(spoofed(rng), victim, 6, tcp(rng.randrange(1024, 65536), rng.randrange(1, 65536),
                                                  rng.getrandbits(32), 0x02), i & 0xFFFF))


def random_names(rng: random.Random, count: int, start: float, duration: float) -> Iterator[tuple[float, bytes]]:
    resolver = bytes([192, 0, 2, 53])
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(count):
        name = "".join(rng.choice(letters) for _ in range(rng.randrange(8, 30))) + ".example.net"
        query = craft.dns_query(name, "A", rng.getrandbits(16))
        yield (start + duration * (i + 0.5) / count,
               ipv4(spoofed(rng), resolver, 17, udp(rng.randrange(1024, 65536), 53, query), i & 0xFFFF))


def dangling_fragments(rng: random.Random, count: int, start: float, duration: float) -> Iterator[tuple[float, bytes]]:
    for i in range(count):
        payload = udp(rng.randrange(1024, 65536), rng.randrange(1, 65536), bytes(rng.getrandbits(8) for _ in range(64)))
        yield (start + duration * (i + 0.25) / count,
               ipv4(spoofed(rng), bytes([192, 0, 2, 81]), 17, payload, rng.getrandbits(16), 0x2000))  # MF, offset 0


def unfinished_hellos(rng: random.Random, count: int, start: float, duration: float) -> Iterator[tuple[float, bytes]]:
    """SYN, then the first 120 bytes of a ClientHello of a name nobody bans; the rest never comes."""
    hello = craft.tls_record(craft.client_hello("unfinished.example.org", "hostile"))[:120]
    server = bytes([192, 0, 2, 82])
    for i in range(count):
        src, sport, seq = spoofed(rng), rng.randrange(1024, 65536), rng.getrandbits(32)
        ts = start + duration * (i + 0.75) / count
        yield ts, ipv4(src, server, 6, tcp(sport, 443, seq, 0x02), 1)
        yield ts + 1e-6, ipv4(src, server, 6, tcp(sport, 443, (seq + 1) & 0xFFFFFFFF, 0x18, hello), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO / "benchmarks" / "out" / "hostile.pcap")
    parser.add_argument("--syn", default="1M", help="SYN flood packets (one new flow each)")
    parser.add_argument("--dns", default="300k", help="queries for random names")
    parser.add_argument("--fragments", default="50k", help="first fragments that are never completed")
    parser.add_argument("--hellos", default="50k", help="connections with an unfinished ClientHello (2 packets)")
    parser.add_argument("--planted", type=int, default=1000, help="planted name-bearing exchanges")
    parser.add_argument("--seed", type=int, default=13971)
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    rng = random.Random(args.seed)
    start, duration = craft.START_TS, 60.0
    planter = Planter(random.Random(args.seed + 1))
    hosts = make_hosts(rng, 50)
    for ts in sorted(start + rng.random() * duration for _ in range(args.planted)):
        planter.plant(ts, rng.choice(hosts))
    sources = [
        planter.frames(),
        syn_flood(random.Random(args.seed + 2), parse_count(args.syn), start, duration),
        random_names(random.Random(args.seed + 3), parse_count(args.dns), start, duration),
        dangling_fragments(random.Random(args.seed + 4), parse_count(args.fragments), start, duration),
        unfinished_hellos(random.Random(args.seed + 5), parse_count(args.hellos), start, duration),
    ]
    count, written = 0, 24
    with args.output.open("wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, craft.LINKTYPE_ETHERNET))
        chunk: list[bytes] = []
        for ts, frame in heapq.merge(*sources, key=lambda item: item[0]):
            chunk.append(record(ts, frame))
            count += 1
            written += 16 + len(frame)
            if len(chunk) >= 8192:
                handle.write(b"".join(chunk))
                chunk.clear()
        handle.write(b"".join(chunk))
    truth = {"capture": args.output.name, "generator": "benchmarks/gen_hostile.py", "seed": args.seed,
             "packets": count, "bytes": written, "planted": len(planter.truth), "observations": planter.truth}
    truth_path = args.output.with_name(args.output.name + ".truth.json")
    truth_path.write_text(json.dumps(truth, indent=1) + "\n")
    print(f"{args.output}: {count} packets, {written / 1e6:.1f} MB, {len(planter.truth)} planted "
          f"-> {truth_path} ({time.monotonic() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
