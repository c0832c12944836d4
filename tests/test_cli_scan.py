"""End-to-end tests of `netwatch scan` on the bundled samples, through the real console entry point."""

from __future__ import annotations

import csv
import fcntl
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "pcaps"


EVIDENCE_KINDS = {"dns_query", "tls_sni", "quic_sni", "http_host", "dhcp_hostname", "resolved_ip",
                  "encrypted_dns", "ech", "ip_match"}


def run_scan(*args: str, stdin: bytes | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "netwatch.cli", "scan", *args],
        input=stdin, capture_output=True, cwd=cwd, timeout=120,
    )


def jsonl(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


def truth(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


@pytest.fixture(scope="module")
def office_events() -> list[dict]:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--all")
    assert proc.returncode == 1, proc.stderr.decode()
    return jsonl(proc)


@pytest.mark.parametrize("sample", ["office-lan", "mixed-links"])
def test_every_planted_banned_name_is_reported_for_the_right_device(sample: str) -> None:
    expected = truth(sample)
    capture = next(SAMPLES.glob(f"{sample}.pcap*"))
    proc = run_scan(str(capture.relative_to(REPO)), "--format", "jsonl")
    assert proc.returncode == expected["expected_exit_status"], proc.stderr.decode()
    alerts = [e for e in jsonl(proc) if e["event"]["kind"] == "alert"]
    seen = {(e["netwatch"]["evidence"], e["netwatch"]["name"], e["source"]["ip"], e["netwatch"]["app"])
            for e in alerts}
    for obs in expected["observations"]:
        if not obs["banned"] or obs["evidence"] not in EVIDENCE_KINDS:
            continue  # e.g. the fragmented DNS answer that makes a later resolved_ip possible
        key = (obs["evidence"], obs["name"], obs["source_ip"], obs["app"])
        assert key in seen, f"{sample}: missing {key}; got {sorted(seen)}"
    # and nothing that was planted clean raised an alert
    clean = {(o["evidence"], o["name"]) for o in expected["observations"] if not o["banned"] and o["name"]}
    assert not {(e, n) for e, n, _, _ in seen} & clean


def test_devices_carry_dhcp_names_and_macs(office_events: list[dict]) -> None:
    expected = truth("office-lan")["devices"]
    by_device = {}
    for event in office_events:
        if event["event"]["kind"] == "alert":
            by_device.setdefault(event["netwatch"]["device"]["id"], set()).add(event["netwatch"]["app"])
            if event["netwatch"]["device"]["id"] in expected:
                assert event["host"]["hostname"] == expected[event["netwatch"]["device"]["id"]]["hostname"]
    for mac, device in expected.items():
        assert set(device["apps"]) <= by_device.get(mac, set()), (mac, device["apps"], by_device.get(mac))


def test_event_contract_fields(office_events: list[dict]) -> None:
    """The fixed contract of docs/events.md: these fields exist on every event."""
    assert office_events
    ids = set()
    for event in office_events:
        assert event["@timestamp"].endswith("Z") and "T" in event["@timestamp"]
        assert event["event"]["kind"] in ("alert", "event")
        assert event["event"]["dataset"].startswith("netwatch.")
        ids.add(event["event"]["id"])
        nw = event["netwatch"]
        for key in ("evidence", "name", "app", "app_name", "confidence", "signature", "ech"):
            assert key in nw
        assert nw["evidence"] in EVIDENCE_KINDS
        assert "ip" in event["source"] and "mac" in event["source"]
        assert event["network"]["transport"] in ("tcp", "udp")
        assert event["rule"]["version"]
        assert event["observer"]["product"] == "netwatch"
        if nw["evidence"] == "dns_query":
            assert event["dns"]["question"]["name"] == nw["name"]
        if nw["evidence"] in ("tls_sni", "quic_sni"):
            assert event["tls"]["client"]["server_name"] == nw["name"]
        if nw["evidence"] == "http_host":
            assert event["url"]["domain"] == nw["name"]
    assert len(ids) == len(office_events), "event.id must be unique"


def test_event_ids_are_stable_across_runs(office_events: list[dict]) -> None:
    again = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--all"))
    assert [e["event"]["id"] for e in again] == [e["event"]["id"] for e in office_events]


def test_blind_spots_and_weaker_evidence_are_reported(office_events: list[dict]) -> None:
    kinds = {(e["event"]["dataset"], e["netwatch"]["evidence"]) for e in office_events}
    assert ("netwatch.blind_spot", "encrypted_dns") in kinds
    assert ("netwatch.blind_spot", "ech") in kinds
    resolved = [e for e in office_events if e["netwatch"]["evidence"] == "resolved_ip"]
    assert resolved and all(e["netwatch"]["resolved_from"] for e in resolved)
    # One tier below the name it came from.
    assert {e["netwatch"]["confidence"] for e in resolved} <= {"medium", "low"}
    ech = [e for e in office_events if e["netwatch"]["evidence"] == "ech"]
    assert all(e["netwatch"]["ech"] for e in ech)


def test_all_emits_unmatched_names_as_observations(office_events: list[dict]) -> None:
    plain = {e["netwatch"]["name"] for e in office_events if e["event"]["dataset"] == "netwatch.observation"}
    assert "www.example.com" in plain
    assert "www.wikipedia.org" in plain
    without_all = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl"))
    assert not [e for e in without_all if e["event"]["dataset"] == "netwatch.observation"]


def test_low_tier_vendor_contact_is_an_event_not_an_alert(office_events: list[dict]) -> None:
    video = [e for e in office_events if e["netwatch"]["name"] == "v.qq.com"]
    assert video
    assert {e["event"]["kind"] for e in video} == {"event"}
    assert {e["netwatch"]["confidence"] for e in video} == {"low"}


def test_min_confidence_changes_what_alerts() -> None:
    strict = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--min-confidence", "high"))
    assert {e["netwatch"]["confidence"] for e in strict if e["event"]["kind"] == "alert"} == {"high"}
    loose = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--min-confidence", "low"))
    assert "low" in {e["netwatch"]["confidence"] for e in loose if e["event"]["kind"] == "alert"}


def test_table_output_summarises_devices_and_totals() -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "table")
    assert proc.returncode == 1
    text = proc.stdout.decode()
    for expected in ("alice-laptop", "bob-iphone", "ALERT", "Alipay", "WeChat Pay", "Totals:", "246 packets",
                     "encrypted DNS via dns.google"):
        assert expected in text, expected


def test_csv_output_has_header_and_one_row_per_event(office_events: list[dict]) -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
    assert len(rows) == len(office_events)
    assert rows[0]["event.id"] == office_events[0]["event"]["id"]
    assert {"netwatch.app", "source.mac", "netwatch.evidence"} <= set(rows[0])


def test_clean_capture_exits_zero() -> None:
    proc = run_scan("pcaps/clean.pcap", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr.decode()
    assert not [e for e in jsonl(proc) if e["event"]["kind"] == "alert"]


def test_not_a_capture_is_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello\n")
    proc = run_scan(str(bogus), "--format", "jsonl")
    assert proc.returncode == 2
    assert f"netwatch: {bogus}: not a pcap or pcapng file" in proc.stderr.decode()


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    proc = run_scan(str(tmp_path / "nope.pcap"), "--format", "jsonl")
    assert proc.returncode == 2
    assert "nope.pcap" in proc.stderr.decode()


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pcap"
    bogus.write_bytes(b"\x00" * 64)
    proc = run_scan(str(bogus), "pcaps/office-lan.pcap", "--format", "jsonl")
    assert proc.returncode == 1  # findings in the good file still drive the status
    assert "not a pcap or pcapng file" in proc.stderr.decode()
    assert any(e["event"]["kind"] == "alert" for e in jsonl(proc))


def test_truncated_capture_is_analysed_up_to_the_damage_with_a_warning() -> None:
    info = truth("truncated")
    proc = run_scan("pcaps/truncated.pcap", "--format", "jsonl")
    assert proc.returncode == info["expected_exit_status"]
    stderr = proc.stderr.decode()
    assert "warning" in stderr and "truncated.pcap" in stderr
    assert str(info["truncated_record_offset"]) in stderr
    assert "Traceback" not in stderr
    assert jsonl(proc)


def test_stdin_and_gzip_inputs(tmp_path: Path) -> None:
    raw = (SAMPLES / "office-lan.pcap").read_bytes()
    reference = jsonl(run_scan("pcaps/office-lan.pcap", "--format", "jsonl"))
    via_stdin = jsonl(run_scan("-", "--format", "jsonl", stdin=raw))
    gz = tmp_path / "office.pcap.gz"
    gz.write_bytes(gzip.compress(raw))
    via_gzip = jsonl(run_scan(str(gz), "--format", "jsonl"))
    names = sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in reference)
    assert sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in via_stdin) == names
    assert sorted((e["netwatch"]["evidence"], e["netwatch"]["name"]) for e in via_gzip) == names


def test_directories_are_walked_and_output_file_written(tmp_path: Path) -> None:
    folder = tmp_path / "caps" / "deeper"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLES / "office-lan.pcap", folder / "a.pcap")
    (tmp_path / "caps" / "README.txt").write_text("not a capture, skipped while walking")
    out = tmp_path / "out.jsonl"
    proc = run_scan(str(tmp_path / "caps"), "--format", "jsonl", "-o", str(out))
    assert proc.returncode == 1, proc.stderr.decode()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events and all(e["netwatch"]["capture"]["file"].endswith("a.pcap") for e in events)


def test_signature_overlay_and_bad_signature_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yaml").write_text("app:\n  id: [unclosed\n")
    proc = run_scan("pcaps/office-lan.pcap", "--signatures", str(bad))
    assert proc.returncode == 2
    assert "broken.yaml:" in proc.stderr.decode()


def test_usage_error_is_exit_2() -> None:
    proc = run_scan("--format", "xml", "pcaps/clean.pcap")
    assert proc.returncode == 2


# -- output errors, closed pipes, Ctrl-C, directory walks, memory --------------------------------


def _assert_clean_output_error(proc: subprocess.CompletedProcess, name: str, reason: str) -> None:
    stderr = proc.stderr.decode()
    assert proc.returncode == 2, stderr
    assert f"netwatch: cannot write {name}: {reason}" in stderr.splitlines(), stderr
    assert "Traceback" not in stderr and "read error" not in stderr, stderr


def test_output_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "out.jsonl"
    proc = run_scan("pcaps/office-lan.pcap", "-o", str(target))
    _assert_clean_output_error(proc, str(target), "No such file or directory")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="/dev/full is missing (not Linux?)")
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_a_full_disk_blames_the_output_not_the_input(fmt: str) -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", fmt, "-o", "/dev/full")
    _assert_clean_output_error(proc, "/dev/full", "No space left on device")
    with open("/dev/full", "w") as full:  # standard output on a full disk
        proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "--format", fmt],
                              stdout=full, stderr=subprocess.PIPE, cwd=REPO, timeout=120)
    _assert_clean_output_error(proc, "standard output", "No space left on device")


@pytest.mark.parametrize("fmt", ["jsonl", "table"])
def test_a_closed_pipe_ends_the_scan_quietly(fmt: str) -> None:
    """`netwatch scan ... | head -1`: no message, the status a shell shows for a tool ended by SIGPIPE."""
    # three passes over the sample: more output than a pipe buffers, so writing really hits the closed pipe
    args = ["pcaps/office-lan.pcap"] * 3 + ["--all", "--format", fmt]
    with subprocess.Popen([sys.executable, "-m", "netwatch.cli", "scan", *args], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        status = proc.wait(timeout=120)
    assert first.strip()
    if fmt == "table":  # the table is written at the end and may fit the pipe: either way, no noise
        assert status in (1, 141), stderr
    else:
        assert status == 141, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr and "Exception" not in stderr, stderr
    assert "netwatch:" not in stderr, stderr


def test_output_files_are_not_world_readable(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "-o", str(out)],
                          capture_output=True, cwd=REPO, timeout=120, preexec_fn=lambda: os.umask(0o022))
    assert proc.returncode == 1, proc.stderr.decode()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # 0640 asked, the umask 022 takes nothing more away
    strict = tmp_path / "strict.jsonl"
    subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", "pcaps/office-lan.pcap", "-o", str(strict)],
                   capture_output=True, cwd=REPO, timeout=120, preexec_fn=lambda: os.umask(0o077))
    assert stat.S_IMODE(strict.stat().st_mode) == 0o600


def _wait_until_blocked_reading_stdin(pid: int, pipe_fd: int) -> None:
    """Until netwatch has read everything in the pipe and sleeps in read(0, ...)."""
    syscall_file = Path(f"/proc/{pid}/syscall")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        unread = struct.unpack("i", fcntl.ioctl(pipe_fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        try:
            fields = syscall_file.read_text().split()
        except OSError:
            pytest.skip("/proc/PID/syscall is not readable here")
        if unread == 0 and len(fields) > 1 and fields[0] == str(_READ_SYSCALL) and int(fields[1], 16) == 0:
            return
        time.sleep(0.05)
    raise AssertionError("netwatch never waited for more input")


_READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(os.uname().machine)


def _scan_a_pipe_then_ctrl_c(sample: str, *args: str) -> tuple[int, str]:
    """Feed `sample` to `netwatch scan -` from a writer that then keeps the pipe open (like tcpdump),
    wait until netwatch has read all of it, send SIGINT; returns (status, stderr)."""
    if _READ_SYSCALL is None:
        pytest.skip("read(2) syscall number unknown on this architecture")
    writer_code = ("import sys, time; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read()); "
                   "sys.stdout.flush(); time.sleep(120)")
    writer = subprocess.Popen([sys.executable, "-c", writer_code, str(SAMPLES / sample)], stdout=subprocess.PIPE)
    try:
        assert writer.stdout is not None
        scan = subprocess.Popen([sys.executable, "-m", "netwatch.cli", "scan", "-", *args],
                                stdin=writer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        _wait_until_blocked_reading_stdin(scan.pid, writer.stdout.fileno())
        scan.send_signal(signal.SIGINT)
        _, stderr = scan.communicate(timeout=60)
    finally:
        writer.kill()
        writer.wait()
    return scan.returncode, stderr.decode()


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_ctrl_c_on_a_pipe_reports_what_was_analysed(tmp_path: Path, fmt: str) -> None:
    """`tcpdump -w - | netwatch scan -` stopped with Ctrl-C: the findings so far, flushed, usual status."""
    out = tmp_path / f"out.{fmt}"
    status, stderr = _scan_a_pipe_then_ctrl_c("office-lan.pcap", "--format", fmt, "-o", str(out))
    assert status == 1, stderr  # the usual status: alerts were found
    assert "Aborted" not in stderr and "Traceback" not in stderr, stderr
    if fmt == "table":
        text = out.read_text()
        assert "Totals: 5 device(s) with alerts, 16 alert event(s)" in text, text
        assert "246 packets" in text and "interrupted (Ctrl-C)" in text, text
    else:
        events = [json.loads(line) for line in out.read_text().splitlines()]
        alerting = {e["netwatch"]["device"]["id"] for e in events if e["event"]["kind"] == "alert"}
        assert len([e for e in events if e["event"]["kind"] == "alert"]) == 16
        assert alerting == {mac for mac, device in truth("office-lan")["devices"].items() if device["apps"]}
        assert "interrupted (Ctrl-C)" in stderr and "16 alert(s)" in stderr, stderr


def test_ctrl_c_without_alerts_exits_zero() -> None:
    status, stderr = _scan_a_pipe_then_ctrl_c("clean.pcap", "--format", "jsonl")
    assert status == 0, stderr
    assert "54 packets" in stderr and "interrupted (Ctrl-C)" in stderr, stderr


def test_directory_walk_skips_fifos_and_sockets_and_follows_directory_links_once(tmp_path: Path) -> None:
    caps = tmp_path / "caps"
    caps.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(SAMPLES / "office-lan.pcap", elsewhere / "linked.pcap")
    (caps / "to-elsewhere").symlink_to(elsewhere, target_is_directory=True)
    (caps / "again").symlink_to(elsewhere, target_is_directory=True)  # the same directory a second time
    (elsewhere / "loop").symlink_to(caps, target_is_directory=True)  # and a loop back up
    os.mkfifo(caps / "a.fifo")  # opening it would block forever: nobody writes to it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(caps / "s.sock"))
    try:
        proc = run_scan(str(caps), "--format", "jsonl")
    finally:
        sock.close()
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr  # the alerts of the capture behind the link; no error
    files = {e["netwatch"]["capture"]["file"] for e in jsonl(proc)}
    assert len(files) == 1 and files.pop().endswith("linked.pcap"), stderr
    assert "16 alert(s)" in stderr  # read once, not once per link
    assert f"netwatch: note: {caps / 'a.fifo'}: skipped, a FIFO is not a capture file" in stderr, stderr
    assert f"netwatch: note: {caps / 's.sock'}: skipped, a socket is not a capture file" in stderr, stderr
    assert "Traceback" not in stderr


def test_a_fifo_named_on_the_command_line_is_read(tmp_path: Path) -> None:
    """Process substitution (`netwatch scan <(zcat x.pcap.gz)`) hands over a FIFO: named ones are read."""
    fifo = tmp_path / "named.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{SAMPLES / 'office-lan.pcap'}' > '{fifo}'"])
    try:
        proc = run_scan(str(fifo), "--format", "jsonl")
    finally:
        writer.wait(timeout=60)
    assert proc.returncode == 1, proc.stderr.decode()
    assert len([e for e in jsonl(proc) if e["event"]["kind"] == "alert"]) == 16


def _peak_rss_kib(args: list[str]) -> int:
    """Peak resident memory of one real scan process, from the kernel's rusage of that child."""
    proc = subprocess.Popen([sys.executable, "-m", "netwatch.cli", "scan", *args, "--format", "jsonl"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode in (0, 1), proc.returncode
    return usage.ru_maxrss  # KiB on Linux


@pytest.mark.slow
def test_a_gzip_bomb_record_costs_its_buffer_only(tmp_path: Path) -> None:
    """A 120 MiB record in a ~120 KB gzip: memory grows by about the record, not three times it."""
    record = 120 << 20
    bomb = tmp_path / "bomb.pcap.gz"
    frame_head = bytes.fromhex("020202020202 040404040404 0800 4500001c000000004011000" "0c0000201c0000202")
    with gzip.open(bomb, "wb", compresslevel=6) as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0x7FFFFFFF, 1))
        out.write(struct.pack("<IIII", 1, 0, record, record) + frame_head)
        zeros, left = bytes(1 << 20), record - len(frame_head)
        while left:
            out.write(zeros[:left])
            left -= min(left, len(zeros))
    baseline = _peak_rss_kib(["pcaps/clean.pcap"])
    peak = _peak_rss_kib([str(bomb)])
    growth = (peak - baseline) * 1024
    assert growth < 1.5 * record, f"peak RSS {peak} KiB, baseline {baseline} KiB"


# -- --all in the table, option names, error messages -------------------------------------------


def test_all_in_the_table_lists_the_names_under_each_device() -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--format", "table", "--all")
    assert proc.returncode == 1, proc.stderr.decode()
    blocks = {block.split("  ", 1)[0]: block for block in proc.stdout.decode().split("\n\n")}
    alice = blocks["alice-laptop"]
    assert re.search(r"^  seen   www\.example\.com +dns_query=1 tls_sni=1$", alice, re.M), alice
    assert re.search(r"^  seen   update\.microsoft\.com ", alice, re.M), alice
    assert "www.wikipedia.org" not in alice  # each name under the device that used it
    assert re.search(r"^  seen   www\.wikipedia\.org ", blocks["reception-pc"], re.M)
    assert re.search(r"^  seen   www\.wikipedia\.org ", blocks["bob-iphone"], re.M)
    without_all = run_scan("pcaps/office-lan.pcap", "--format", "table").stdout.decode()
    assert "  seen   " not in without_all


def test_forward_state_dir_is_the_option_and_forward_state_a_hidden_alias(tmp_path: Path) -> None:
    help_text = run_scan("--help").stdout.decode()
    assert "--forward-state-dir" in help_text
    assert "--forward-state " not in help_text and "--forward-state," not in help_text
    for option in ("--forward-state-dir", "--forward-state"):
        queue = tmp_path / option.strip("-")
        target = tmp_path / f"{option.strip('-')}.jsonl"
        proc = run_scan("pcaps/office-lan.pcap", "--format", "jsonl", "--forward", f"file://{target}",
                        option, str(queue))
        assert proc.returncode == 1, proc.stderr.decode()
        assert queue.is_dir() and any(queue.iterdir()), option
        assert len(target.read_text().splitlines()) == 16


def test_errors_without_a_file_carry_no_placeholder_location(tmp_path: Path) -> None:
    proc = run_scan("pcaps/office-lan.pcap", "--policy", "nosuchpolicy")
    assert proc.returncode == 2
    assert proc.stderr.decode() == "netwatch: unknown policy 'nosuchpolicy' (known: eo13971)\n"
    missing = tmp_path / "nonexistdir"
    check = subprocess.run([sys.executable, "-m", "netwatch.cli", "signatures", "check", str(missing)],
                           capture_output=True, cwd=REPO, timeout=60)
    text = (check.stdout + check.stderr).decode()
    assert f"{missing}: error: signature directory does not exist" in text, text
    assert ":0:" not in text


def test_a_directory_without_any_capture_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no capture here")
    os.mkfifo(tmp_path / "a.fifo")
    proc = run_scan(str(tmp_path), "--format", "jsonl")
    assert proc.returncode == 2, proc.stderr.decode()  # not "0: nothing found"
    assert "netwatch: no capture files found" in proc.stderr.decode()
