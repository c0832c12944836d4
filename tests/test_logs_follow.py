"""`netwatch logs --follow`: a real process tails growing, rotated and truncated logs, stops on
SIGTERM/SIGINT, and resumes from its saved position without re-alerting or losing lines."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def dns_line(n: int, client: str, name: str) -> str:
    """A dnsmasq log-queries line (the format real dnsmasq writes; see test_logs_resolvers)."""
    return f"Nov 28 10:{n // 60 % 60:02d}:{n % 60:02d} dnsmasq[77]: query[A] {name} from {client}\n"


class Follower:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.out = tmp / "alerts.jsonl"
        self.db = tmp / "state" / "logs.db"
        self.err = open(tmp / f"follow-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netwatch.cli", "logs", "--follow", str(tmp / "logs"), "--db", str(self.db),
             "-o", str(self.out), "--poll-interval", "0.1", *extra],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.err)
        self.wait(lambda: "following logs" in self.log_text(), "the follower did not start")

    def log_text(self) -> str:
        return Path(self.err.name).read_text(errors="replace")

    def wait(self, predicate, why: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"follower exited ({self.proc.returncode}): {self.log_text()}")
            time.sleep(0.1)
        raise AssertionError(f"{why}: {self.log_text()}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=30)
        self.err.close()
        return code


def alerts(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def contact_counts(db: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db) as conn:
        return {(d, a): sum(json.loads(c).values()) for d, a, c in conn.execute(
            "SELECT device_id, app, counts FROM contacts")}


def test_follow_rotation_truncation_and_resume(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "dnsmasq.log"
    live.write_text(dns_line(0, "10.5.0.2", "mobilegw.alipay.com") + dns_line(1, "10.5.0.2", "www.example.org")
                    + "Nov 28 10:00:02 dnsmasq-dhcp[77]: DHCPACK(eth0) 10.5.0.7 02:05:00:00:00:07 front-desk\n")
    follower = Follower(tmp_path)
    follower.wait(lambda: len(alerts(follower.out)) == 1, "first alert")
    first = alerts(follower.out)[0]
    assert first["netwatch"]["app"] == "alipay" and first["netwatch"]["aggregation"]["reason"] == "first_contact"

    # Growing: a repeat (counted, not re-alerted) and a new app for another device. A half-written
    # line waits until its newline arrives.
    with open(live, "a") as fh:
        fh.write(dns_line(2, "10.5.0.2", "mobilegw.alipay.com"))
        fh.write(dns_line(3, "10.5.0.3", "v4.camscanner.com")[:30])
        fh.flush()
        time.sleep(0.5)
        fh.write(dns_line(3, "10.5.0.3", "v4.camscanner.com")[30:])
    follower.wait(lambda: len(alerts(follower.out)) == 2, "camscanner alert")

    # Rotation (logrotate's default: rename, then a new file): lines written to the old file after
    # the rename are still read, then the new file from its start.
    os.rename(live, logs / "dnsmasq.log.1")
    with open(logs / "dnsmasq.log.1", "a") as old:
        old.write(dns_line(4, "10.5.0.4", "pay.weixin.qq.com"))
    live.write_text(dns_line(5, "10.5.0.5", "qpay.qq.com"))
    follower.wait(lambda: {a["netwatch"]["app"] for a in alerts(follower.out)} >= {"wechat_pay", "qq_wallet"},
                  "alerts from both sides of the rotation")
    # copytruncate: the file shrinks and is read from its start again.
    live.write_text(dns_line(6, "10.5.0.6", "dl.wps.cn"))
    follower.wait(lambda: "wps_office" in {a["netwatch"]["app"] for a in alerts(follower.out)}, "after truncation")
    devices = subprocess.run([sys.executable, "-m", "netwatch.cli", "devices", "--db", str(follower.db), "--all",
                              "--format", "jsonl"], cwd=REPO, capture_output=True, text=True, timeout=60)
    by_id = {d["id"]: d for d in map(json.loads, devices.stdout.splitlines())}
    assert by_id["02:05:00:00:00:07"]["hostname"] == "front-desk" and "10.5.0.7" in by_id["02:05:00:00:00:07"]["ips"]
    health = subprocess.run([sys.executable, "-m", "netwatch.cli", "health", "--db", str(follower.db)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stdout
    assert follower.stop(signal.SIGTERM) == 0
    assert "Traceback" not in follower.log_text()
    counts = contact_counts(follower.db)
    assert counts[("10.5.0.2", "alipay")] == 2 and counts[("10.5.0.4", "wechat_pay")] == 1
    before = len(alerts(follower.out))
    assert before == 5

    # Stopped: the live file grows, then is rotated; the restart reads the rest of the old file
    # (same inode, renamed) and the new one, and does not alert again on known (device, app) pairs.
    with open(live, "a") as fh:
        fh.write(dns_line(7, "10.5.0.2", "mobilegw.alipay.com"))
        fh.write(dns_line(8, "10.5.0.8", "api.dalyfeds.com"))
    os.rename(live, logs / "dnsmasq.log.2")
    live.write_text(dns_line(9, "10.5.0.9", "mobilegw.alipay.com"))
    from netwatch.forward.testing import free_port

    port = free_port()
    forwarded = tmp_path / "forwarded.jsonl"
    follower = Follower(tmp_path, "--metrics-port", str(port), "--forward", f"file://{forwarded}")
    follower.wait(lambda: len(alerts(follower.out)) == before + 2, "alerts after the restart")
    follower.wait(lambda: len(alerts(forwarded)) == 2, "alerts forwarded")
    import urllib.request

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'netwatch_alerts_total{app="shareit",reason="first_contact"} 1.0' in metrics
    assert "netwatch_workers_alive 1.0" in metrics
    assert follower.stop(signal.SIGINT) == 0
    new = alerts(follower.out)[before:]
    assert sorted((a["source"]["ip"], a["netwatch"]["app"]) for a in new) == [("10.5.0.8", "shareit"),
                                                                             ("10.5.0.9", "alipay")]
    counts = contact_counts(follower.db)
    assert counts[("10.5.0.2", "alipay")] == 3  # every line once: none lost, none read twice
    assert counts[("10.5.0.6", "wps_office")] == 1


def test_follow_usage_errors(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", "--follow", "-"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "standard input" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", "--follow", str(empty), "--db",
                           str(tmp_path / "db.sqlite")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no log files to follow" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_follow_is_jsonl_only(tmp_path: Path, fmt: str):
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "logs", "--follow", "--format", fmt, str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "JSON lines" in done.stderr


def test_follow_resumes_inside_a_zeek_tsv_log(tmp_path: Path):
    """Resuming in the middle of a Zeek file needs its #fields header again: it is re-read."""
    logs = tmp_path / "logs"
    logs.mkdir()
    fields = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "query", "qtype_name"]
    header = ("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdns\n"
              "#fields\t" + "\t".join(fields) + "\n"
              "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\n")

    def row(n: int, client: str, name: str) -> str:
        return f"{1764320000 + n}.0\tC{n}\t{client}\t5000\t10.0.0.53\t53\tudp\t{name}\tA\n"

    log = logs / "dns.log"
    log.write_text(header + row(0, "10.6.0.2", "mobilegw.alipay.com"))
    follower = Follower(tmp_path)
    follower.wait(lambda: len(alerts(follower.out)) == 1, "first alert")
    assert follower.stop() == 0
    with open(log, "a") as fh:
        fh.write(row(1, "10.6.0.3", "v4.camscanner.com"))
    follower = Follower(tmp_path)
    follower.wait(lambda: len(alerts(follower.out)) == 2, "alert from the line written while stopped")
    assert follower.stop() == 0
    assert "not readable" not in follower.log_text()
    assert alerts(follower.out)[1]["source"]["ip"] == "10.6.0.3"
