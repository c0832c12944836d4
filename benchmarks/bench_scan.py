#!/usr/bin/env python3
"""Run netwatch, tshark and ndpiReader on the same capture, in one run, and compare.

    python benchmarks/bench_scan.py benchmarks/out/bulk.pcap [--tools netwatch,netwatch-alerts,tshark,ndpi] [--json]

Each tool runs in a fresh child process; wall time comes from a monotonic clock and peak
memory from the child's own rusage (os.wait4: ru_maxrss), so the numbers are per tool.
netwatch's JSON lines are then checked against `<capture>.truth.json` (written by
gen_capture.py): every planted (client ip, name) must appear; misses are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME_FILTER = "(dns && dns.flags.response == 0) || tls.handshake.type == 1 || http.request"


@dataclass
class Result:
    tool: str
    command: str
    exit_status: int
    seconds: float
    peak_mb: float
    packets_per_s: float = 0.0
    ratio_vs_netwatch: float | None = None  # tool seconds / netwatch seconds
    note: str = ""


def count_packets(path: Path) -> int:
    """Records in a classic pcap (any byte order), walking headers only; 0 for other formats."""
    with path.open("rb") as handle:
        header = handle.read(24)
        if len(header) < 24:
            return 0
        magic = header[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            order = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            order = ">"
        else:
            return 0
        count, offset, size = 0, 24, path.stat().st_size
        while offset + 16 <= size:
            handle.seek(offset + 8)
            caplen = struct.unpack(order + "I", handle.read(4))[0]
            offset += 16 + caplen
            count += 1
        return count


def run_measured(tool: str, argv: list[str], env: dict[str, str] | None = None,
                 stdout_path: Path | None = None) -> Result:
    """Run argv to completion; wall seconds and the child's peak RSS (KiB on Linux)."""
    stdout = stdout_path.open("wb") if stdout_path else subprocess.DEVNULL
    with tempfile.TemporaryFile() as stderr_file:  # a file, not a pipe: a chatty tool cannot block
        started = time.monotonic()
        try:
            process = subprocess.Popen(argv, stdout=stdout, stderr=stderr_file, env=env)
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if stdout_path:
                stdout.close()
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr_file.seek(0)
        stderr = stderr_file.read().decode(errors="replace").strip()
    note = stderr.splitlines()[-1][:160] if process.returncode not in (0, 1) and stderr else ""
    return Result(tool, shlex.join(argv), process.returncode, round(seconds, 3), round(usage.ru_maxrss / 1024, 1),
                  note=note)


def netwatch_command(option: str | None) -> tuple[list[str], dict[str, str]]:
    """The console script installed beside this Python, else `python -m netwatch.cli` from this checkout.

    Not whatever `netwatch` is first on PATH: a version manager's shim (pyenv) adds ~0.2 s of
    shell start-up to every run, which is not netwatch's time.
    """
    env = dict(os.environ)
    if option:
        return shlex.split(option), env
    script = Path(sys.executable).with_name("netwatch")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return [sys.executable, "-m", "netwatch.cli"], env


def netwatch_found(jsonl: Path) -> set[tuple[str, str]]:
    """(source.ip, netwatch.name) of every event netwatch wrote."""
    found = set()
    with jsonl.open() as handle:
        for line in handle:
            if not line.strip():
                continue
            event = json.loads(line)
            name = (event.get("netwatch") or {}).get("name")
            source = (event.get("source") or {}).get("ip")
            if name and source:
                found.add((source, name.rstrip(".").lower()))
    return found


def tshark_found(output: Path) -> set[tuple[str, str]]:
    found = set()
    for line in output.read_text(errors="replace").splitlines():
        ip4, ip6, *names = (line.split("\t") + [""] * 5)[:5]
        clients = [a for a in ip4.split(",") + ip6.split(",") if a]
        for value in names:
            for name in filter(None, value.split(",")):
                found.update((client, name.lower()) for client in clients)
    return found


def recall(truth: list[dict], found: set[tuple[str, str]]) -> tuple[float, list[dict]]:
    """Share of planted (client ip, name) pairs found; `client_ips` lists accepted alternatives (tunnels)."""
    wanted = [item for item in truth if item.get("evidence") not in ("dhcp_hostname", "resolved_ip")]
    misses = [item for item in wanted
              if not any((ip, item["name"].lower()) in found for ip in item.get("client_ips") or [item["client_ip"]])]
    return (1 - len(misses) / len(wanted)) if wanted else 1.0, misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--truth", type=Path, help="default: <capture>.truth.json when present")
    parser.add_argument("--tools", default="netwatch,netwatch-alerts,tshark,ndpi")
    parser.add_argument("--netwatch-cmd", help="command prefix for netwatch (default: netwatch or python -m)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--keep", type=Path, help="directory to keep tool outputs in")
    args = parser.parse_args(argv)

    capture = args.capture.resolve()
    truth_path = args.truth or capture.with_name(capture.name + ".truth.json")
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    packets = truth.get("packets") or count_packets(capture)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench_scan_"))
    workdir.mkdir(parents=True, exist_ok=True)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    results: list[Result] = []
    report: dict = {"capture": str(capture), "bytes": capture.stat().st_size, "packets": packets,
                    "cpus": os.cpu_count(), "results": [], "recall": {}}

    for tool in tools:
        if tool == "netwatch":
            prefix, env = netwatch_command(args.netwatch_cmd)
            out = workdir / "netwatch.jsonl"
            result = run_measured(tool, [*prefix, "scan", str(capture), "--format", "jsonl", "--all",
                                         "-o", str(out)], env=env)
            if out.exists():
                rate, misses = recall(truth.get("observations", []), netwatch_found(out))
                report["recall"]["netwatch"] = {"recall": round(rate, 4), "misses": misses[:200],
                                                "missed": len(misses)}
        elif tool == "netwatch-alerts":
            # The default mode, findings only: the counterpart of ndpiReader's summary, while the
            # --all run above prints every name, the counterpart of tshark's field output.
            prefix, env = netwatch_command(args.netwatch_cmd)
            result = run_measured(tool, [*prefix, "scan", str(capture), "--format", "jsonl",
                                         "-o", str(workdir / "netwatch-alerts.jsonl")], env=env)
        elif tool == "tshark":
            if not shutil.which("tshark"):
                print("tshark not installed, skipped", file=sys.stderr)
                continue
            out = workdir / "tshark.tsv"
            command = ["tshark", "-r", str(capture), "-T", "fields", "-E", "occurrence=a",
                       "-e", "ip.src", "-e", "ipv6.src", "-e", "dns.qry.name",
                       "-e", "tls.handshake.extensions_server_name", "-e", "http.host", "-Y", NAME_FILTER]
            result = run_measured(tool, command, stdout_path=out)
            rate, misses = recall(truth.get("observations", []), tshark_found(out))
            report["recall"]["tshark"] = {"recall": round(rate, 4), "missed": len(misses)}
        elif tool == "ndpi":
            if not shutil.which("ndpiReader"):
                print("ndpiReader not installed, skipped", file=sys.stderr)
                continue
            result = run_measured(tool, ["ndpiReader", "-i", str(capture), "-q"])
        else:
            parser.error(f"unknown tool {tool!r}")
        results.append(result)

    base = next((r.seconds for r in results if r.tool == "netwatch" and r.exit_status in (0, 1)), None)
    for result in results:
        result.packets_per_s = round(packets / result.seconds) if result.seconds and packets else 0.0
        if base:
            result.ratio_vs_netwatch = round(result.seconds / base, 2)
    report["results"] = [asdict(r) for r in results]

    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{capture.name}: {report['bytes'] / 1e6:.0f} MB, {packets} packets, {os.cpu_count()} CPUs")
        print(f"{'tool':<10}{'seconds':>10}{'packets/s':>14}{'peak MB':>10}{'x netwatch':>12}  exit")
        for r in results:
            ratio = f"{r.ratio_vs_netwatch:.2f}" if r.ratio_vs_netwatch is not None else "-"
            print(f"{r.tool:<10}{r.seconds:>10.2f}{r.packets_per_s:>14,.0f}{r.peak_mb:>10.1f}{ratio:>12}"
                  f"  {r.exit_status} {r.note}")
        for tool, info in report["recall"].items():
            print(f"{tool} recall of planted names: {info['recall']:.2%} ({info['missed']} missed)")
            for miss in info.get("misses", [])[:20]:
                print(f"  missed: {miss['client_ip']} {miss['name']} ({miss['evidence']}"
                      f"{', ' + miss['variant'] if miss.get('variant') else ''})")
    netwatch_ok = all(r.exit_status in (0, 1) for r in results if r.tool.startswith("netwatch"))
    return 0 if netwatch_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
