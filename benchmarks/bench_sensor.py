"""Live sensor throughput: the highest replay rate with zero kernel drops, for 1 and 2 workers.

Builds two network namespaces joined by a veth pair (the same helper as the system tests),
rewrites every address of a large capture to the namespaces' own addresses with tcprewrite (so
no frame carries any other destination), and replays it with tcpreplay from the client namespace
at increasing packet rates while `netwatch sensor` watches the server end. After each step the
sensor's Prometheus counters say how many frames it saw and how many the kernel dropped.

    python benchmarks/bench_sensor.py                 # generates /tmp/netwatch-bench/sensor.pcap
    python benchmarks/bench_sensor.py --capture F.pcap --rates 100000,200000,400000 --json out.json

Needs root (ip netns), tcpreplay/tcprewrite (Debian tcpreplay) and the built C fast path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS_PORT = 9465


def _load_netns_helpers():  # the test module owns the namespace plumbing; reuse it, do not copy it
    spec = importlib.util.spec_from_file_location("sensor_system", REPO / "tests" / "test_sensor_system.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO))
    spec.loader.exec_module(module)
    return module


def generate(path: Path, packets: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gen_capture.py"), "-o", str(path),
                    "--packets", str(packets), "--size", str(packets * 900)], check=True)


def rewrite(src: Path, dst: Path, ns: object) -> None:
    """Every IPv4/IPv6 source -> the client's address, every destination -> the server's; VLAN tags off.

    tcprewrite maps the IP addresses; the MACs are set here afterwards because tcprewrite 4.4's
    --enet-dmac writes 33:33:xx multicast MACs into IPv6 frames.
    """
    staged = dst.with_suffix(".ip.pcap")
    subprocess.run([
        "tcprewrite", f"--infile={src}", f"--outfile={staged}", "--enet-vlan=del",
        f"--srcipmap=0.0.0.0/0:{ns.CLIENT_IP}/32,[::/0]:[{ns.CLIENT_IP6}/128]",
        f"--dstipmap=0.0.0.0/0:{ns.SERVER_IP}/32,[::/0]:[{ns.SERVER_IP6}/128]",
        "--fixcsum",
    ], check=True, capture_output=True)
    macs = bytes.fromhex(ns.SERVER_MAC.replace(":", "") + ns.CLIENT_MAC.replace(":", ""))
    raw = bytearray(staged.read_bytes())
    magic = struct.unpack_from("<I", raw, 0)[0]
    if magic != 0xA1B2C3D4 or struct.unpack_from("<I", raw, 20)[0] != 1:
        raise SystemExit(f"{src}: expected a little-endian Ethernet pcap")
    off = 24
    while off + 16 <= len(raw):
        caplen = struct.unpack_from("<I", raw, off + 8)[0]
        if caplen >= 12:
            raw[off + 16: off + 28] = macs
        off += 16 + caplen
    dst.write_bytes(raw)
    staged.unlink()


def metrics(net: object, ns: object) -> dict[str, float]:
    code = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics')"
            ".read().decode())")
    text = subprocess.run(net.exec(net.server_ns, [sys.executable, "-c", code]), capture_output=True,
                          text=True, check=True).stdout
    out = {}
    for name in ("packets_seen", "packets_to_python", "kernel_drops", "interface_drops"):
        m = re.search(rf"^netwatch_{name}_total (\S+)$", text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def replay(net: object, capture: Path, pps: int) -> tuple[int, float]:
    """Replay once at `pps` (0 = --topspeed); return (packets sent, actual rate)."""
    rate = f"--pps={pps}" if pps else "--topspeed"
    run = subprocess.run(net.exec(net.client_ns, ["tcpreplay", "-i", net.client_if, rate,
                                                  "--preload-pcap", str(capture)]),
                         capture_output=True, text=True, check=True)
    m = re.search(r"Actual: (\d+) packets .*?\(([\d.]+) pps\)", run.stdout.replace("\n", " "))
    if not m:
        m2 = re.search(r"Actual: (\d+) packets", run.stdout)
        rate = re.search(r"Rated: .*?, ([\d.]+) pps", run.stdout.replace("\n", " "))
        return int(m2.group(1)), float(rate.group(1)) if rate else 0.0
    return int(m.group(1)), float(m.group(2))


def settle(net: object, ns: object, timeout: float = 30.0) -> dict[str, float]:
    """Wait until the sensor's frame counter stops moving (it drained the ring)."""
    last = metrics(net, ns)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.5)  # the workers report every second
        now = metrics(net, ns)
        if now == last:
            return now
        last = now
    return last


def run_workers(ns: object, capture: Path, workers: int, rates: list[int], workdir: Path) -> dict:
    net = ns.NetnsPair()
    net.setup()
    try:
        # The server end becomes a tap (a SPAN port): without addresses its stack drops the replayed
        # frames silently instead of answering every stray segment with a RST, and the sensor sees them.
        subprocess.run(net.exec(net.server_ns, ["ip", "addr", "flush", "dev", net.server_if]), check=True)
        config = workdir / f"bench-{workers}.toml"
        config.write_text(f"workers = {workers}\nmetrics_port = {METRICS_PORT}\noutput = ''\n"
                          f"reminder_interval = 3600\nbuffer_size_mb = 64\n")
        sensor = ns.SensorProc(net, workdir, config)
        steps = []
        best = 0.0
        for pps in rates:
            before = settle(net, ns)
            sent, actual = replay(net, capture, pps)
            after = settle(net, ns)
            delta = {k: after[k] - before[k] for k in after}
            drops = delta["kernel_drops"] + delta["interface_drops"]
            step = {"target_pps": pps, "actual_pps": actual, "sent": sent, "seen": int(delta["packets_seen"]),
                    "to_python": int(delta["packets_to_python"]), "drops": int(drops)}
            steps.append(step)
            print(f"workers={workers} target={pps:>8} actual={actual:>10.0f} pps  sent={sent} "
                  f"seen={step['seen']} to_python={step['to_python']} drops={step['drops']}", flush=True)
            if drops == 0 and step["seen"] >= sent:
                best = max(best, actual)
            else:
                break
        sensor.stop()
        return {"workers": workers, "max_zero_drop_pps": best, "steps": steps}
    finally:
        net.close()


def offline_scan(capture: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from netwatch.cli import main; main()", "scan", str(capture),
                    "--format", "jsonl", "-o", "/dev/null"], check=False, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    seconds = time.perf_counter() - start
    packets = int(subprocess.run(["capinfos", "-c", "-M", str(capture)], capture_output=True, text=True)
                  .stdout.split()[-1]) if Path("/usr/bin/capinfos").exists() else 0
    return {"seconds": round(seconds, 2), "packets": packets, "pps": round(packets / seconds) if packets else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=Path, default=None, help="capture to replay (default: generate one)")
    parser.add_argument("--packets", type=int, default=300_000, help="packets when generating")
    parser.add_argument("--rates", default="50000,100000,200000,300000,400000,0",
                        help="packets/s steps; 0 = as fast as tcpreplay can (--topspeed)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ns = _load_netns_helpers()
    if ns.netns_available():
        print(f"cannot run: {ns.netns_available()}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="netwatch-bench-"))
    source = args.capture or Path("/tmp/netwatch-bench/sensor.pcap")
    if not source.exists():
        generate(source, args.packets)
    capture = workdir / "rewritten.pcap"
    rewrite(source, capture, ns)
    rates = [int(r) for r in args.rates.split(",")]
    results = {"capture": str(source), "live": [], "offline_scan": offline_scan(capture)}
    for workers in (int(w) for w in args.workers.split(",")):
        results["live"].append(run_workers(ns, capture, workers, rates, workdir))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
