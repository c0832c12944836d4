"""Forwarder URLs: parsing, validation, secret loading and the queue key.

Secrets never appear in a URL: `?token_env=NAME`, `?token_file=PATH`, `?password_env=NAME`,
`?password_file=PATH`, `?api_key_env=NAME`, `?api_key_file=PATH` name where they live. A URL
that embeds a password (`https://user:pw@host`) is refused so it cannot end up in shell
history, process lists or logs. Messages and logs show a URL through `redact_url`: values of
options netwatch does not know (a `?token=` typed by mistake), user info, and a webhook's path
(which is the secret of many webhook services) are masked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from netwatch.forward.formats import FACILITIES, SYSLOG_FORMATS


class ForwardError(ValueError):
    """A forwarder URL or its options are unusable; the message starts with the (redacted) URL."""


SYSLOG_KINDS = ("syslog+udp", "syslog+tcp", "syslog+tls")
HTTP_KINDS = ("hec+https", "hec+http", "elastic+https", "elastic+http", "https", "http")
KINDS = (*SYSLOG_KINDS, *HTTP_KINDS, "file")
SECRET_OPTIONS = ("token_env", "token_file", "password_env", "password_file", "api_key_env", "api_key_file")

# Options each kind accepts (besides the retry/queue options every kind has).
_COMMON = {"retry_initial", "retry_max", "batch"}
_TLS = {"ca", "insecure", "cert", "key"}
_HTTP = {*_TLS, "timeout", "gzip"}
_ALLOWED: dict[str, set[str]] = {
    "syslog+udp": {"format", "facility", "hostname"},
    "syslog+tcp": {"format", "facility", "hostname", "timeout"},
    "syslog+tls": {"format", "facility", "hostname", "timeout", *_TLS},
    "hec": {*_HTTP, "token_env", "token_file", "index", "source", "sourcetype", "hostname"},
    "elastic": {*_HTTP, "user", "password_env", "password_file", "api_key_env", "api_key_file"},
    "webhook": {*_HTTP, "token_env", "token_file", "user", "password_env", "password_file"},
    "file": {"max_bytes", "backups", "fsync"},
}


@dataclass(frozen=True)
class ForwardTarget:
    """A parsed forwarder URL. `options` holds the raw query options (no secret values)."""

    url: str  # as given (never contains a secret, see module docstring)
    kind: str  # one of KINDS
    family: str  # "syslog", "hec", "elastic", "webhook", "file"
    host: str = ""
    port: int = 0
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return target_is_tls(self.kind)

    @property
    def display(self) -> str:
        """The URL as logs, errors and stats show it (see `redact_url`)."""
        return redact_url(self.url)

    @property
    def syslog_format(self) -> str:
        return self.options.get("format", "rfc5424")

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.options.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ForwardError(f"{self.display}: option {name}={raw!r} is not a number") from None
        if value < minimum:
            raise ForwardError(f"{self.display}: option {name} must be >= {minimum:g}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.options.get(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ForwardError(f"{self.display}: option {name}={raw!r} is not a boolean (use 1 or 0)")

    def queue_key(self) -> str:
        """Stable name of this forwarder's queue directory: the URL without secret references,
        options sorted, hashed (so changing how a token is supplied keeps the backlog)."""
        kept = sorted((k, v) for k, v in self.options.items() if k not in SECRET_OPTIONS)
        base = f"{self.kind}://{self.host}:{self.port}{self.path}?{urlencode(kept)}"
        digest = hashlib.sha256(base.encode("utf-8")).hexdigest()[:20]
        return f"{self.kind.replace('+', '-')}-{digest}"

    def secret(self, stem: str) -> str | None:
        """Read `<stem>_env` / `<stem>_file`; None when neither is configured."""
        env_name = self.options.get(f"{stem}_env")
        file_name = self.options.get(f"{stem}_file")
        if env_name:
            value = os.environ.get(env_name)
            if not value:
                raise ForwardError(f"{self.display}: environment variable {env_name} is not set or empty")
            return value.strip()
        if file_name:
            try:
                value = Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ForwardError(f"{self.display}: cannot read {stem} file {file_name}: {exc.strerror}") from None
            if not value:
                raise ForwardError(f"{self.display}: {stem} file {file_name} is empty")
            return value
        return None


def _family(kind: str) -> str:
    if kind.startswith("syslog+"):
        return "syslog"
    if kind.startswith("hec+"):
        return "hec"
    if kind.startswith("elastic+"):
        return "elastic"
    if kind in ("http", "https"):
        return "webhook"
    return kind


MASK = "***"
_KNOWN_OPTIONS = frozenset().union(*_ALLOWED.values(), _COMMON, {"user"})


def redact_path(path: str) -> str:
    """A webhook path with everything after its first segment masked: `/hooks/***`."""
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        return path
    head = segments[0]
    if len(segments) == 1:
        return f"/{MASK}"
    if len(head) > 24:
        head = MASK
    return f"/{head}/{MASK}"


def redact_url(url: str) -> str:
    """`url` safe for logs: user info, unknown options' values and webhook paths masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{url.split(':', 1)[0][:20]}://{MASK}"
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    path = parts.path
    if _family(parts.scheme.lower()) == "webhook":
        path = redact_path(path)
    query = "&".join(f"{key}={value if key in _KNOWN_OPTIONS else MASK}"
                     for key, value in parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def parse_forward_url(url: str) -> ForwardTarget:
    """Validate a forwarder URL; raise ForwardError("URL: what is wrong") on any problem (the URL
    redacted, see `redact_url`)."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ForwardError(f"{shown}: {exc}") from None
    kind = parts.scheme.lower()
    if kind not in KINDS:
        raise ForwardError(f"{shown}: unknown scheme {parts.scheme!r} (expected one of {', '.join(KINDS)})")
    if parts.password is not None:
        raise ForwardError(f"{parts.scheme}://...: a password in the URL is refused; use ?password_env=NAME "
                           "or ?password_file=PATH")
    family = _family(kind)
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in options:
            raise ForwardError(f"{shown}: option {key} given twice")
        options[key] = value
    if parts.username:
        options.setdefault("user", unquote(parts.username))
    allowed = _ALLOWED[kind] if family == "syslog" else _ALLOWED[family]
    unknown = sorted(set(options) - allowed - _COMMON)
    if unknown:
        raise ForwardError(f"{shown}: unknown option(s) {', '.join(unknown)} for {kind}")

    if family == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path or path.endswith("/"):
            raise ForwardError(f"{shown}: expected file:///ABSOLUTE/PATH/FILE")
        target = ForwardTarget(url=url, kind=kind, family=family, path=path, options=options)
    else:
        host = parts.hostname or ""
        if not host:
            raise ForwardError(f"{shown}: missing host")
        if port is None:
            if family == "syslog":
                raise ForwardError(f"{shown}: missing port (syslog has no single default: 514/udp, 6514/tls)")
            port = 443 if target_is_tls(kind) else 80
        path = parts.path
        if family == "elastic":
            index = path.strip("/")
            if "/" in index:
                raise ForwardError(f"{shown}: the path must be a single index name (or empty for _bulk)")
            path = index
        elif family == "syslog" and path not in ("", "/"):
            raise ForwardError(f"{shown}: syslog URLs take no path")
        target = ForwardTarget(url=url, kind=kind, family=family, host=host, port=port, path=path,
                               options=options)
    _check_options(target)
    return target


def target_is_tls(kind: str) -> bool:
    return kind in ("syslog+tls", "hec+https", "elastic+https", "https")


def _check_options(target: ForwardTarget) -> None:
    opts = target.options
    if target.family == "syslog":
        if target.syslog_format not in SYSLOG_FORMATS:
            raise ForwardError(f"{target.display}: format must be one of {'|'.join(SYSLOG_FORMATS)}")
        facility = opts.get("facility")
        if facility is not None and facility not in FACILITIES and not (
            facility.isdigit() and 0 <= int(facility) <= 23
        ):
            raise ForwardError(f"{target.display}: facility must be a name (local0, ...) or 0..23")
    for name in ("ca", "cert", "key"):
        if name in opts and not Path(opts[name]).is_file():
            raise ForwardError(f"{target.display}: {name} file {opts[name]} does not exist")
    if ("cert" in opts) != ("key" in opts):
        raise ForwardError(f"{target.display}: cert and key go together")
    for name in ("insecure", "gzip", "fsync"):
        target.flag(name)
    for name in ("retry_initial", "retry_max", "timeout"):
        target.number(name, 1.0, minimum=0.001)
    for name in ("batch", "max_bytes"):
        target.number(name, 1.0, minimum=1)
    target.number("backups", 1.0, minimum=0)
    for stem in ("token", "password", "api_key"):
        if f"{stem}_env" in opts and f"{stem}_file" in opts:
            raise ForwardError(f"{target.display}: give {stem}_env or {stem}_file, not both")
        target.secret(stem)  # fail early: a missing secret is a configuration error
    if target.family == "hec" and not target.secret("token"):
        raise ForwardError(f"{target.display}: Splunk HEC needs ?token_env=NAME or ?token_file=PATH")
    if target.family == "elastic" and "user" in opts and not target.secret("password"):
        raise ForwardError(f"{target.display}: user given without ?password_env= or ?password_file=")


def facility_number(target: ForwardTarget) -> int:
    raw = target.options.get("facility", "local0")
    return FACILITIES[raw] if raw in FACILITIES else int(raw)
