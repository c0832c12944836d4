"""Transports: deliver a batch of queued events and say which were accepted.

A transport never raises for delivery problems; it returns an Outcome. Events listed in
`delivered` or `rejected` are removed from the queue; all others stay at its head and are
retried (in order) after a backoff. Error texts carry status codes and reasons only, never
request headers, so secrets cannot leak into logs or stats.

Syslog over TCP/TLS: an event counts as delivered once `sendall()` returned (for TLS: once
the TLS record was written). That means the bytes are in the kernel send buffer, not that the
receiver processed them: if the receiver dies after that, what was still in flight is lost.
To narrow that window, before each batch the connection is probed for an orderly close by the
peer (a stopped rsyslog closes its sockets), and a new connection is made when it was closed.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import gzip
import http.client
import json
import os
import select
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from netwatch.forward.formats import UTF8_BOM, SyslogFormatter, bulk_lines, hec_event
from netwatch.forward.queue import QueuedEvent
from netwatch.forward.url import ForwardTarget, facility_number, redact_path

_QUEUED_BOM = "\x01"  # stands for the BOM while a syslog message waits in the queue
_QUEUED_BOM_BYTES = _QUEUED_BOM.encode("ascii")
_BOM_BYTES = UTF8_BOM.encode("utf-8")


@dataclass
class Outcome:
    delivered: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # refused for good: go to the dead-letter file
    error: str | None = None  # set when some events must be retried
    retry_after: float | None = None  # receiver asked us to wait (HTTP Retry-After)
    shrink: bool = False  # the batch was too large or had a bad event: retry with smaller batches
    reason: str = ""  # why `rejected` were refused (kept beside them in the dead-letter file)


class Transport:
    """Base class: `prepare()` one event into its wire text (at submit time, so the queue holds
    ready-to-send units and delivery costs almost no CPU), `send()` one batch of them, `close()`
    the connection, `abort()` from another thread."""

    max_batch = 500

    def prepare(self, event: Mapping[str, Any], event_text: str) -> str:
        """The unit stored in the queue for this event; `event_text` is `event_json(event)`."""
        return event_text

    def send(self, batch: Sequence[QueuedEvent]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (called from the delivery thread)."""

    def abort(self) -> None:
        """Interrupt a blocked send (called from another thread on shutdown)."""


def tls_context(target: ForwardTarget) -> ssl.SSLContext:
    """Client TLS context: CA verification and host name check on unless ?insecure=1."""
    ca = target.options.get("ca")
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    if target.flag("insecure"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if "cert" in target.options:
        context.load_cert_chain(target.options["cert"], target.options["key"])
    return context


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# syslog
# ---------------------------------------------------------------------------------------------
class SyslogTransport(Transport):
    """RFC 5426 (UDP), RFC 6587 octet counting (TCP) and RFC 5425 (TLS)."""

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        self.target = target
        self.protocol = target.kind.split("+", 1)[1]
        self.formatter = SyslogFormatter(target.syslog_format, facility=facility_number(target),
                                         hostname=target.options.get("hostname") or hostname,
                                         procid=str(os.getpid()))
        self.timeout = target.number("timeout", 10.0, minimum=0.001)
        self.max_batch = int(target.number("batch", 500, minimum=1))
        self._context = tls_context(target) if self.protocol == "tls" else None
        self._sock: socket.socket | None = None

    def prepare(self, event: Mapping[str, Any], event_text: str) -> str:
        # The queue holds the RFC 5424 BOM as a control byte that no formatted message can contain
        # (every format escapes control characters): a str with U+FEFF in it costs Python two bytes
        # per character, which doubled the cost of queueing, encoding and sending each alert.
        return self.formatter.message(event, event_text).replace(UTF8_BOM, _QUEUED_BOM, 1)

    def _connect(self) -> socket.socket:
        if self.protocol == "udp":
            family = socket.AF_INET6 if ":" in self.target.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.connect((self.target.host, self.target.port))
            return sock
        sock = socket.create_connection((self.target.host, self.target.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._context is not None:
            try:
                sock = self._context.wrap_socket(sock, server_hostname=self.target.host)
            except BaseException:
                sock.close()
                raise
        return sock

    def _peer_closed(self, sock: socket.socket) -> bool:
        """True when the receiver closed (or reset) the connection since the last batch."""
        if self.protocol == "udp":
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if isinstance(sock, ssl.SSLSocket):
            sock.setblocking(False)
            try:
                return sock.recv(1024) == b""
            except ssl.SSLWantReadError:
                return False  # e.g. a TLS 1.3 session ticket, the connection is alive
            except OSError:
                return True
            finally:
                sock.settimeout(self.timeout)
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def send(self, batch: Sequence[QueuedEvent]) -> Outcome:
        frames = [item.text.encode("utf-8").replace(_QUEUED_BOM_BYTES, _BOM_BYTES, 1) for item in batch]
        try:
            if self._sock is not None and self._peer_closed(self._sock):
                self.close()
            if self._sock is None:
                self._sock = self._connect()
        except (OSError, ssl.SSLError) as exc:
            self.close()
            return Outcome(error=f"connect to {self.target.host}:{self.target.port}: {_describe(exc)}")
        if self.protocol == "udp":
            return self._send_datagrams(batch, frames)
        payload = b"".join(b"%d %s" % (len(frame), frame) for frame in frames)
        try:
            self._sock.sendall(payload)
        except (OSError, ssl.SSLError) as exc:
            self.close()
            return Outcome(error=f"send to {self.target.host}:{self.target.port}: {_describe(exc)}")
        return Outcome(delivered=[item.seq for item in batch])

    def _send_datagrams(self, batch: Sequence[QueuedEvent], frames: list[bytes]) -> Outcome:
        """A datagram counts as delivered once sent, unless the kernel reports the receiver's port
        unreachable (ICMP, seen as ECONNREFUSED on this connected socket): the datagram that drew
        the ICMP can't be told apart from the others, so then the whole batch stays queued and is
        sent again (at-least-once). A receiver that drops silently is not noticed: use TCP/TLS."""
        outcome = Outcome()
        sock = self._sock
        assert sock is not None
        where = f"send to {self.target.host}:{self.target.port}/udp"
        for item, frame in zip(batch, frames, strict=True):
            try:
                sock.send(frame)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # can never fit a datagram
                    outcome.rejected.append(item.seq)
                    outcome.reason = f"{where}: {_describe(exc)} ({len(frame)} bytes)"
                    continue
                self.close()
                return Outcome(error=f"{where}: {_describe(exc)}")
            outcome.delivered.append(item.seq)
        pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # reading it clears it
        if pending:
            self.close()
            return Outcome(error=f"{where}: {os.strerror(pending)}")
        return outcome

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(1.0)
                sock.unwrap()  # close_notify, so the receiver sees an orderly TLS close
        with contextlib.suppress(OSError):
            sock.close()

    def abort(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------------------------
# HTTP: Splunk HEC, Elasticsearch _bulk, generic webhook
# ---------------------------------------------------------------------------------------------
def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 3600))
    try:
        moment = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, min(3600.0, moment - (time.time() if now is None else now)))


class _NoDelay:
    """http.client writes the headers and the body of a request with separate send() calls;
    with Nagle's algorithm on, the body's last segment then waits for the receiver's delayed
    ACK of the headers (40 ms on Linux): that capped a keep-alive connection at ~25 requests/s."""

    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if self.sock is not None:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    pass


# Which answers mean "this event is malformed" (split the batch down to single events, then put a
# single refused event in the dead-letter file). Every other non-2xx answer -- redirects (not
# followed: a token must not travel to another address), auth and configuration errors, 404, 429,
# 5xx -- keeps the events queued and retries, so a wrong URL or token never throws alerts away.
MALFORMED_STATUSES = frozenset({400, 413, 422})

# Splunk HEC answers 400 for event problems and for configuration problems alike; the JSON "code"
# tells them apart (Splunk docs, "Troubleshoot HTTP Event Collector", status codes table,
# https://docs.splunk.com/Documentation/Splunk/latest/Data/TroubleshootHTTPEventCollector):
# 5 No data, 6 Invalid data format, 12 Event field is required, 13 Event field cannot be blank,
# 15 Error in handling indexed fields are about the events; 7 Incorrect index, 10/11 data channel
# missing/invalid, 14 ACK is disabled, 16 query-string auth not enabled are configuration, retried.
HEC_MALFORMED_CODES = frozenset({5, 6, 12, 13, 15})

# Elasticsearch _bulk per-item answers: 400 is a document the index cannot take (mapping/parsing
# errors) unless its error type says the cluster refused it for now.
BULK_RETRY_ERROR_TYPES = frozenset({"cluster_block_exception", "validation_exception", "index_closed_exception",
                                    "es_rejected_execution_exception", "circuit_breaking_exception"})


def redirect_note(status: int, location: str | None) -> str:
    """' (redirects are not followed: ...)' for a 3xx answer; the target is shown without its path,
    which may hold a secret."""
    if not 300 <= status < 400:
        return ""
    where = ""
    if location:
        parts = urlsplit(location)
        where = f" to {parts.scheme}://{parts.netloc}/..." if parts.netloc else " to a path on the same host"
    return f" (redirect{where} not followed: point the forwarder URL at the final address)"


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    reason: str
    payload: bytes
    retry_after: str | None = None
    location: str | None = None


class HttpTransport(Transport):
    """POST batches to an HTTP(S) endpoint; subclasses build the body and read the answer."""

    path = "/"
    content_type = "application/json"

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        self.target = target
        self.hostname = hostname
        self.timeout = target.number("timeout", 10.0, minimum=0.001)
        self.gzip = target.flag("gzip", True)
        self.max_batch = int(target.number("batch", 500, minimum=1))
        self._context = tls_context(target) if target.tls else None
        self._conn: http.client.HTTPConnection | None = None
        self.headers = {"Content-Type": self.content_type, "User-Agent": "netwatch-forwarder"}
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._context is not None:
                self._conn = _HTTPSConnection(self.target.host, self.target.port, timeout=self.timeout,
                                              context=self._context)
            else:
                self._conn = _HTTPConnection(self.target.host, self.target.port, timeout=self.timeout)
        return self._conn

    def body(self, batch: Sequence[QueuedEvent]) -> bytes:
        raise NotImplementedError

    def post(self, body: bytes) -> HttpAnswer:
        """One POST. Raises OSError etc. when there is no answer."""
        data = gzip.compress(body, compresslevel=5) if self.gzip else body
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=data, headers=self.headers)
            response = conn.getresponse()
            payload = response.read(16 * 1024 * 1024)
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return HttpAnswer(response.status, response.reason, payload, response.getheader("Retry-After"),
                          response.getheader("Location"))

    def send(self, batch: Sequence[QueuedEvent]) -> Outcome:
        try:
            answer = self.post(self.body(batch))
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            return Outcome(error=f"POST {self.target.host}:{self.target.port}{self.display_path}: {_describe(exc)}")
        if 200 <= answer.status < 300:
            return self.accepted(batch, answer.payload)
        return self.refused(batch, answer)

    @property
    def display_path(self) -> str:
        """The request path as it may appear in logs (a webhook path can be its secret)."""
        return self.path

    def describe(self, answer: HttpAnswer) -> str:
        return (f"POST {self.display_path}: HTTP {answer.status} {answer.reason}"
                f"{redirect_note(answer.status, answer.location)}")

    def malformed(self, answer: HttpAnswer) -> bool:
        """Does this answer say the events themselves are unacceptable?"""
        return answer.status in MALFORMED_STATUSES

    def refused(self, batch: Sequence[QueuedEvent], answer: HttpAnswer) -> Outcome:
        """A non-2xx answer: retry, or split down to the single event the receiver refuses."""
        message = self.describe(answer)
        if not self.malformed(answer):
            return Outcome(error=message, retry_after=retry_after_seconds(answer.retry_after))
        if len(batch) > 1:
            return Outcome(error=message, shrink=True)
        return Outcome(rejected=[batch[0].seq], reason=message)

    def accepted(self, batch: Sequence[QueuedEvent], payload: bytes) -> Outcome:
        return Outcome(delivered=[item.seq for item in batch])

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def abort(self) -> None:
        conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class HecTransport(HttpTransport):
    """Splunk HTTP Event Collector: `POST /services/collector/event`, `Authorization: Splunk TOKEN`,
    events concatenated (newline separated) in one body."""

    path = "/services/collector/event"

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        super().__init__(target, hostname)
        self.headers["Authorization"] = f"Splunk {target.secret('token')}"
        self.host_field = target.options.get("hostname") or hostname
        self.index = target.options.get("index")
        self.source = target.options.get("source", "netwatch")
        self.sourcetype = target.options.get("sourcetype", "netwatch:alert")

    def prepare(self, event: Mapping[str, Any], event_text: str) -> str:
        return hec_event(event, event_text, host=self.host_field, source=self.source,
                         sourcetype=self.sourcetype, index=self.index)

    def body(self, batch: Sequence[QueuedEvent]) -> bytes:
        return "\n".join(item.text for item in batch).encode("utf-8")

    @staticmethod
    def _answer(answer: HttpAnswer) -> dict[str, Any]:
        try:
            parsed = json.loads(answer.payload)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def describe(self, answer: HttpAnswer) -> str:
        text = self._answer(answer).get("text")
        detail = f" ({_printable(text)})" if isinstance(text, str) and text else ""
        return super().describe(answer) + detail

    def malformed(self, answer: HttpAnswer) -> bool:
        if answer.status == 413:
            return True
        return answer.status == 400 and self._answer(answer).get("code") in HEC_MALFORMED_CODES

    def refused(self, batch: Sequence[QueuedEvent], answer: HttpAnswer) -> Outcome:
        """HEC stops at the first bad event of a batch and says which one ("invalid-event-number");
        the events before it were taken, so only that one is refused and the rest sent again."""
        number = self._answer(answer).get("invalid-event-number")
        if (self.malformed(answer) and answer.status == 400 and isinstance(number, int)
                and not isinstance(number, bool) and 0 <= number < len(batch)):
            return Outcome(delivered=[item.seq for item in batch[:number]], rejected=[batch[number].seq],
                           reason=f"{self.describe(answer)}, event {number} of the batch")
        return super().refused(batch, answer)


def _printable(text: str, limit: int = 200) -> str:
    """A receiver's message, safe for one log line."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


DEFAULT_ELASTIC_INDEX = "netwatch-alerts"


class ElasticBulkTransport(HttpTransport):
    """Elasticsearch / OpenSearch `_bulk` with `create` actions keyed by event.id; items that
    fail with 429/5xx are retried alone, items refused for good (e.g. 400 mapping errors) are
    rejected, 409 (already indexed: a redelivery) counts as delivered."""

    content_type = "application/x-ndjson"

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        super().__init__(target, hostname)
        self.index = target.path or None
        self.path = f"/{self.index}/_bulk" if self.index else "/_bulk"
        self.action_index = None if self.index else DEFAULT_ELASTIC_INDEX
        api_key = target.secret("api_key")
        if api_key:
            self.headers["Authorization"] = f"ApiKey {api_key}"
        elif "user" in target.options:
            self.headers["Authorization"] = _basic(target.options["user"], target.secret("password") or "")

    def prepare(self, event: Mapping[str, Any], event_text: str) -> str:
        return bulk_lines(event, event_text, index=self.action_index)

    def body(self, batch: Sequence[QueuedEvent]) -> bytes:
        return "".join(item.text for item in batch).encode("utf-8")

    def accepted(self, batch: Sequence[QueuedEvent], payload: bytes) -> Outcome:
        try:
            answer = json.loads(payload)
            items = answer["items"]
            errors = bool(answer.get("errors"))
        except (ValueError, KeyError, TypeError):
            return Outcome(error="_bulk: unreadable response")
        if not errors:
            return Outcome(delivered=[item.seq for item in batch])
        if not isinstance(items, list) or len(items) != len(batch):
            return Outcome(error="_bulk: response items do not match the request")
        outcome = Outcome()
        retried = 0
        first_reason = ""
        for queued, item in zip(batch, items, strict=True):
            result = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            status = result.get("status", 0) if isinstance(result, dict) else 0
            if not isinstance(status, int) or isinstance(status, bool):
                status = 0
            error = result.get("error") if isinstance(result, dict) else None
            error_type = error.get("type") if isinstance(error, dict) else None
            if 200 <= status < 300 or status == 409:  # 409: `create` of an _id already indexed
                outcome.delivered.append(queued.seq)
            elif status == 400 and error_type not in BULK_RETRY_ERROR_TYPES:
                outcome.rejected.append(queued.seq)
                if not outcome.reason:
                    outcome.reason = f"_bulk: item status 400 ({_printable(str(error_type or 'no error type'))})"
            else:  # 429, 5xx, 403 read-only index, 404 missing index, ...: the cluster's problem
                retried += 1
                if not first_reason:
                    first_reason = f"item status {status}" + (f" {_printable(str(error_type))}" if error_type else "")
        if retried:
            # Only the failed items stay queued: the next batch starts with them, in order.
            outcome.error = f"_bulk: {retried} of {len(batch)} items failed ({first_reason})"
        return outcome


class WebhookTransport(HttpTransport):
    """Generic webhook: a JSON array of ECS events per POST to the URL's path."""

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        super().__init__(target, hostname)
        self.path = target.path or "/"
        token = target.secret("token")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif "user" in target.options:
            self.headers["Authorization"] = _basic(target.options["user"], target.secret("password") or "")

    def body(self, batch: Sequence[QueuedEvent]) -> bytes:
        return ("[" + ",".join(item.text for item in batch) + "]").encode("utf-8")

    @property
    def display_path(self) -> str:
        return redact_path(self.path)


# ---------------------------------------------------------------------------------------------
# rotating JSON-lines file
# ---------------------------------------------------------------------------------------------
class RotatingFileTransport(Transport):
    """Appends ECS JSON lines; rotates PATH -> PATH.1 -> ... PATH.N at `max_bytes`. Delivered =
    written, flushed and (unless ?fsync=0) fsynced."""

    def __init__(self, target: ForwardTarget, hostname: str | None = None) -> None:
        self.path = Path(target.path)
        self.max_bytes = int(target.number("max_bytes", 100 * 1024 * 1024, minimum=1))
        self.backups = int(target.number("backups", 5, minimum=0))
        self.fsync = target.flag("fsync", True)
        self.max_batch = int(target.number("batch", 1000, minimum=1))
        self._handle = None
        # Like `-o`, a missing directory is an error, not created: a typo in the URL must not send
        # alerts into a new tree nobody watches.
        if not self.path.parent.is_dir():
            raise ValueError(f"directory {self.path.parent} does not exist")

    def _open(self):
        if self._handle is None:
            self._handle = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
        return self._handle

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for number in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def send(self, batch: Sequence[QueuedEvent]) -> Outcome:
        outcome = Outcome()
        try:
            for item in batch:
                line = item.text.encode("utf-8") + b"\n"
                handle = self._open()
                if handle.tell() > 0 and handle.tell() + len(line) > self.max_bytes:
                    handle.flush()
                    if self.fsync:
                        os.fsync(handle.fileno())
                    self._rotate()
                    handle = self._open()
                handle.write(line)
                outcome.delivered.append(item.seq)
            handle = self._open()
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        except OSError as exc:
            self.close()
            return Outcome(error=f"write {self.path}: {_describe(exc)}")
        return outcome

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


def make_transport(target: ForwardTarget, hostname: str | None = None) -> Transport:
    family = {"syslog": SyslogTransport, "hec": HecTransport, "elastic": ElasticBulkTransport,
              "webhook": WebhookTransport, "file": RotatingFileTransport}[target.family]
    return family(target, hostname)
