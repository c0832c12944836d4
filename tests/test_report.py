"""`netwatch report`: numbers, escaping and bad input, then the page in a real headless Chromium.

The Chromium test drives Debian's chromium over the DevTools protocol (websocket-client, on
loopback only): it loads the page from a file, fails on any console error, exception or request
that is not the file itself, reads the numbers back out of the rendered DOM and compares them with
counts made here straight from the jsonl, emulates print media, and keeps a screenshot of the chart.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pcaps" / "office-lan.pcap"
HOSTILE_HOST = '<script>alert(1)</script>"><img src=x onerror=alert(2)> $x^2$ | [a](http://evil.example)'
HOSTILE_NAME = 'pay.weixin.qq.com"><svg onload=alert(3)>'


def _netwatch(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, input=stdin)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """The sample capture's events, plus two hostile alerts from a device with a crafted host name."""
    out = tmp_path_factory.mktemp("report") / "events.jsonl"
    done = _netwatch("scan", str(SAMPLE), "--format", "jsonl", "-o", str(out), "-q")
    assert done.returncode == 1, done.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    template = next(e for e in events if e["event"]["kind"] == "alert" and e["netwatch"]["app"] == "wechat_pay")
    for second in (5, 9):
        hostile = json.loads(json.dumps(template))
        hostile["@timestamp"] = f"2026-01-05T09:00:{second:02d}.000000Z"
        hostile["netwatch"]["device"] = {"id": "02:66:66:66:66:66", "hostname": HOSTILE_HOST, "vendor": None}
        hostile["netwatch"]["name"] = HOSTILE_NAME
        hostile["source"]["ip"] = "192.0.2.66"
        events.append(hostile)
    out.write_text("".join(json.dumps(e) + "\n" for e in events) + "this line is not an event\n")
    return out


def _expected(events_file: Path) -> dict:
    """Counts made directly from the jsonl, independent of netwatch.report."""
    per_cell: Counter = Counter()
    devices_per_app: dict[str, set] = {}
    stamps = []
    for line in events_file.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        stamps.append(event["@timestamp"])
        if event["event"]["kind"] != "alert":
            continue
        device, app = event["netwatch"]["device"]["id"], event["netwatch"]["app"]
        per_cell[(device, app)] += 1
        devices_per_app.setdefault(app, set()).add(device)
    return {"cells": per_cell, "devices_per_app": {a: len(d) for a, d in devices_per_app.items()},
            "first": min(stamps)[:19].replace("T", " ") + "Z", "last": max(stamps)[:19].replace("T", " ") + "Z",
            "flagged": len({d for d, _ in per_cell})}


@pytest.fixture(scope="module")
def report_files(events_file: Path) -> tuple[Path, Path, str]:
    html, md = events_file.with_suffix(".html"), events_file.with_suffix(".md")
    done = _netwatch("report", str(events_file), "--html", str(html), "--markdown", str(md))
    assert done.returncode == 0, done.stderr
    return html, md, done.stderr


def test_html_escapes_names_from_traffic(report_files) -> None:
    html, _, stderr = report_files
    page = html.read_text()
    assert "<script" not in page and "onerror=" not in page.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "pay.weixin.qq.com&quot;&gt;&lt;svg onload=alert(3)&gt;" in page
    assert "$x^2$" in page  # printed as text in the table and the chart, not as a formula
    assert "default-src 'none'" in page
    assert "1 line(s) were not netwatch events" in stderr


def test_markdown_matches_and_escapes(report_files, events_file) -> None:
    _, md, _ = report_files
    text = md.read_text()
    expected = _expected(events_file)
    assert f"**{expected['flagged']}** device(s) with alerts" in text
    assert "| Alipay | 2 | 3 |" in text and "| WeChat Pay | 3 | 6 |" in text
    assert "&lt;script&gt;" in text and "<script" not in text and "\\[a\\](http://evil.example)" in text
    assert (md.parent / (md.name + ".svg")).read_text().startswith("<?xml")
    assert f"Time range covered: **{expected['first']}** to **{expected['last']}**" in text


def test_sensor_database(tmp_path: Path) -> None:
    from netwatch.sensor.state import Contact, DeviceRecord, StateDB

    db_path = tmp_path / "state.db"
    db = StateDB(db_path)
    alert = {"@timestamp": "2026-02-01T10:00:00.000000Z", "event": {"kind": "alert", "dataset": "netwatch.detection"},
             "netwatch": {"app": "alipay", "app_name": "Alipay", "evidence": "dns_query", "name": "mobilegw.alipay.com",
                          "confidence": "high", "signature": "suffix:alipay.com", "device": {"id": "aa:bb:cc:00:00:01"},
                          "capture": {"interface": "eth0", "evidence_file": "/var/lib/netwatch/ev-1.pcap",
                                      "evidence_frame": 3}},
             "rule": {"version": "2026.11.27+sha256:60eb6a958a35"}, "source": {"ip": "192.0.2.10"}}
    db.write_batch(
        [DeviceRecord("aa:bb:cc:00:00:01", 1769940000.0, 1769943600.0, ["aa:bb:cc:00:00:01"], ["192.0.2.10"],
                      "alice-laptop", "Intel Corporate")],
        [Contact("aa:bb:cc:00:00:01", "alipay", 1769940000.0, 1769943600.0, "Alipay", {"dns_query": 40, "tls_sni": 2},
                 ["mobilegw.alipay.com"], "high", 1769940000.0, 1),
         Contact("aa:bb:cc:00:00:01", "vendor:Tencent", 1769940100.0, 1769940200.0, None, {"dns_query": 5},
                 ["qq.com"], "low", None, 0)],
        [(1769940000.0, "aa:bb:cc:00:00:01", "alipay", "first_contact", alert)])
    db.close()
    md = tmp_path / "db.md"
    done = _netwatch("report", "--db", str(db_path), "--markdown", str(md))
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert "| Alipay | 1 | 42 | 2026-02-01 10:00:00Z | 2026-02-01 11:00:00Z |" in text
    assert "/var/lib/netwatch/ev\\-1.pcap frame 3" in text or "/var/lib/netwatch/ev-1.pcap frame 3" in text
    assert "blind spots are not stored there" in text


@pytest.mark.parametrize(("args", "message"), [
    (["report", "--html", "x.html"], "give jsonl files"),
    (["report", "/nonexistent.jsonl", "--html", "/tmp/x.html"], "/nonexistent.jsonl"),
    (["report", "README.md", "--html", "/tmp/x.html"], "no netwatch events"),
    (["report", "pcaps", "--html", "/tmp/x.html"], "is a directory"),
    (["report", "README.md"], "--html FILE and/or --markdown"),
    (["report", "--db", "/nonexistent.db", "--html", "/tmp/x.html"], "no such database"),
    (["report", "--db", "README.md", "--html", "/tmp/x.html"], "README.md"),
])
def test_bad_input_exit_2(args: list[str], message: str) -> None:
    done = _netwatch(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unwritable_output(events_file: Path) -> None:
    done = _netwatch("report", str(events_file), "--html", "/nonexistent-dir/report.html")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "netwatch: cannot write /nonexistent-dir/report.html: " in done.stderr


def test_stdin_and_gzip(events_file: Path, tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "events.jsonl.gz"
    packed.write_bytes(gzip.compress(events_file.read_bytes()))
    done = _netwatch("report", str(packed), "--markdown", "-")
    assert done.returncode == 0 and "| Alipay | 2 | 3 |" in done.stdout
    done = _netwatch("report", "-", "--markdown", "-", stdin=events_file.read_text())
    assert done.returncode == 0 and "| Alipay | 2 | 3 |" in done.stdout


# -- real Chromium -----------------------------------------------------------------------------------

class DevTools:
    """A minimal DevTools-protocol client over one page's websocket."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(json.loads(self.ws.recv()))
        raise AssertionError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str) -> object:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]


@pytest.fixture
def chromium(tmp_path: Path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (Debian package chromium)")
    pytest.importorskip("websocket", reason="websocket-client (PyPI) is not installed")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
                             "--remote-debugging-port=0", "--window-size=1280,1600", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets: list = []
        while not any(t.get("type") == "page" for t in targets):
            assert time.monotonic() < deadline, "chromium shows no page target"
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # loopback, no proxy
            connection.request("GET", "/json/list")
            targets = json.loads(connection.getresponse().read())
            connection.close()
            time.sleep(0.1)
        page = next(t for t in targets if t["type"] == "page")
        client = DevTools(page["webSocketDebuggerUrl"])
        yield client
        client.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.system
def test_page_in_chromium(chromium: DevTools, report_files, events_file: Path, tmp_path: Path) -> None:
    html, _, _ = report_files
    for domain in ("Page", "Runtime", "Log", "Network"):
        chromium.call(f"{domain}.enable")
    chromium.call("Page.navigate", url=html.as_uri())
    chromium.wait_for("Page.loadEventFired")
    time.sleep(0.5)
    chromium.evaluate("1")  # drain the events that arrived meanwhile

    problems = [e for e in chromium.events if e.get("method") in ("Runtime.exceptionThrown",)
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning"))
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))]
    assert problems == []
    requests = [e["params"]["request"]["url"] for e in chromium.events
                if e.get("method") == "Network.requestWillBeSent"]
    assert requests == [html.as_uri()]

    expected = _expected(events_file)
    cells = chromium.evaluate("""Array.from(document.querySelectorAll('table.matrix td[data-count]'))
        .map(td => [td.dataset.device, td.dataset.app, Number(td.dataset.count), td.textContent])""")
    got = {(d, a): n for d, a, n, _ in cells if n}
    assert got == dict(expected["cells"])
    assert all(text == str(n) for _, _, n, text in cells if n)
    per_app = chromium.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('table.apps tr[data-app]'))
        .map(tr => [tr.dataset.app, Number(tr.querySelector('[data-devices]').textContent)]))""")
    assert per_app == expected["devices_per_app"]
    metrics = chromium.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('[data-metric]'))
        .map(el => [el.dataset.metric, el.textContent]))""")
    assert metrics["flagged-devices"] == str(expected["flagged"])
    assert metrics["first-seen"] == expected["first"] and metrics["last-seen"] == expected["last"]
    assert metrics["signatures"].startswith("2026.") and metrics["skipped"].startswith("1 input line")
    assert chromium.evaluate("document.querySelectorAll('script, img[src], iframe').length") == 0
    hostile = chromium.evaluate("document.querySelector('tr[data-device=\"02:66:66:66:66:66\"] th').textContent")
    assert HOSTILE_HOST in hostile

    box = chromium.evaluate("""(() => { const r = document.querySelector('#timeline svg').getBoundingClientRect();
        return [r.x, r.y + window.scrollY, r.width, r.height]; })()""")
    assert box[2] > 600 and box[3] > 150
    shot = chromium.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1})
    png = tmp_path / "timeline.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    from PIL import Image

    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24) or []
    coloured = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 60)
    assert coloured > 200, "the chart shows no coloured contact markers"
    assert chromium.evaluate("document.querySelectorAll('#timeline svg text').length") > 10

    chromium.call("Emulation.setEmulatedMedia", media="print")
    assert chromium.evaluate("getComputedStyle(document.body).maxWidth") == "none"
    pdf = base64.b64decode(chromium.call("Page.printToPDF", printBackground=False)["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    full = chromium.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "page.png").write_bytes(base64.b64decode(full["data"]))


def test_log_sources_and_dense_timeline_stay_small() -> None:
    """`netwatch logs` evidence names the log line; 20,000 contacts of one device draw a bounded chart."""
    from netwatch.report.chart import TIME_BUCKETS, timeline_svg
    from netwatch.report.data import Collector
    from netwatch.report.markdown import render_markdown

    collector = Collector()
    for i in range(20_000):
        collector.add_event({
            "@timestamp": f"2026-03-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z",
            "event": {"kind": "alert", "dataset": "netwatch.detection"},
            "netwatch": {"app": "alipay", "app_name": "Alipay", "evidence": "dns_query", "name": "mapi.alipay.com",
                         "signature": "exact:mapi.alipay.com", "device": {"id": "192.0.2.7"},
                         "capture": {"file": "/var/log/named/query.log", "frame": 7 + i}},
            "source": {"ip": "192.0.2.7"}})
    data = collector.data
    assert data.contacts[("192.0.2.7", "alipay")].count == 20_000
    svg = timeline_svg(data)
    assert svg is not None and TIME_BUCKETS // 2 < svg.count("<use") <= TIME_BUCKETS + 20
    assert "/var/log/named/query.log line 7" in render_markdown(data, title="t", chart_file=None)


def test_odd_events_are_skipped_not_fatal(tmp_path: Path) -> None:
    """Wrong types anywhere in an event: skipped or read as far as sensible, never a traceback."""
    good = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"kind": "alert", "dataset": "netwatch.detection"},
            "netwatch": {"app": "alipay", "app_name": "Alipay", "evidence": "dns_query", "device": {"id": "d1"}}}
    odd = [
        [], "text", 5, None, {"event": "x"}, {"@timestamp": 5, "event": {}, "netwatch": {}},
        {**good, "netwatch": {**good["netwatch"], "device": {"id": ["not", "a", "string"]}}},
        {**good, "netwatch": {**good["netwatch"], "app": {"x": 1}, "capture": "nope", "confidence": 7}},
        {**good, "rule": {"version": ["x"]}, "source": "nope", "@timestamp": "9999-12-31T23:59:59.999999Z"},
        {**good, "@timestamp": "not a time"}, {**good, "@timestamp": "0001-01-01T00:00:00Z"},
        {**good, "@timestamp": "9999-12-31T23:59:59.999999+00:00"},
        good,
    ]
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in odd) + "{broken json\n" + "x" * 2_000_000 + "\n")
    done = _netwatch("report", str(path), "--html", str(tmp_path / "odd.html"), "--markdown", str(tmp_path / "o.md"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "were not netwatch events" in done.stderr
    assert "| Alipay | 1 | 1 |" in (tmp_path / "o.md").read_text()  # only `good` is a readable alert
