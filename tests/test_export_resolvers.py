"""`netwatch signatures export` loaded by the real resolvers, answering real queries.

Inside a network namespace this test creates (random name, removed afterwards) a dnsmasq plays the
authoritative side: it answers every probe name with its own address. BIND 9 (RPZ), Unbound (RPZ
and local-zone) and dnsmasq (its own format and a hosts file) forward to it with the exported list
loaded. Every probe (each rule and exclusion name, a name below it, and a look-alike such as
notalipay.com) must come back blocked exactly when netwatch's matcher would alert on it, and with
the authoritative answer otherwise.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.export import Selection
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "tests" / "data" / "export-overlay"
AUTH_PORT = 5300
pytestmark = pytest.mark.system

PROBE_SCRIPT = textwrap.dedent("""
    import json, sys
    import dns.message, dns.query, dns.rcode, dns.rdatatype
    port, names = int(sys.argv[1]), json.load(open(sys.argv[2]))
    out = {}
    for name in names:
        for attempt in range(3):
            try:
                reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
                break
            except Exception as exc:  # a timeout: ask again, then give up on this name
                reply = None
        if reply is None:
            out[name] = ["TIMEOUT", []]
            continue
        ips = sorted(rr.address for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset)
        out[name] = [dns.rcode.to_text(reply.rcode()), ips]
    json.dump(out, sys.stdout)
""")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package {package})")
    return path


class Namespace:
    """One network namespace with loopback up; processes started in it die with `close()`."""

    def __init__(self) -> None:
        self.name = f"nwexport-{secrets.token_hex(4)}"
        self.procs: list[subprocess.Popen] = []

    def setup(self) -> None:
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen:
        handle = open(log, "wb")  # noqa: SIM115 - closed with the process in close()
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], stdout=handle, stderr=subprocess.STDOUT)
        proc.log = handle  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        proc.log.close()  # type: ignore[attr-defined]

    def probe(self, port: int, names: list[str], tmp: Path) -> dict[str, list]:
        names_file = tmp / f"names-{port}.json"
        names_file.write_text(json.dumps(names))
        done = subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", PROBE_SCRIPT, str(port),
                               str(names_file)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def wait_ready(self, proc: subprocess.Popen, port: int, tmp: Path, log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited: {log.read_text(errors='replace')[-3000:]}"
            if self.probe(port, ["ready.netwatch-test.example"], tmp)["ready.netwatch-test.example"][0] != "TIMEOUT":
                return
            time.sleep(0.3)
        raise AssertionError(f"server on port {port} never answered: {log.read_text(errors='replace')[-3000:]}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _probe_names(sigset) -> list[str]:
    names = {"ready.netwatch-test.example", "neighbour.example.org", "www.example.com"}
    for match_type, pattern in list(sigset.rules) + list(sigset.exclusions):
        if match_type == "cidr":
            continue
        names |= {pattern, f"nwprobe.{pattern}", f"not{pattern}", f"x.nwprobe.{pattern}"}
    return sorted(names)


def _address_of(index: int) -> str:
    return f"198.18.{index // 250}.{index % 250 + 1}"  # RFC 2544 benchmarking range: DNS data only, never dialled


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[dict]:
    if not shutil.which("ip"):
        pytest.skip("iproute2 (ip) is not installed (Debian package iproute2)")
    dnsmasq = _need("dnsmasq", "dnsmasq-base")
    tmp = tmp_path_factory.mktemp("export-resolvers")
    sigset = load_signature_set(overlay_dirs=(OVERLAY,))
    names = _probe_names(sigset)
    answers = {name: _address_of(i) for i, name in enumerate(names)}
    (tmp / "auth.hosts").write_text("".join(f"{ip} {name}\n" for name, ip in answers.items()))
    ns = Namespace()
    ns.setup()
    try:
        log = tmp / "auth.log"
        auth = ns.start([dnsmasq, "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts",
                         f"--addn-hosts={tmp}/auth.hosts", f"--port={AUTH_PORT}", "--listen-address=127.0.0.1",
                         "--bind-interfaces", "--user=root", "--pid-file="], log)
        ns.wait_ready(auth, AUTH_PORT, tmp, log)
        yield {"ns": ns, "tmp": tmp, "sigset": sigset, "names": names, "answers": answers}
    finally:
        ns.close()


def _export(fmt: str, out: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "signatures", "export", "--format", fmt,
                           "--signatures", str(OVERLAY), "--serial", "42", "-o", str(out), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def _expected(world: dict, selection: Selection, name: str, sinkhole: bool) -> list:
    if selection.blocks(world["sigset"].match_name(name)):
        return ["NOERROR", ["0.0.0.0"]] if sinkhole else ["NXDOMAIN", []]
    return ["NOERROR", [world["answers"][name]]]


def _check(world: dict, port: int, *, selection: Selection | None = None, sinkhole: bool = False,
           allowed: dict[str, list] | None = None) -> dict[str, list]:
    selection = selection or Selection("eo13971", "medium")
    got = world["ns"].probe(port, world["names"], world["tmp"])
    wrong = {name: (got[name], _expected(world, selection, name, sinkhole)) for name in world["names"]
             if got[name] != _expected(world, selection, name, sinkhole)}
    allowed = allowed or {}
    assert {n: w for n, w in wrong.items() if n not in allowed} == {}
    blocked = [n for n in world["names"] if selection.blocks(world["sigset"].match_name(n))]
    assert len(blocked) > 100 and "notalipay.com" not in blocked and "nwprobe.corp.alipay.com" not in blocked
    return wrong


def _named_conf(tmp: Path, port: int, zone: Path) -> Path:
    conf = tmp / f"named-{port}.conf"
    conf.write_text(textwrap.dedent(f"""
        options {{
            directory "{tmp}";
            listen-on port {port} {{ 127.0.0.1; }};
            listen-on-v6 {{ none; }};
            pid-file none;
            session-keyfile none;
            recursion yes;
            allow-query {{ any; }};
            forwarders {{ 127.0.0.1 port {AUTH_PORT}; }};
            forward only;
            dnssec-validation no;
            qname-minimization off;
            response-policy {{ zone "rpz.netwatch"; }} qname-wait-recurse no;
        }};
        controls {{ }};
        zone "rpz.netwatch" {{ type primary; file "{zone}"; }};
    """))
    return conf


def test_bind_rpz(world: dict) -> None:
    named = _need("named", "bind9")
    checkconf = _need("named-checkconf", "bind9-utils")
    checkzone = _need("named-checkzone", "bind9-utils")
    tmp, port = world["tmp"], 5301
    zone = tmp / "bind.rpz"
    _export("rpz", zone)
    conf = _named_conf(tmp, port, zone)
    for cmd in ([checkzone, "rpz.netwatch", str(zone)], [checkconf, "-z", str(conf)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    log = tmp / "named.log"
    proc = world["ns"].start([named, "-g", "-c", str(conf)], log)
    world["ns"].wait_ready(proc, port, tmp, log)
    _check(world, port)
    world["ns"].stop(proc)


def _unbound_conf(tmp: Path, port: int, body: str) -> Path:
    conf = tmp / f"unbound-{port}.conf"
    conf.write_text(textwrap.dedent(f"""
        server:
            interface: 127.0.0.1
            port: {port}
            do-ip6: no
            do-daemonize: no
            use-syslog: no
            logfile: ""
            username: ""
            chroot: ""
            directory: "{tmp}"
            pidfile: "{tmp}/unbound-{port}.pid"
            do-not-query-localhost: no
            access-control: 127.0.0.0/8 allow
            qname-minimisation: no
            verbosity: 0
        forward-zone:
            name: "."
            forward-addr: 127.0.0.1@{AUTH_PORT}
    """) + body)
    return conf


def _run_unbound(world: dict, port: int, conf: Path) -> subprocess.Popen:
    checkconf = _need("unbound-checkconf", "unbound")
    done = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    log = world["tmp"] / f"unbound-{port}.log"
    proc = world["ns"].start([_need("unbound", "unbound"), "-d", "-c", str(conf)], log)
    world["ns"].wait_ready(proc, port, world["tmp"], log)
    return proc


def test_unbound_rpz(world: dict) -> None:
    tmp, port = world["tmp"], 5302
    zone = tmp / "unbound.rpz"
    _export("rpz", zone)
    conf = _unbound_conf(tmp, port, textwrap.dedent(f"""
        server:
            module-config: "respip iterator"
        rpz:
            name: rpz.netwatch
            zonefile: "{zone}"
    """))
    proc = _run_unbound(world, port, conf)
    _check(world, port)
    world["ns"].stop(proc)


def test_unbound_local_zone(world: dict) -> None:
    tmp, port = world["tmp"], 5303
    zones = tmp / "netwatch-local-zones.conf"
    notes = _export("unbound", zones)
    proc = _run_unbound(world, port, _unbound_conf(tmp, port, f'include: "{zones}"\n'))
    wrong = _check(world, port, allowed=_unbound_limits(world, notes))
    world["ns"].stop(proc)
    assert wrong, "the overlay has carve-outs a local-zone cannot express; they must show"


def _unbound_limits(world: dict, notes: str) -> dict[str, list]:
    """Probes a local-zone list cannot get right, derived from what the export reported on stderr."""
    allowed: dict[str, list] = {}
    for line in notes.splitlines():
        if "are not blocked" in line:  # a passed name whose subdomains should stay blocked
            for name in line.rsplit(": ", 1)[1].split(", "):
                allowed[f"nwprobe.{name}"] = allowed[f"x.nwprobe.{name}"] = []
        elif "answered with" in line or "are blocked with their subdomains" in line:  # the names themselves
            for name in line.rsplit(": ", 1)[1].split(", "):
                allowed[name] = []
    assert allowed, notes
    return allowed


def _run_dnsmasq(world: dict, port: int, conf: Path) -> subprocess.Popen:
    log = world["tmp"] / f"dnsmasq-{port}.log"
    cmd = [_need("dnsmasq", "dnsmasq-base"), "-k", "-C", str(conf), "--no-resolv", "--no-hosts",
           f"--server=127.0.0.1#{AUTH_PORT}", f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
           "--user=root", "--pid-file=", "--cache-size=0"]
    proc = world["ns"].start(cmd, log)
    world["ns"].wait_ready(proc, port, world["tmp"], log)
    return proc


def test_dnsmasq(world: dict) -> None:
    tmp, port = world["tmp"], 5304
    conf = tmp / "netwatch.dnsmasq.conf"
    _export("dnsmasq", conf)
    proc = _run_dnsmasq(world, port, conf)
    _check(world, port)
    world["ns"].stop(proc)


def test_dnsmasq_sinkhole_high_only(world: dict) -> None:
    """--action sinkhole and --min-confidence high: medium names now resolve, high ones get 0.0.0.0."""
    tmp, port = world["tmp"], 5305
    conf = tmp / "netwatch-high.dnsmasq.conf"
    _export("dnsmasq", conf, "--action", "sinkhole", "--min-confidence", "high")
    proc = _run_dnsmasq(world, port, conf)
    _check(world, port, selection=Selection("eo13971", "high"), sinkhole=True)
    world["ns"].stop(proc)


def test_hosts_file_in_dnsmasq(world: dict) -> None:
    """A hosts file blocks whole names only: every listed name gets 0.0.0.0, subdomains resolve."""
    tmp, port = world["tmp"], 5306
    hosts = tmp / "netwatch.hosts"
    notes = _export("hosts", hosts)
    assert "subdomains of" in notes and "cannot express exceptions" in notes
    conf = tmp / "hosts.dnsmasq.conf"
    conf.write_text(f"addn-hosts={hosts}\n")
    proc = _run_dnsmasq(world, port, conf)
    got = world["ns"].probe(port, world["names"], tmp)
    world["ns"].stop(proc)
    sigset, selection = world["sigset"], Selection("eo13971", "medium")
    for name in world["names"]:
        listed = any(p == name for t, p in sigset.rules if t != "cidr") and selection.blocks(sigset.match_name(name))
        assert got[name] == (["NOERROR", ["0.0.0.0"]] if listed else ["NOERROR", [world["answers"][name]]]), name
