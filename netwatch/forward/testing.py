"""Real and fake receivers for the forwarding tests and benchmark (loopback only).

* `RsyslogServer`: the Debian rsyslogd, run in the foreground with imudp, imtcp and imtcp+gtls
  (a throw-away CA made here), writing every raw message it receives to one file per input.
  Control-character escaping on receipt is switched off, so a forged line would really show
  up as a second line.
* `FakeSiemReceiver`: an http.server in a thread that implements the request/response
  semantics of Splunk HEC and the Elasticsearch `_bulk` API, plus a generic webhook, with
  injectable faults (5xx, 429 + Retry-After, per-item bulk failures, slow answers). It is not
  Splunk or Elasticsearch; it is what netwatch's tests can run here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

LOOPBACK = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free on loopback a moment ago (for both TCP and UDP when asked for TCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port")


@dataclass
class TestCA:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_test_ca(directory: Path, host: str = LOOPBACK) -> TestCA:
    """A CA and a server certificate for `host` (IP SAN), written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netwatch test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = TestCA(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.server_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.TraditionalOpenSSL,
                                                   serialization.NoEncryption()))
    return paths


_RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k" parser.escapeControlCharactersOnReceive="off"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imudp")
module(load="imtcp" maxSessions="200")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="udp") {{ action(type="omfile" file="{work}/udp.log" template="raw") }}
ruleset(name="tcp") {{ action(type="omfile" file="{work}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{work}/tls.log" template="raw") }}
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="udp" rcvbufSize="8m")
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls" streamDriver.name="gtls"
      streamDriver.mode="1" streamDriver.authMode="anon")
"""


class RsyslogServer:
    """rsyslogd on loopback with UDP, TCP and TLS inputs; `lines(proto)` reads what it wrote."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists()
                                              else None)
        if binary is None:
            raise FileNotFoundError("rsyslogd not installed (Debian packages rsyslog, rsyslog-gnutls)")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = make_test_ca(workdir / "pki")
        self.ports = {"udp": free_port(socket.SOCK_DGRAM), "tcp": free_port(), "tls": free_port()}
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(_RSYSLOG_CONF.format(work=workdir, ca=self.ca.ca_cert, cert=self.ca.server_cert,
                                                  key=self.ca.server_key, **self.ports))
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, proto: str, fmt: str = "rfc5424", **options: str) -> str:
        query = {"format": fmt, **options}
        if proto == "tls":
            query.setdefault("ca", str(self.ca.ca_cert))
        return f"syslog+{proto}://{LOOPBACK}:{self.ports[proto]}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.conf), "-i", str(self.workdir / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "rsyslogd.err", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.workdir / 'rsyslogd.err').read_text()}")
            if all(self._listening(port) for port in (self.ports["tcp"], self.ports["tls"])):
                time.sleep(0.1)  # the UDP input opens alongside; give it a moment
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rsyslogd did not open its ports")

    @staticmethod
    def _listening(port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
        return False

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def lines(self, proto: str) -> list[bytes]:
        path = self.workdir / f"{proto}.log"
        if not path.exists():
            return []
        data = path.read_bytes()
        return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")

    def wait_lines(self, proto: str, count: int, timeout: float = 15.0) -> list[bytes]:
        """Lines written so far once at least `count` arrived (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.lines(proto)
            if len(found) >= count:
                time.sleep(0.2)  # anything extra (a duplicate, a forged line) shows up too
                return self.lines(proto)
            time.sleep(0.05)
        return self.lines(proto)


def numbered_copies(base: dict[str, Any], count: int, prefix: str) -> list[dict[str, Any]]:
    """`count` deep copies of an event with distinct ids `nw-PREFIX-00000`, ... (test alerts)."""
    text = json.dumps(base)
    events = []
    for number in range(count):
        event = json.loads(text)
        event["event"]["id"] = f"nw-{prefix}-{number:05d}"
        events.append(event)
    return events


# ---------------------------------------------------------------------------------------------
# fake HEC / _bulk / webhook receiver
# ---------------------------------------------------------------------------------------------
@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0  # sleep before answering (a slow receiver); status 0 = then answer normally
    body: dict[str, Any] = field(default_factory=lambda: {"text": "Server is busy", "code": 9})
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"Location": ...} for a redirect


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed
    at: float  # time.monotonic() when it arrived


class FakeSiemReceiver:
    """HEC (`/services/collector/event`), `_bulk` (`/_bulk`, `/INDEX/_bulk`) and webhook (others)."""

    def __init__(self, hec_token: str = "test-token", auth: str | None = None) -> None:
        self.hec_token = hec_token
        self.auth = auth  # expected Authorization header for _bulk / webhook (None: any)
        self.faults: deque[Fault] = deque()
        self.item_fault: Callable[[dict], int | None] | None = None  # per bulk doc: status or None
        self.requests: list[ReceivedRequest] = []
        self.hec_events: list[dict] = []
        self.bulk_docs: dict[str, dict] = {}  # _id -> document, like an index
        self.bulk_order: list[str] = []
        self.webhook_events: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The answer goes out as headers + body writes; with Nagle on, the body waits for
            # the client's delayed ACK (40 ms), which no real HEC/_bulk server imposes.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSiemReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, kind: str, path: str = "", **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"{kind}://{LOOPBACK}:{self.port}{path}" + (f"?{query}" if query else "")

    # -- request handling ---------------------------------------------------------------------
    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: Any,
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        if handler.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        request = ReceivedRequest(handler.path, dict(handler.headers.items()), raw, time.monotonic())
        with self.lock:
            self.requests.append(request)
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                headers = dict(fault.headers)
                if fault.retry_after:
                    headers["Retry-After"] = fault.retry_after
                self._reply(handler, fault.status, fault.body, headers)
                return
        if handler.path == "/services/collector/event":
            self._hec(handler, raw)
        elif handler.path.split("?")[0].endswith("/_bulk"):
            self._bulk(handler, raw)
        else:
            self._webhook(handler, raw)

    def _hec(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        auth = handler.headers.get("Authorization")
        if not auth:
            self._reply(handler, 401, {"text": "Token is required", "code": 2})
            return
        if auth != f"Splunk {self.hec_token}":
            self._reply(handler, 403, {"text": "Invalid token", "code": 4})
            return
        events = _hec_events(raw)
        if isinstance(events, int):
            self._reply(handler, 400, {"text": "Invalid data format", "code": 6, "invalid-event-number": events})
            return
        for number, obj in enumerate(events):
            if not isinstance(obj, dict) or "event" not in obj:
                self._reply(handler, 400, {"text": "Event field is required", "code": 12,
                                           "invalid-event-number": number})
                return
        if not events:
            self._reply(handler, 400, {"text": "No data", "code": 5})
            return
        with self.lock:
            self.hec_events.extend(events)
        self._reply(handler, 200, {"text": "Success", "code": 0})

    def _bulk(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        if self.auth is not None and handler.headers.get("Authorization") != self.auth:
            self._reply(handler, 401, {"error": {"type": "security_exception"}, "status": 401})
            return
        path_index = handler.path.split("?")[0][: -len("/_bulk")].strip("/") or None
        lines = [line for line in raw.split(b"\n") if line.strip()]
        if len(lines) % 2:
            self._reply(handler, 400, {"error": {"type": "illegal_argument_exception"}, "status": 400})
            return
        items, errors = [], False
        with self.lock:
            for action_line, doc_line in zip(lines[0::2], lines[1::2], strict=True):
                action = json.loads(action_line)
                (op, meta), = action.items()
                index = meta.get("_index", path_index)
                doc_id = meta.get("_id")
                doc = json.loads(doc_line)
                status = self.item_fault(doc) if self.item_fault else None
                if status is None:
                    if op == "create" and doc_id in self.bulk_docs:
                        status = 409
                    else:
                        status = 201
                        self.bulk_docs[doc_id] = doc
                        self.bulk_order.append(doc_id)
                item: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
                if status >= 300:
                    errors = True
                    item["error"] = {"type": "version_conflict_engine_exception" if status == 409
                                     else "es_rejected_execution_exception" if status == 429
                                     else "mapper_parsing_exception"}
                else:
                    item["result"] = "created"
                items.append({op: item})
        self._reply(handler, 200, {"took": 1, "errors": errors, "items": items})

    def _webhook(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        if self.auth is not None and handler.headers.get("Authorization") != self.auth:
            self._reply(handler, 401, {"error": "unauthorized"})
            return
        try:
            events = json.loads(raw)
        except ValueError:
            self._reply(handler, 400, {"error": "bad json"})
            return
        with self.lock:
            self.webhook_events.extend(events)
        self._reply(handler, 200, {"ok": True})


def _hec_events(raw: bytes) -> list[Any] | int:
    """The JSON objects of a HEC body (concatenated, whitespace between them allowed), or the
    number of the first invalid one. One object per line is the fast path (orjson); anything
    else is read object by object like Splunk does."""
    try:
        return [orjson.loads(line) for line in raw.split(b"\n") if line.strip()]
    except orjson.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 0
    events: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return events
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return len(events)
        events.append(obj)


# ---------------------------------------------------------------------------------------------
# strict reference parsers (written from the format specs, independent of formats.py)
# ---------------------------------------------------------------------------------------------
class FormatViolation(ValueError):
    """The text does not follow the format's grammar."""


_HEADER_5424 = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_NAME = re.compile(r"[!#-~]{1,32}")  # PRINTUSASCII except '=', ' ', ']', '"' (checked below)


def _sd_name(text: str, pos: int, stop: str) -> tuple[str, int]:
    end = pos
    while end < len(text) and text[end] not in stop:
        end += 1
    name = text[pos:end]
    if not _SD_NAME.fullmatch(name) or any(c in name for c in '= ]"'):
        raise FormatViolation(f"bad SD name {name!r}")
    return name, end


def parse_rfc5424(line: str) -> tuple[list[str], dict[str, dict[str, str]], str]:
    """RFC 5424 §6: (header fields, {SD-ID: {PARAM: value}}, MSG) with PARAM-VALUE unescaped."""
    match = _HEADER_5424.match(line)
    if not match:
        raise FormatViolation("bad RFC 5424 header")
    header = list(match.groups())
    pos = match.end()
    elements: dict[str, dict[str, str]] = {}
    if line.startswith("-", pos):
        pos += 1
    else:
        while line.startswith("[", pos):
            sd_id, pos = _sd_name(line, pos + 1, " ]")
            if sd_id in elements:
                raise FormatViolation(f"SD-ID {sd_id} twice")
            params: dict[str, str] = {}
            while line.startswith(" ", pos):
                name, pos = _sd_name(line, pos + 1, "=")
                if not line.startswith('="', pos):
                    raise FormatViolation("PARAM-NAME without =\"")
                pos += 2
                value = []
                while True:
                    if pos >= len(line):
                        raise FormatViolation("unterminated PARAM-VALUE")
                    char = line[pos]
                    if char == "\\" and pos + 1 < len(line) and line[pos + 1] in '"\\]':
                        value.append(line[pos + 1])
                        pos += 2
                    elif char == '"':
                        pos += 1
                        break
                    elif char == "]":
                        raise FormatViolation("unescaped ] in PARAM-VALUE")
                    else:
                        value.append(char)
                        pos += 1
                if name in params:
                    raise FormatViolation(f"PARAM {name} twice")
                params[name] = "".join(value)
            if not line.startswith("]", pos):
                raise FormatViolation("SD-ELEMENT not closed")
            pos += 1
            elements[sd_id] = params
        if not elements:
            raise FormatViolation("no STRUCTURED-DATA")
    if pos == len(line):
        return header, elements, ""
    if line[pos] != " ":
        raise FormatViolation("no SP before MSG")
    return header, elements, line[pos + 1:]


def _split_header(text: str, count: int) -> tuple[list[str], str]:
    r"""Split `count` '|'-terminated fields where '\|' and '\\' are escapes (CEF and LEEF)."""
    fields, current, pos = [], [], 0
    while len(fields) < count:
        if pos >= len(text):
            raise FormatViolation("header too short")
        char = text[pos]
        if char == "\\" and pos + 1 < len(text) and text[pos + 1] in "|\\":
            current.append(text[pos + 1])
            pos += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            pos += 1
        else:
            current.append(char)
            pos += 1
    return fields, text[pos:]


_CEF_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")
_CEF_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def parse_cef(text: str) -> tuple[list[str], dict[str, str]]:
    """ArcSight CEF: the 7 header fields and the extension (keys are found only at ` key=` with
    an unescaped '='; values are unescaped)."""
    start = text.find("CEF:")
    if start < 0:
        raise FormatViolation("no CEF: prefix")
    header, extension = _split_header(text[start:], 7)
    keys = list(_CEF_KEY.finditer(extension))
    if extension and (not keys or keys[0].start() != 0):
        raise FormatViolation("extension does not start with a key")
    result: dict[str, str] = {}
    for number, match in enumerate(keys):
        end = keys[number + 1].start() if number + 1 < len(keys) else len(extension)
        raw, value, pos = extension[match.end():end], [], 0
        while pos < len(raw):
            if raw[pos] == "\\" and pos + 1 < len(raw) and raw[pos + 1] in _CEF_UNESCAPE:
                value.append(_CEF_UNESCAPE[raw[pos + 1]])
                pos += 2
            elif raw[pos] == "=":
                raise FormatViolation("unescaped = in a value")
            else:
                value.append(raw[pos])
                pos += 1
        if match.group(1) in result:
            raise FormatViolation(f"key {match.group(1)} twice")
        result[match.group(1)] = "".join(value)
    return header, result


def parse_leef(text: str) -> tuple[list[str], dict[str, str]]:
    """LEEF 2.0: header fields (incl. the delimiter field) and attributes split on the delimiter."""
    start = text.find("LEEF:2.0|")
    if start < 0:
        raise FormatViolation("no LEEF:2.0 prefix")
    header, body = _split_header(text[start:], 6)
    spec = header[5]
    if spec.lower().startswith(("0x", "x")):
        delimiter = chr(int(spec.lower().lstrip("0").lstrip("x"), 16))
    elif len(spec) == 1:
        delimiter = spec
    else:
        raise FormatViolation(f"bad delimiter {spec!r}")
    result: dict[str, str] = {}
    for pair in body.split(delimiter):
        key, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_]+", key) or key in result:
            raise FormatViolation(f"bad attribute {pair!r}")
        result[key] = value
    return header, result


_HEADER_3164 = re.compile(r"<(\d{1,3})>([A-Z][a-z]{2}) ([ \d]\d) (\d\d:\d\d:\d\d) (\S+) ")
_PAIR = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse_rfc3164(line: str) -> tuple[list[str], str, dict[str, str]]:
    """Our RFC 3164 layout: header, TAG, then `alert key="value" ...` (`\\"` and `\\\\` escapes)."""
    match = _HEADER_3164.match(line)
    if not match:
        raise FormatViolation("bad RFC 3164 header")
    rest = line[match.end():]
    tag, sep, content = rest.partition(": ")
    if not sep or not content.startswith("alert "):
        raise FormatViolation("no TAG")
    pos, pairs = len("alert "), {}
    while pos < len(content):
        pair = _PAIR.match(content, pos)
        if not pair or pair.group(1) in pairs:
            raise FormatViolation(f"bad pair at {content[pos:pos + 20]!r}")
        pairs[pair.group(1)] = re.sub(r"\\(.)", r"\1", pair.group(2))
        pos = pair.end()
        if pos < len(content):
            if content[pos] != " ":
                raise FormatViolation("pairs not separated by a space")
            pos += 1
    return list(match.groups()), tag, pairs
