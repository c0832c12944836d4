"""Files are separate captures: a directory scan equals the union of per-file scans.

Two unrelated captures that reuse the same 5-tuples must each report their own names (with flow
state carried from one file to the next, the second file's flows looked like the tails of the
first file's and their names were lost). `--continuous` says the files are one capture cut in
slices, and then a ClientHello cut by the rotation is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from captures_for_scale import hello_across_rotation, reused_tuple_pair

REPO = Path(__file__).resolve().parents[1]


def scan(*args: str) -> tuple[int, list[dict]]:
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "-q", "--format", "jsonl", "--all", *args],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    return proc.returncode, [json.loads(line) for line in proc.stdout.decode().splitlines()]


def findings(events: list[dict]) -> set[tuple]:
    return {(e["netwatch"]["capture"]["file"], e["netwatch"]["capture"]["frame"], e["netwatch"]["evidence"],
             e["netwatch"]["name"], e["source"]["ip"], e["event"]["id"]) for e in events}


def test_directory_scan_is_the_union_of_per_file_scans(tmp_path):
    first, second = reused_tuple_pair(tmp_path)
    _, together = scan(str(tmp_path))
    _, alone_first = scan(str(first))
    _, alone_second = scan(str(second))
    assert findings(together) == findings(alone_first) | findings(alone_second)
    names = {(Path(e["netwatch"]["capture"]["file"]).name, e["netwatch"]["evidence"], e["netwatch"]["name"])
             for e in together}
    assert {("a-day1.pcap", "tls_sni", "qpay.qq.com"), ("a-day1.pcap", "quic_sni", "pay.weixin.qq.com"),
            ("b-day2.pcap", "tls_sni", "v4.camscanner.com"), ("b-day2.pcap", "quic_sni", "account.wps.cn")} <= names


def test_files_in_either_order_give_the_same_findings(tmp_path):
    first, second = reused_tuple_pair(tmp_path)
    _, forward = scan(str(first), str(second))
    _, backward = scan(str(second), str(first))
    assert findings(forward) == findings(backward)


def test_one_device_inventory_across_files(tmp_path):
    reused_tuple_pair(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "--format", "table", str(tmp_path)],
                          capture_output=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr.decode()
    table = proc.stdout.decode()
    assert table.count("a4:c3:f0:5e:11:0a") == 1, table  # alice: one device, apps from both files
    for app in ("QQ Wallet", "WeChat Pay", "CamScanner", "WPS Office"):
        assert app in table, table
    assert "1 device(s) seen" in table and "2 file(s)" in table, table


def test_continuous_joins_rotated_slices_of_one_capture(tmp_path):
    first, second = hello_across_rotation(tmp_path)
    _, apart = scan(str(first), str(second))
    assert not [e for e in apart if e["netwatch"]["name"] == "mobilegw.alipay.com"]
    status, joined = scan("--continuous", str(first), str(second))
    assert status == 1
    hits = [e for e in joined if e["netwatch"]["name"] == "mobilegw.alipay.com"]
    assert [(Path(e["netwatch"]["capture"]["file"]).name, e["netwatch"]["evidence"]) for e in hits] == [
        ("rot-001.pcap", "tls_sni")]
