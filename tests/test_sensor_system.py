"""End-to-end: `netwatch sensor` on a veth inside network namespaces this test builds and removes.

Topology (addresses exist only inside the two namespaces):

    client ns  nwc<tag> 02:13:00:00:00:10 10.213.7.10/24  <-veth->  nws<tag> 10.213.7.2/24  server ns
                                                                   dnsmasq, TLS :443, HTTP :80, UDP :443
                                                                   netwatch sensor -i nws<tag>

The client resolves names with the real dnsmasq, opens TLS with SNI, sends a real QUIC Initial
(aioquic) and an HTTP request; the sensor must report each with the client's MAC and IP.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
CLIENT_MAC = "02:13:00:00:00:10"
SERVER_MAC = "02:13:00:00:00:02"
NET = "10.213.7"
CLIENT_IP, SERVER_IP = f"{NET}.10", f"{NET}.2"
CLIENT_IP6, SERVER_IP6 = "fd00:213:7::10", "fd00:213:7::2"  # unique local (RFC 4193), namespaces only

# Names from the bundled signatures (signatures/apps/*.yaml), one per evidence kind.
DNS_NAME = "openapi.alipay.com"
TLS_NAME = "pay.weixin.qq.com"
QUIC_NAME = "mobilegw.alipay.com"
HTTP_NAME = "api.mch.weixin.qq.com"
NEW_NAME = "newly-banned.netwatch-test.example"  # only in the overlay added before SIGHUP

pytestmark = pytest.mark.system


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


class NetnsPair:
    """Two namespaces joined by a veth pair; everything is removed by `close()`."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.client_ns, self.server_ns = f"nwtest-{tag}-c", f"nwtest-{tag}-s"
        self.client_if, self.server_if = f"nwc{tag}", f"nws{tag}"
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "link", "add", self.client_if, "netns", self.client_ns, "type", "veth", "peer", "name",
              self.server_if, "netns", self.server_ns])
        for ns, ifname, mac, ip, ip6 in ((self.client_ns, self.client_if, CLIENT_MAC, CLIENT_IP, CLIENT_IP6),
                                         (self.server_ns, self.server_if, SERVER_MAC, SERVER_IP, SERVER_IP6)):
            _run(["ip", "-n", ns, "link", "set", ifname, "address", mac])
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname])
            _run(["ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", ifname, "nodad"])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def exec(self, ns: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def popen(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen:
        proc = subprocess.Popen(self.exec(ns, cmd), **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for ns in (self.client_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def netns_available() -> str | None:
    """None when namespaces can be created here, else the reason."""
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    probe = f"nwtest-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture
def testnet() -> Iterator[NetnsPair]:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    net = NetnsPair()
    try:
        net.setup()
        yield net
    finally:
        net.close()


SERVER_SCRIPT = textwrap.dedent("""
    import http.server, socket, ssl, sys, threading
    cert, key, ip = sys.argv[1], sys.argv[2], sys.argv[3]
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok"
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a): pass
    httpd = http.server.ThreadingHTTPServer((ip, 80), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((ip, 443))  # QUIC sink
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
    srv = socket.create_server((ip, 443))
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(100)
        except (OSError, ssl.SSLError):
            pass
""")

CLIENT_SCRIPT = textwrap.dedent("""
    import http.client, socket, ssl, sys, time
    import dns.resolver
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    server, what, name = sys.argv[1], sys.argv[2], sys.argv[3]
    if what == "dns":
        res = dns.resolver.Resolver(configure=False); res.nameservers = [server]; res.lifetime = 5
        print(" ".join(r.address for r in res.resolve(name, "A")))
    elif what == "tls":
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((server, 443), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(b"hello"); print(tls.version())
    elif what == "quic":
        conf = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=name)
        conn = QuicConnection(configuration=conf)
        conn.connect((server, 443), now=time.time())
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for data, addr in conn.datagrams_to_send(now=time.time()):
            udp.sendto(data, addr)
        print("sent")
    elif what == "http":
        c = http.client.HTTPConnection(server, 80, timeout=5)
        c.request("GET", "/", headers={"Host": name, "User-Agent": "netwatch-test"})
        print(c.getresponse().status)
""")


class SensorProc:
    """`netwatch sensor` running in the server namespace, with its output and logs in files."""

    def __init__(self, net: NetnsPair, workdir: Path, config: Path, extra: list[str] | None = None) -> None:
        self.net, self.workdir = net, workdir
        self.out = workdir / "alerts.jsonl"
        self.log = workdir / f"sensor-{len(list(workdir.glob('sensor-*.log')))}.log"  # one per run
        self.db = workdir / "state" / "netwatch.db"
        code = "from netwatch.sensor.cli import sensor; sensor()"
        cmd = [sys.executable, "-c", code, "-i", net.server_if, "--db", str(self.db), "-o", str(self.out),
               "--config", str(config), "--stats-interval", "1", "--evidence-dir", str(workdir / "evidence"),
               *(extra or [])]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log_fh = open(self.log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = net.popen(net.server_ns, cmd, stdout=subprocess.DEVNULL, stderr=self.log_fh, env=env)
        self.wait_log(lambda r: r.get("msg") == "sensor started", 60, "sensor did not start")

    def logs(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line})
        return out

    def wait_log(self, pred: Callable[[dict], bool], timeout: float, why: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for rec in self.logs():
                if pred(rec):
                    return rec
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{why}; log:\n{self.log.read_text(errors='replace')[-4000:]}")

    def events(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def wait_events(self, pred: Callable[[dict], bool], count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if pred(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def stop(self, expected_errors: tuple[str, ...] = ()) -> int:
        """SIGTERM; the exit code. Fails on any error log line not listed (e.g. a worker that hung)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.log_fh.close()
        errors = [r for r in self.logs() if r.get("level") == "error" and not r["msg"].startswith(expected_errors)]
        assert not errors, errors
        return code


def client(net: NetnsPair, what: str, name: str) -> str:
    script = net.workdir / "client.py"  # type: ignore[attr-defined]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(net.exec(net.client_ns, [sys.executable, str(script), SERVER_IP, what, name]),
                         capture_output=True, text=True, timeout=30, env=env)
    assert run.returncode == 0, f"client {what} {name} failed: {run.stderr}"
    return run.stdout.strip()


def start_servers(net: NetnsPair, workdir: Path) -> None:
    require_tool("dnsmasq", "dnsmasq-base")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    _run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
          "-keyout", str(key), "-out", str(cert), "-subj", "/CN=netwatch-test", "-days", "1"])
    names = [DNS_NAME, TLS_NAME, QUIC_NAME, HTTP_NAME, NEW_NAME]
    net.popen(net.server_ns, ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--interface={net.server_if}",
                              "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-facility=/dev/null",
                              f"--pid-file={workdir / 'dnsmasq.pid'}",
                              *[f"--address=/{n}/{SERVER_IP}" for n in names]],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (workdir / "server.py").write_text(SERVER_SCRIPT)
    (workdir / "client.py").write_text(CLIENT_SCRIPT)
    server = net.popen(net.server_ns, [sys.executable, str(workdir / "server.py"), str(cert), str(key), SERVER_IP],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout.readline().strip() == "ready"
    net.workdir = workdir  # type: ignore[attr-defined]
    # dnsmasq needs a moment to bind; the first real query proves it answers
    deadline = time.monotonic() + 10
    while True:
        try:
            assert client(net, "dns", DNS_NAME) == SERVER_IP
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


GOOD_OVERLAY = textwrap.dedent(f"""
    kind: rules
    id: netwatch_test
    description: test-only rule added before SIGHUP
    rules:
      - match: exact
        pattern: {NEW_NAME}
        app: alipay
        confidence: high
        role: client
        sources: [https://netwatch.example.org/tests]
""")


def _alerts_for(events: list[dict], name: str, evidence: str) -> list[dict]:
    return [e for e in events if e["event"]["kind"] == "alert" and e["netwatch"]["name"] == name
            and e["netwatch"]["evidence"] == evidence]


def _by_client(event: dict) -> bool:
    return (event["netwatch"]["device"]["id"] == CLIENT_MAC and event["source"]["ip"] == CLIENT_IP
            and event["source"]["mac"] == CLIENT_MAC.upper().replace(":", "-"))


def _devices(db: Path) -> list[dict]:
    code = "from netwatch.sensor.cli import devices; devices()"
    run = subprocess.run([sys.executable, "-c", code, "--db", str(db), "--format", "jsonl"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def _metrics(net: NetnsPair, port: int) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    return _run(net.exec(net.server_ns, [sys.executable, "-c", code])).stdout


def test_sensor_end_to_end_reload_restart(testnet: NetnsPair, tmp_path: Path) -> None:
    start_servers(testnet, tmp_path)
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    config = tmp_path / "sensor.toml"
    # reminder_interval 0 first, so every detection is reported; SIGHUP later raises it to 1 h
    config.write_text(f'signatures = ["{overlay}"]\nreminder_interval = 0\nmetrics_port = 9464\n')
    sensor = SensorProc(testnet, tmp_path, config)

    # 1. one detection per evidence kind, each attributed to the client's MAC and IP
    assert client(testnet, "dns", DNS_NAME) == SERVER_IP
    client(testnet, "tls", TLS_NAME)
    assert client(testnet, "quic", QUIC_NAME) == "sent"
    assert client(testnet, "http", HTTP_NAME) == "200"
    expected = [(DNS_NAME, "dns_query"), (TLS_NAME, "tls_sni"), (QUIC_NAME, "quic_sni"), (HTTP_NAME, "http_host")]
    for name, evidence in expected:
        found = sensor.wait_events(lambda e, n=name, ev=evidence: bool(_alerts_for([e], n, ev)), 1)
        got = [(e["netwatch"]["name"], e["netwatch"]["evidence"]) for e in sensor.events()]
        assert found, f"no {evidence} alert for {name}; got {got}"
        assert all(_by_client(e) for e in found), found
        assert found[0]["observer"]["type"] == "sensor"
    reasons = {(e["netwatch"]["app"], e["netwatch"]["aggregation"]["reason"]) for e in sensor.events()}
    assert ("alipay", "first_contact") in reasons and ("wechat_pay", "first_contact") in reasons

    # evidence pcap: the alert names its file, and the file holds the query
    dns_alert = _alerts_for(sensor.events(), DNS_NAME, "dns_query")[0]
    ev_file = Path(dns_alert["netwatch"]["capture"]["evidence_file"])
    assert ev_file.exists() and ev_file.stat().st_size > 24
    assert DNS_NAME.split(".")[0].encode() in ev_file.read_bytes()

    # 2. metrics endpoint (workers report their capture counters periodically: wait for the first report)
    deadline = time.monotonic() + 20
    while True:
        text = _metrics(testnet, 9464)
        seen = float(re.search(r"^netwatch_packets_seen_total (\S+)$", text, re.M).group(1))
        if seen > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert seen > 0
    assert re.search(r'^netwatch_detections_total\{app="alipay"\} [1-9]', text, re.M)
    assert "netwatch_kernel_drops_total 0.0" in text
    assert "netwatch_signature_set_info{" in text

    # 3. SIGHUP with a broken overlay: rejected, old set kept, a log line says why
    (overlay / "broken.yaml").write_text("kind: rules\nrules:\n  - match: exact\n    pattern: [unclosed\n")
    sensor.proc.send_signal(signal.SIGHUP)
    rec = sensor.wait_log(lambda r: r.get("msg", "").startswith("reload rejected"), 20, "no rejection logged")
    assert "broken.yaml" in rec["error"]
    client(testnet, "dns", NEW_NAME)
    good_config = config.read_text()
    config.write_text(good_config + "reminder_interval = 'soon'\n")  # a bad config file is rejected too
    sensor.proc.send_signal(signal.SIGHUP)
    rec = sensor.wait_log(lambda r: r.get("msg", "").startswith("reload rejected: bad configuration"), 20,
                          "no rejection of the bad config logged")
    assert "sensor.toml" in rec["error"]
    config.write_text(good_config)
    # 4. SIGHUP with a good overlay: the new rule applies
    (overlay / "broken.yaml").unlink()
    (overlay / "test.yaml").write_text(GOOD_OVERLAY)
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_log(lambda r: r.get("msg") == "worker applied signatures", 20, "workers did not reload")
    assert not _alerts_for(sensor.events(), NEW_NAME, "dns_query")  # before the reload: not a banned name
    client(testnet, "dns", NEW_NAME)
    assert sensor.wait_events(lambda e: bool(_alerts_for([e], NEW_NAME, "dns_query")), 1), "reload not applied"

    # 5. config reload: reminder interval 1 h; repeats are now aggregated (counted, no new line)
    config.write_text(f'signatures = ["{overlay}"]\nreminder_interval = 3600\nmetrics_port = 9464\n')
    sensor.proc.send_signal(signal.SIGHUP)
    sensor.wait_log(lambda r: r.get("msg") == "reloaded" and r.get("signature_hash"), 20, "no reload")
    time.sleep(1.5)  # the previous alert lines are written
    lines_before = len(sensor.events())
    for _ in range(3):
        client(testnet, "dns", DNS_NAME)
    time.sleep(2.5)  # let the repeats reach the sensor (a delivery window, not a timing assertion)
    assert len(sensor.events()) == lines_before
    inventory = {d["id"]: d for d in _devices(sensor.db)}  # read while the sensor runs
    assert CLIENT_IP in inventory[CLIENT_MAC]["ips"]
    alipay = inventory[CLIENT_MAC]["apps"]["alipay"]
    assert alipay["counts"]["dns_query"] == 5  # test query, new name after the reload, 3 repeats
    assert alipay["counts"]["quic_sni"] == 1
    assert inventory[CLIENT_MAC]["apps"]["wechat_pay"]["counts"] == {"tls_sni": 1, "http_host": 1}

    # 6. interface down and up: capture is re-opened and detection continues
    count = inventory[CLIENT_MAC]["apps"]["alipay"]["counts"]["dns_query"]
    _run(testnet.exec(testnet.server_ns, ["ip", "link", "set", testnet.server_if, "down"]))
    time.sleep(1.0)
    _run(testnet.exec(testnet.server_ns, ["ip", "link", "set", testnet.server_if, "up"]))
    sensor.wait_log(lambda r: len([x for x in sensor.logs() if x.get("msg") == "capture opened"]) >= 2, 30,
                    "capture was not re-opened after the interface came back")
    client(testnet, "dns", DNS_NAME)
    deadline = time.monotonic() + 10
    while _devices(sensor.db)[0]["apps"]["alipay"]["counts"]["dns_query"] <= count:
        assert time.monotonic() < deadline, "no detection after the interface came back"
        time.sleep(0.3)

    # 7. SIGTERM: clean stop, state kept; a restart remembers everything
    assert sensor.stop(expected_errors=("reload rejected",)) == 0
    assert any(r.get("msg") == "sensor stopped" for r in sensor.logs())
    before = {d["id"]: d for d in _devices(sensor.db)}
    assert set(before[CLIENT_MAC]["apps"]) >= {"alipay", "wechat_pay"}
    sensor2 = SensorProc(testnet, tmp_path, config)
    lines = len(sensor2.events())
    client(testnet, "dns", DNS_NAME)  # known contact within the reminder interval: counted, not re-alerted
    time.sleep(2.5)
    assert len(sensor2.events()) == lines
    assert sensor2.stop() == 0
    after = {d["id"]: d for d in _devices(sensor2.db)}
    assert after[CLIENT_MAC]["apps"]["alipay"]["counts"]["dns_query"] == (
        before[CLIENT_MAC]["apps"]["alipay"]["counts"]["dns_query"] + 1)
    assert after[CLIENT_MAC]["apps"]["alipay"]["first_seen"] == before[CLIENT_MAC]["apps"]["alipay"]["first_seen"]


def test_sensor_workers_merge_into_one_stream(testnet: NetnsPair, tmp_path: Path) -> None:
    """Two PACKET_FANOUT workers: every detection once, one device, both workers get traffic."""
    start_servers(testnet, tmp_path)
    config = tmp_path / "sensor.toml"
    config.write_text("reminder_interval = 0\nworkers = 2\n")
    sensor = SensorProc(testnet, tmp_path, config)
    pids = {r["pid"] for r in sensor.logs() if r.get("msg") == "worker ready"}
    assert len(pids) == 2
    for _ in range(6):  # new source port each time: the flows hash to both workers
        client(testnet, "dns", DNS_NAME)
        client(testnet, "tls", TLS_NAME)
    alerts = sensor.wait_events(lambda e: e["event"]["kind"] == "alert", 12)
    got = sorted((e["netwatch"]["name"], e["netwatch"]["evidence"]) for e in alerts)
    assert got == sorted([(DNS_NAME, "dns_query")] * 6 + [(TLS_NAME, "tls_sni")] * 6)
    assert all(_by_client(e) for e in alerts)
    time.sleep(2.5)  # one more heartbeat (stats interval 1 s)
    from netwatch.sensor.cli import check_health

    ok, report = check_health(str(sensor.db))
    assert ok, report
    from netwatch.sensor.state import StateDB

    beat = StateDB(sensor.db, readonly=True).get_meta("heartbeat")
    assert len(beat["worker_frames"]) == 2 and all(n > 0 for n in beat["worker_frames"]), beat

    # a worker that dies is restarted and the stream goes on
    os.kill(sorted(pids)[0], signal.SIGKILL)
    sensor.wait_log(lambda r: r.get("msg") == "worker ready" and r["pid"] not in pids, 30, "worker not restarted")
    for _ in range(4):
        client(testnet, "dns", DNS_NAME)
    assert len(sensor.wait_events(lambda e: e["event"]["kind"] == "alert", 16)) == 16
    assert sensor.stop(expected_errors=("worker exited",)) == 0
    [device] = _devices(sensor.db)
    assert device["id"] == CLIENT_MAC
    assert device["apps"]["alipay"]["counts"] == {"dns_query": 10}
    assert device["apps"]["wechat_pay"]["counts"] == {"tls_sni": 6}
    ok, report = check_health(str(sensor.db))
    assert not ok and "stopped" in report["problem"]


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(src_ip: str, proto: int, l4: bytes) -> bytes:
    """Ethernet + IPv4 from the client to the server (the test network's own addresses only)."""
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0,
                               socket.inet_aton(src_ip), socket.inet_aton(SERVER_IP)))
    struct.pack_into("!H", ip, 10, _ip_checksum(bytes(ip)))
    macs = bytes.fromhex(SERVER_MAC.replace(":", "")) + bytes.fromhex(CLIENT_MAC.replace(":", ""))
    return macs + b"\x08\x00" + bytes(ip) + l4


def write_flood_pcap(path: Path, n_syn: int, n_dns: int, n_garbage: int, n_frags: int = 0,
                     seed: int = 7) -> int:
    """Random-port SYNs, random-name DNS queries, malformed DNS/TLS/QUIC payloads and IPv4 first
    fragments that are never completed, as a pcap."""
    rng = random.Random(seed)
    frames = []
    for _ in range(n_frags):  # MF set, random id: each one opens a reassembly that never finishes
        body = rng.randbytes(1200)
        frame = bytearray(_frame(CLIENT_IP, 17, body))
        struct.pack_into("!HH", frame, 14 + 4, rng.getrandbits(16), 0x2000)
        struct.pack_into("!H", frame, 14 + 10, 0)
        struct.pack_into("!H", frame, 14 + 10, _ip_checksum(bytes(frame[14:34])))
        frames.append(bytes(frame))
    for _ in range(n_syn):
        src = f"{NET}.{rng.randrange(20, 250)}"
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536), rng.randrange(1, 65536),
                          rng.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
        frames.append(_frame(src, 6, tcp))
    for _ in range(n_dns):
        labels = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz0123456789", k=rng.randrange(3, 40)))
                  for _ in range(rng.randrange(2, 6))]
        qname = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
        dns = struct.pack("!HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01"
        frames.append(_frame(CLIENT_IP, 17, struct.pack("!HHHH", rng.randrange(1024, 65536), 53,
                                                        8 + len(dns), 0) + dns))
    for i in range(n_garbage):
        junk = rng.randbytes(rng.randrange(1, 1200))
        if i % 3 == 0:  # DNS header claiming thousands of records
            junk = struct.pack("!HHHHHH", 1, 0x0100, 65535, 65535, 65535, 65535) + junk
            l4 = struct.pack("!HHHH", 40000 + i % 1000, 53, 8 + len(junk), 0) + junk
            frames.append(_frame(CLIENT_IP, 17, l4))
        elif i % 3 == 1:  # TLS record claiming a 16 MB ClientHello
            junk = b"\x16\x03\x01\xff\xff\x01\xff\xff\xff" + junk
            tcp = struct.pack("!HHIIBBHHH", 30000 + i % 5000, 443, 1, 0, 5 << 4, 0x18, 64240, 0, 0)
            frames.append(_frame(CLIENT_IP, 6, tcp + junk))
        else:  # a QUIC long header with a random body
            junk = b"\xc3\x00\x00\x00\x01\x08" + junk
            frames.append(_frame(CLIENT_IP, 17, struct.pack("!HHHH", 50000 + i % 1000, 443, 8 + len(junk), 0)
                                 + junk))
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n, frame in enumerate(frames):
            fh.write(struct.pack("<IIII", 1767600000 + n // 1000, n % 1000, len(frame), len(frame)) + frame)
    return len(frames)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


RSS_BOUND_MB = 300  # per sensor process (parent or worker) with max_flows=4096


def test_sensor_survives_hostile_flood(testnet: NetnsPair, tmp_path: Path) -> None:
    require_tool("tcpreplay", "tcpreplay")
    start_servers(testnet, tmp_path)
    flood = tmp_path / "flood.pcap"
    total = write_flood_pcap(flood, n_syn=30000, n_dns=10000, n_garbage=3000, n_frags=5000)
    config = tmp_path / "sensor.toml"
    config.write_text("max_flows = 4096\nreminder_interval = 3600\n")
    sensor = SensorProc(testnet, tmp_path, config)
    pids = [sensor.proc.pid] + [r["pid"] for r in sensor.logs() if r.get("msg") == "worker ready"]
    replay = _run(testnet.exec(testnet.client_ns, ["tcpreplay", "-i", testnet.client_if, "--pps", "20000",
                                                    str(flood)]))
    assert f"{total} packets" in replay.stdout.replace("Actual: ", ""), replay.stdout
    client(testnet, "dns", DNS_NAME)  # real traffic after the flood is still detected
    assert sensor.wait_events(lambda e: bool(_alerts_for([e], DNS_NAME, "dns_query")), 1, timeout=20)
    assert sensor.proc.poll() is None, "sensor died during the flood"
    peaks = {pid: _peak_rss_mb(pid) for pid in pids}
    print("peak RSS MB per process:", peaks)
    assert all(mb < RSS_BOUND_MB for mb in peaks.values()), peaks
    time.sleep(1.5)
    stats = [r for r in sensor.logs() if r.get("msg") in ("capture statistics",
                                                           "packets dropped before the sensor saw them")][-1]
    assert stats["frames"] + stats["kernel_dropped"] >= total
    assert stats["malformed"] > 0  # the garbage was parsed, counted and survived
    assert sensor.stop() == 0


def test_sensor_keeps_capturing_without_a_database(testnet: NetnsPair, tmp_path: Path) -> None:
    """An unusable database is reported loudly; alerts still flow."""
    start_servers(testnet, tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")  # the database's parent is a regular file: it can never be created
    config = tmp_path / "sensor.toml"
    config.write_text("")
    forwarded = tmp_path / "forwarded.jsonl"
    sensor = SensorProc(testnet, tmp_path, config, ["--db", str(blocker / "netwatch.db"),
                                                     "--forward", f"file://{forwarded}",
                                                     "--forward-state-dir", str(tmp_path / "fwd")])
    rec = sensor.wait_log(lambda r: r.get("msg", "").startswith("state database unavailable"), 10,
                          "no error about the database")
    assert rec["level"] == "error" and "not-a-dir" in rec["error"]
    client(testnet, "dns", DNS_NAME)
    [alert] = sensor.wait_events(lambda e: bool(_alerts_for([e], DNS_NAME, "dns_query")), 1)
    assert sensor.stop(expected_errors=("state database unavailable",)) == 0
    # the forwarder got the same alert (delivered by the time the sensor stopped)
    sent = [json.loads(line) for line in forwarded.read_text().splitlines()]
    assert [e["event"]["id"] for e in sent] == [alert["event"]["id"]]


def test_sensor_fails_fast_on_a_missing_interface(tmp_path: Path) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    ns = f"nwtest-{secrets.token_hex(3)}-x"
    _run(["ip", "netns", "add", ns])
    try:
        code = "from netwatch.sensor.cli import sensor; sensor()"
        run = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, "-i", "nwnosuch0",
                              "--db", str(tmp_path / "n.db")], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert run.returncode == 2  # an input error, reported before any worker starts
    errors = [json.loads(line) for line in run.stderr.splitlines() if '"level":"error"' in line]
    assert [e["error"] for e in errors] == ["cannot capture on nwnosuch0: no such device"], run.stderr
    assert "worker" not in run.stderr


def test_sensor_reports_kernel_drops(testnet: NetnsPair, tmp_path: Path) -> None:
    """A stalled worker overflows its 1 MiB ring: the drops appear in a warning line and the metrics."""
    require_tool("tcpreplay", "tcpreplay")
    flood = tmp_path / "flood.pcap"
    total = write_flood_pcap(flood, n_syn=20000, n_dns=0, n_garbage=0)
    config = tmp_path / "sensor.toml"
    config.write_text("buffer_size_mb = 1\nmetrics_port = 9466\n")
    sensor = SensorProc(testnet, tmp_path, config)
    [worker] = [r["pid"] for r in sensor.logs() if r.get("msg") == "worker ready"]
    os.kill(worker, signal.SIGSTOP)
    try:
        _run(testnet.exec(testnet.client_ns, ["tcpreplay", "-i", testnet.client_if, "--pps", "20000", str(flood)]))
    finally:
        os.kill(worker, signal.SIGCONT)
    rec = sensor.wait_log(lambda r: r.get("msg") == "packets dropped before the sensor saw them", 15,
                          "no drop warning")
    assert rec["level"] == "warning" and rec["new_drops"] > 0
    text = _metrics(testnet, 9466)
    drops = float(re.search(r"^netwatch_kernel_drops_total (\S+)$", text, re.M).group(1))
    seen = float(re.search(r"^netwatch_packets_seen_total (\S+)$", text, re.M).group(1))
    assert drops > 0 and seen < total  # the kernel dropped what the ring could not hold
    assert sensor.stop() == 0


def test_sensor_forwards_alerts_and_notices_only_when_asked(testnet: NetnsPair, tmp_path: Path) -> None:
    """Forwarders get alerts by default (docs/siem.md); `forward_events = "all"` adds the notices."""
    start_servers(testnet, tmp_path)
    forwarded = {}
    for choice in ("alerts", "all"):
        workdir = tmp_path / choice
        workdir.mkdir()
        config = workdir / "sensor.toml"
        config.write_text(f'forward_events = "{choice}"\n')
        forwarded[choice] = workdir / "forwarded.jsonl"
        sensor = SensorProc(testnet, workdir, config, ["--db", str(workdir / "n.db"),
                                                       "--forward", f"file://{forwarded[choice]}",
                                                       "--forward-state-dir", str(workdir / "fwd")])
        client(testnet, "tls", "dns.google")  # a DoH resolver: a blind-spot notice, not an alert
        client(testnet, "dns", DNS_NAME)
        reported = sensor.wait_events(lambda e: e["netwatch"].get("evidence") in ("encrypted_dns", "dns_query"), 2)
        assert {e["event"]["kind"] for e in reported} == {"alert", "event"}
        assert sensor.stop() == 0
    kinds = {choice: sorted(json.loads(line)["event"]["kind"] for line in path.read_text().splitlines())
             for choice, path in forwarded.items()}
    assert kinds == {"alerts": ["alert"], "all": ["alert", "event"]}
