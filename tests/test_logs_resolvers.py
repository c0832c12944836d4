"""Real resolvers write the logs: BIND 9, Unbound and dnsmasq answer a client in network namespaces
this test builds (and removes), with query logging on; `netwatch logs` reads what they wrote.

    client ns  nlc<tag> 10.219.3.10/24  <-veth->  nls<tag> 10.219.3.2/24  server ns: named | unbound | dnsmasq

The servers answer from local data (there is no internet here): banned names resolve to
documentation addresses, neutral names too. The consistency test also captures the exchange with
tcpdump and checks that `netwatch scan` on the capture and `netwatch logs` on dnsmasq's log find
the same (device address, app) pairs.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NET = "10.219.3"
CLIENT_IP, SERVER_IP = f"{NET}.10", f"{NET}.2"
CLIENT_MAC = "02:19:00:00:00:10"
BANNED = {"mobilegw.alipay.com": "alipay", "v4.camscanner.com": "camscanner", "pay.weixin.qq.com": "wechat_pay"}
NEUTRAL = ["www.example.org", "notalipay.com.example.org"]
ADDRESS = {name: f"198.51.100.{i}" for i, name in enumerate([*BANNED, *NEUTRAL], 10)}

pytestmark = pytest.mark.system

QUERY_SCRIPT = textwrap.dedent("""
    import sys, dns.message, dns.query, dns.rdatatype
    server = sys.argv[1]
    for name in sys.argv[2:]:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=5)
        print(name, [r.to_text() for rrset in reply.answer for r in rrset])
""")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60, **kw)


class Lab:
    """Client and server namespaces joined by a veth pair; `close()` removes them and their processes."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.client_ns, self.server_ns = f"nwlogs-{tag}-c", f"nwlogs-{tag}-s"
        self.client_if, self.server_if = f"nlc{tag}", f"nls{tag}"
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "link", "add", self.client_if, "netns", self.client_ns, "type", "veth", "peer", "name",
              self.server_if, "netns", self.server_ns])
        for ns, ifname, ip in ((self.client_ns, self.client_if, CLIENT_IP), (self.server_ns, self.server_if,
                                                                              SERVER_IP)):
            if ns == self.client_ns:
                _run(["ip", "-n", ns, "link", "set", ifname, "address", CLIENT_MAC])
            _run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def server(self, cmd: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.server_ns, *cmd], **kw)
        self.procs.append(proc)
        return proc

    def query(self, names: list[str]) -> str:
        """Ask the server from the client namespace (dnspython); retried while the server starts."""
        cmd = ["ip", "netns", "exec", self.client_ns, sys.executable, "-c", QUERY_SCRIPT, SERVER_IP, *names]
        deadline = time.monotonic() + 20
        while True:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if done.returncode == 0 or time.monotonic() > deadline:
                assert done.returncode == 0, done.stderr
                return done.stdout
            time.sleep(0.3)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        for ns in (self.client_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if not shutil.which("ip"):
        pytest.skip("iproute2 (ip) is not installed")
    probe = f"nwlogs-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    lab = Lab()
    try:
        lab.setup()
        yield lab
    finally:
        lab.close()


def need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not path:
        pytest.skip(f"{binary} is not installed (Debian package {package})")
    return path


def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return path.read_text(errors="replace")
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {path}: {path.read_text() if path.exists() else 'missing'}")


def netwatch_logs(*args: object) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", "--format", "jsonl", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def alert_pairs(events: list[dict]) -> set[tuple[str, str]]:
    return {(e["source"]["ip"], e["netwatch"]["app"]) for e in events if e["event"]["kind"] == "alert"}


EXPECTED = {(CLIENT_IP, app) for app in BANNED.values()}


def check_log(log: Path, fmt: str) -> list[dict]:
    code, events, err = netwatch_logs(log, "--all")
    assert code == 1, err
    assert "not readable" not in err, err
    assert alert_pairs(events) == EXPECTED, (log.read_text(), events)
    seen = {e["netwatch"]["name"] for e in events if e["netwatch"]["evidence"] == "dns_query"}
    assert set(NEUTRAL) <= seen  # neutral names are read too, and raise nothing
    assert all(e["netwatch"]["capture"]["file"] == str(log) for e in events)
    assert f"({fmt})" in err, err
    return events


# -- BIND 9 ---------------------------------------------------------------------------------------

def _zone_file(directory: Path, origin: str, names: list[str]) -> Path:
    path = directory / f"{origin}.zone"
    records = "\n".join(f"{n}. 60 IN A {ADDRESS[n]}" for n in names)
    path.write_text(f"$TTL 60\n@ IN SOA ns.{origin}. admin.{origin}. 1 60 60 600 60\n@ IN NS ns.{origin}.\n"
                    f"ns.{origin}. IN A {SERVER_IP}\n{records}\n")
    return path


def _named_conf(tmp: Path, *, view: bool, print_time: str) -> Path:
    zones = {}
    for name in [*BANNED, *NEUTRAL]:
        origin = ".".join(name.split(".")[-2:]) if not name.endswith("example.org") else "example.org"
        zones.setdefault(origin, []).append(name)
    zone_text = "".join(f'zone "{o}" {{ type primary; file "{_zone_file(tmp, o, n)}"; }};\n' for o, n in zones.items())
    body = f'view "internal" {{ match-clients {{ any; }}; recursion no;\n{zone_text}}};\n' if view else zone_text
    conf = tmp / "named.conf"
    conf.write_text(textwrap.dedent(f"""
        options {{ directory "{tmp}"; pid-file "{tmp}/named.pid"; listen-on {{ {SERVER_IP}; }};
                  listen-on-v6 {{ none; }}; recursion no; allow-query {{ any; }}; dnssec-validation no;
                  querylog yes; }};
        logging {{ channel querylog {{ file "{tmp}/querylog" versions 3 size 10m; print-time {print_time};
                   print-category yes; print-severity yes; severity info; }};
                  category queries {{ querylog; }}; }};
        """) + body)
    return conf


@pytest.mark.parametrize(("view", "print_time"), [(False, "yes"), (True, "iso8601-utc")])
def test_bind_querylog(lab: Lab, tmp_path: Path, view: bool, print_time: str):
    named = need("named", "bind9")
    conf = _named_conf(tmp_path, view=view, print_time=print_time)
    check = subprocess.run([need("named-checkconf", "bind9-utils"), str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    lab.server([named, "-f", "-4", "-c", str(conf)], stdout=subprocess.DEVNULL,
               stderr=open(tmp_path / "named.stderr", "w"))  # noqa: SIM115
    lab.query([*BANNED, *NEUTRAL])
    text = wait_for_text(tmp_path / "querylog", NEUTRAL[-1])
    assert "client @0x" in text and ("view internal: query:" in text) == view
    events = check_log(tmp_path / "querylog", "bind")
    assert all(e["destination"]["ip"] == SERVER_IP for e in events)


# -- Unbound ---------------------------------------------------------------------------------------

def test_unbound_log_queries_and_replies(lab: Lab, tmp_path: Path):
    unbound = need("unbound", "unbound")
    local = "".join(f'    local-data: "{n}. 60 IN A {a}"\n' for n, a in ADDRESS.items())
    zones = "".join(f'    local-zone: "{z}." static\n' for z in ("alipay.com", "camscanner.com", "qq.com",
                                                                   "example.org"))
    conf = tmp_path / "unbound.conf"
    conf.write_text(f"""server:
    interface: {SERVER_IP}
    port: 53
    access-control: {NET}.0/24 allow
    do-ip6: no
    chroot: ""
    username: ""
    directory: "{tmp_path}"
    pidfile: "{tmp_path}/unbound.pid"
    use-syslog: no
    logfile: "{tmp_path}/unbound.log"
    log-queries: yes
    log-replies: yes
    verbosity: 1
    module-config: "iterator"
{zones}{local}remote-control:
    control-enable: no
""")
    check = subprocess.run([need("unbound-checkconf", "unbound"), str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    lab.server([unbound, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
               stderr=open(tmp_path / "unbound.stderr", "w"))  # noqa: SIM115
    lab.query([*BANNED, *NEUTRAL])
    text = wait_for_text(tmp_path / "unbound.log", f"{NEUTRAL[-1]}. A IN NOERROR")  # the last reply line
    events = check_log(tmp_path / "unbound.log", "unbound")
    # Each query is logged twice (query and reply line) and counts once.
    queries = [e for e in events if e["netwatch"]["evidence"] == "dns_query"]
    assert len(queries) == len(BANNED) + len(NEUTRAL), text


# -- dnsmasq ---------------------------------------------------------------------------------------

def _dnsmasq(lab: Lab, tmp_path: Path, extra: bool) -> Path:
    dnsmasq = need("dnsmasq", "dnsmasq-base")
    log = tmp_path / "dnsmasq.log"
    cmd = [dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
           f"--listen-address={SERVER_IP}", f"--log-facility={log}", f"--pid-file={tmp_path}/dnsmasq.pid",
           "--log-queries=extra" if extra else "--log-queries", "--user=root",
           *(f"--address=/{n}/{a}" for n, a in ADDRESS.items())]
    lab.server(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "dnsmasq.stderr", "w"))  # noqa: SIM115
    return log


@pytest.mark.parametrize("extra", [False, True])
def test_dnsmasq_log_queries(lab: Lab, tmp_path: Path, extra: bool):
    log = _dnsmasq(lab, tmp_path, extra)
    answers = lab.query([*BANNED, *NEUTRAL])
    assert ADDRESS["mobilegw.alipay.com"] in answers
    text = wait_for_text(log, f"config {NEUTRAL[-1]} is")
    assert (f"{CLIENT_IP}/" in text) == extra
    check_log(log, "dnsmasq")


def test_dnsmasq_log_and_capture_agree(lab: Lab, tmp_path: Path):
    """The consistency check: scan on a capture of the exchange and logs on dnsmasq's log."""
    tcpdump = need("tcpdump", "tcpdump")
    pcap = tmp_path / "dns.pcap"
    capture = lab.server([tcpdump, "-i", lab.server_if, "-U", "-w", str(pcap), "udp", "port", "53"],
                         stdout=subprocess.DEVNULL, stderr=open(tmp_path / "tcpdump.stderr", "w"))  # noqa: SIM115
    wait_for_text(tmp_path / "tcpdump.stderr", "listening on")
    log = _dnsmasq(lab, tmp_path, extra=False)
    lab.query([*BANNED, *NEUTRAL])
    wait_for_text(log, f"config {NEUTRAL[-1]} is")
    deadline = time.monotonic() + 10
    while pcap.stat().st_size < 24 + 10 * 60 and time.monotonic() < deadline:  # header + the exchanges
        time.sleep(0.2)
    capture.send_signal(signal.SIGINT)
    capture.wait(timeout=10)
    scan = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "--format", "jsonl", str(pcap)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    scanned = [json.loads(line) for line in scan.stdout.splitlines()]
    code, logged, err = netwatch_logs(log)
    assert scan.returncode == code == 1, scan.stderr + err
    # The capture names the device by MAC, the resolver log by address: compare on (address, app).
    assert alert_pairs(scanned) == alert_pairs(logged) == EXPECTED
    assert {e["netwatch"]["device"]["id"] for e in scanned} == {CLIENT_MAC}
    assert {e["netwatch"]["device"]["id"] for e in logged} == {CLIENT_IP}
