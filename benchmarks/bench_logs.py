"""Log reading speed: `netwatch logs` on a generated Zeek dns.log (TSV) and Suricata eve.json,
beside the tools people use to pull names out of such files.

    PYTHONPATH=. python benchmarks/bench_logs.py [--lines 1000000]

Floor: 200,000 lines/s for each format (netwatch's whole path: read, parse, detect, device
inventory; the output is the table, so the time is the reading, not writing JSON). Beside it:
`zeek-cut query` is the Zeek tool for the TSV file, but it ships only with Zeek, which is not
installable from this machine's package sources, so `awk` (what zeek-cut does: pick columns by
the #fields header) stands in, plus `cut -f10`; `jq -r 'select(.event_type=="dns") | .dns.rrname'`
for the EVE file. Generated files go to benchmarks/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

FLOOR = 200_000
OUT = Path(__file__).resolve().parent / "out"
BANNED = ["mobilegw.alipay.com", "pay.weixin.qq.com", "v4.camscanner.com", "qpay.qq.com", "dl.wps.cn"]
FIELDS = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "rtt", "query",
    "qclass", "qclass_name", "qtype", "qtype_name", "rcode", "rcode_name", "AA", "TC", "RD", "RA", "Z",
    "answers", "TTLs", "rejected",
)
TYPES = (
    "time", "string", "addr", "port", "addr", "port", "enum", "count", "interval", "string", "count",
    "string", "count", "string", "count", "string", "bool", "bool", "bool", "bool", "count",
    "vector[string]", "vector[interval]", "bool",
)


def _name(rng: random.Random) -> str:
    """One name in a thousand banned; the rest from 50,000 names, a few of them very frequent (as in real DNS)."""
    if rng.random() < 0.001:
        return rng.choice(BANNED)
    rank = int(rng.paretovariate(1.0)) % 50_000
    return f"host{rank}.example{rank % 300}.com"


def _client(rng: random.Random) -> str:
    """2,000 devices."""
    n = rng.randrange(2000)
    return f"10.{n >> 10}.{(n >> 3) & 127}.{(n & 7) + 1}"


def make_zeek(path: Path, lines: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        fh.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
                 "#open\t2026-11-28-10-00-00\n#fields\t" + "\t".join(FIELDS) + "\n#types\t" + "\t".join(TYPES) + "\n")
        ts = 1764320000.0
        for n in range(lines):
            ts += 0.0007
            client = _client(rng)
            answer = f"198.51.{rng.randrange(256)}.{rng.randrange(256)}"
            fh.write(f"{ts:.6f}\tC{n:x}\t{client}\t{rng.randrange(1024, 65535)}\t10.0.0.53\t53\tudp\t{n & 0xFFFF}\t"
                     f"0.001\t{_name(rng)}\t1\tC_INTERNET\t1\tA\t0\tNOERROR\tF\tF\tT\tT\t0\t{answer}\t60.000000\tF\n")
        fh.write("#close\t2026-11-28-11-00-00\n")


def make_eve(path: Path, lines: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for n in range(lines):
            client = _client(rng)
            stamp = f"2026-11-28T10:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}000+0000"
            base = {"timestamp": stamp, "flow_id": rng.randrange(1 << 50), "in_iface": "eth0", "src_ip": client,
                    "src_port": rng.randrange(1024, 65535), "dest_ip": "10.0.0.53", "dest_port": 53, "proto": "UDP"}
            kind = rng.random()
            if kind < 0.25:  # the flow and other records a real eve.json is full of
                base.update(event_type="flow", flow={"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 80,
                                                     "bytes_toclient": 120, "state": "closed", "reason": "timeout"})
            elif kind < 0.75:
                base.update(event_type="dns", dns={"version": 2, "type": "query", "id": n & 0xFFFF,
                                                   "rrname": _name(rng), "rrtype": "A", "tx_id": 0, "opcode": 0})
            elif kind < 0.9:
                base.update(event_type="tls", dest_port=443, proto="TCP",
                            tls={"sni": _name(rng), "version": "TLS 1.3", "ja3": {"hash": "e7d7"}})
            else:
                base.update(event_type="http", dest_port=80, proto="TCP",
                            http={"hostname": _name(rng), "url": "/", "http_method": "GET", "protocol": "HTTP/1.1",
                                  "status": 200, "length": 512})
            fh.write(json.dumps(base, separators=(",", ":")) + "\n")


def timed(cmd: list[str] | str, shell: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, shell=shell, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def netwatch_rate(path: Path, lines: int) -> tuple[float, float]:
    """(seconds, lines/s) of `netwatch logs` in this process (no interpreter start-up in the number)."""
    from netwatch.logs.engine import read_logs
    from netwatch.pipeline import Pipeline
    from netwatch.signatures import load_signature_set

    pipeline = Pipeline(load_signature_set())
    alerts = []
    started = time.perf_counter()
    summary = read_logs([str(path)], pipeline, alerts.append)
    seconds = time.perf_counter() - started
    assert summary.bad == 0 and alerts, "the generated file must read cleanly and hold banned names"
    return seconds, lines / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    zeek, eve = OUT / "dns.log", OUT / "eve.json"
    make_zeek(zeek, args.lines)
    make_eve(eve, args.lines)
    failed = False
    rows = []
    for label, path in (("Zeek dns.log (TSV)", zeek), ("Suricata eve.json", eve)):
        seconds, rate = netwatch_rate(path, args.lines)
        failed |= rate < FLOOR
        rows.append((label, "netwatch logs (read+detect)", seconds, rate))
    awk = "awk -F'\\t' '/^#fields/{for(i=2;i<=NF;i++)c[$i]=i-1;next} /^#/{next} {print $c[\"query\"]}' "
    rows.append(("Zeek dns.log (TSV)", "awk (zeek-cut stand-in)", timed(awk + str(zeek), shell=True), 0.0))
    rows.append(("Zeek dns.log (TSV)", "cut -f10", timed(["cut", "-f10", str(zeek)]), 0.0))
    if shutil.which("jq"):
        rows.append(("Suricata eve.json", "jq (dns rrname)",
                     timed(["jq", "-r", 'select(.event_type=="dns") | .dns.rrname', str(eve)]), 0.0))
    print(f"{args.lines:,} lines per file\n")
    print(f"{'file':<20} {'tool':<30} {'seconds':>8} {'lines/s':>12}")
    for label, tool, seconds, rate in rows:
        rate = rate or args.lines / seconds
        print(f"{label:<20} {tool:<30} {seconds:>8.2f} {rate:>12,.0f}")
    print(f"\nfloor {FLOOR:,} lines/s for netwatch: {'FAILED' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
