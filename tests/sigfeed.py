"""Test helpers for signature feeds: keys, signature trees, bundles, and a real HTTPS feed on loopback.

The HTTPS server is Python's http.server wrapped in TLS with a CA and a server certificate that are
generated here with `cryptography`; it listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from netwatch.signatures.store import manifest_version

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "signatures"
BUNDLED_VERSION = manifest_version(BUNDLED) or ""
FEED_NAME = "newly-banned.netwatch-test.example"  # only in the feed's sets, never in the bundled one


def write_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """(private PEM, public PEM) of a new Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def feed_rule(name: str = FEED_NAME, app: str = "alipay", confidence: str = "high") -> str:
    return (f"kind: rules\nid: feed_test\ndescription: a rule the feed adds\nrules:\n"
            f"  - match: exact\n    pattern: {name}\n    app: {app}\n    confidence: {confidence}\n"
            f"    role: client\n    sources: [https://netwatch.example.org/feed-test]\n")


def make_tree(directory: Path, version: str, *, with_feed_rule: bool = True) -> Path:
    """A copy of the bundled signatures with another version and (optionally) one more rule."""
    shutil.copytree(BUNDLED, directory)
    manifest = directory / "MANIFEST.yaml"
    manifest.write_text(manifest.read_text().replace(f'version: "{BUNDLED_VERSION}"', f'version: "{version}"'))
    assert f'"{version}"' in manifest.read_text()
    if with_feed_rule:
        (directory / "vendors" / "feed-test.yaml").write_text(feed_rule())
    return directory


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def build_bundle(tree: Path, key: Path, out: Path, date: str = "2026-12-01T00:00:00Z") -> bytes:
    run = cli("signatures", "bundle", str(tree), "-o", str(out), "--key-file", str(key), "--date", date)
    assert run.returncode == 0, run.stderr
    return out.read_bytes()


# -- a TLS feed --------------------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(CA cert, server cert, server key) PEM files; the server cert is for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("netwatch test CA")).issuer_name(_name("netwatch test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


Route = bytes | Callable[[BaseHTTPRequestHandler], None]


class HttpsFeed:
    """A real HTTPS server on 127.0.0.1: `routes[path]` is a body (200) or a function that answers."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_ca_and_server_cert(directory)
        self.routes: dict[str, Route] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404)
                elif callable(route):
                    route(self)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(route)))
                    self.end_headers()
                    self.wfile.write(route)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()
