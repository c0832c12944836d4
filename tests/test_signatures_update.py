"""`netwatch signatures update` against a real HTTPS feed on loopback, run as an admin would.

Every failure case ends with the same check: exit status 2, a message naming the cause, and the
previously active set still active (same `current` link, same version, no staging left behind).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.signatures.bundle import build_bundle as build_bundle_api
from netwatch.signatures.bundle import load_private_key, tree_files
from tests.sigfeed import (
    BUNDLED_VERSION,
    FEED_NAME,
    REPO,
    HttpsFeed,
    build_bundle,
    cli,
    feed_rule,
    make_tree,
    write_keypair,
)


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[HttpsFeed]:
    server = HttpsFeed(tmp_path)
    try:
        yield server
    finally:
        server.close()


class Admin:
    """One machine's view: an update directory, a pinned key, and the commands an admin runs."""

    def __init__(self, tmp: Path, feed: HttpsFeed, store: Path | None = None) -> None:
        self.tmp, self.feed = tmp, feed
        self.store = store or tmp / "store"
        self.key, self.pub = write_keypair(tmp, "feed")
        (tmp / "no-admin-keys").mkdir(exist_ok=True)
        self.env = {"NETWATCH_SIGNATURE_UPDATES": str(self.store),
                    "NETWATCH_SIGNATURE_KEYS_DIR": str(tmp / "no-admin-keys")}

    def bundle(self, version: str, key: Path | None = None, **kw: bool) -> bytes:
        tree = make_tree(self.tmp / f"tree-{version}-{uuid.uuid4().hex[:6]}", version, **kw)
        return build_bundle(tree, key or self.key, self.tmp / f"{version}.tar.gz")

    def update(self, path: str, *extra: str) -> subprocess.CompletedProcess:
        self.last_current = self.current()
        return cli("signatures", "update", "--url", self.feed.url(path), "--ca-file", str(self.feed.ca),
                   "--trusted-key", str(self.pub), *extra, env=self.env)

    def current(self) -> str | None:
        try:
            return os.readlink(self.store / "current")
        except OSError:
            return None

    def active_version(self) -> str:
        run = cli("signatures", "list", "--format", "json", env=self.env)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["version"]

    def matches_feed_name(self) -> bool:
        run = cli("signatures", "match", FEED_NAME, env=self.env)
        assert run.returncode in (0, 1), run.stderr
        return run.returncode == 0

    def assert_refused(self, run: subprocess.CompletedProcess, reason: str, version: str) -> None:
        assert run.returncode == 2, (run.stdout, run.stderr)
        assert reason in run.stderr, run.stderr
        assert f"the active set ({version}) is unchanged" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
        assert self.current() == self.last_current
        assert self.active_version() == version
        sets = self.store / "sets"
        assert not [p for p in sets.iterdir() if p.name.startswith(".incoming")] if sets.is_dir() else True


@pytest.fixture
def admin(tmp_path: Path, feed: HttpsFeed) -> Admin:
    return Admin(tmp_path, feed)


def test_update_installs_then_rolls_back(admin: Admin) -> None:
    assert admin.active_version() == BUNDLED_VERSION and not admin.matches_feed_name()
    admin.feed.routes["/v1.tar.gz"] = admin.bundle("2026.12.1")
    run = admin.update("/v1.tar.gz")
    assert run.returncode == 0, run.stderr
    assert f"signatures updated {BUNDLED_VERSION} -> 2026.12.1" in run.stdout
    assert admin.active_version() == "2026.12.1" and admin.matches_feed_name()
    listed = json.loads(cli("signatures", "list", "--format", "json", env=admin.env).stdout)
    assert listed["base"] == {"source": "update", "directory": str(admin.store / "current" / "signatures")}
    # the same bundle again: nothing to do
    run = admin.update("/v1.tar.gz")
    assert run.returncode == 0 and "up to date" in run.stdout
    admin.feed.routes["/v2.tar.gz"] = admin.bundle("2026.12.2")
    assert admin.update("/v2.tar.gz").returncode == 0
    assert admin.active_version() == "2026.12.2"
    assert len(list((admin.store / "sets").iterdir())) == 2  # current and previous, nothing else
    run = cli("signatures", "update", "--rollback", env=admin.env)
    assert run.returncode == 0 and "rolled back 2026.12.2 -> 2026.12.1" in run.stdout, run.stderr
    assert admin.active_version() == "2026.12.1"
    # the signed manifest is kept beside the tree for audit
    kept = json.loads((admin.store / "current" / "bundle.json").read_text())
    assert kept["version"] == "2026.12.1" and "apps/alipay.yaml" in kept["files"]


def test_rollback_of_the_first_update_returns_to_the_bundled_set(admin: Admin) -> None:
    run = cli("signatures", "update", "--rollback", env=admin.env)
    assert run.returncode == 2 and "nothing to roll back to" in run.stderr
    admin.feed.routes["/v1.tar.gz"] = admin.bundle("2026.12.1")
    assert admin.update("/v1.tar.gz").returncode == 0
    run = cli("signatures", "update", "--rollback", env=admin.env)
    assert run.returncode == 0 and "(the bundled set)" in run.stdout
    assert admin.active_version() == BUNDLED_VERSION and not admin.matches_feed_name()


def _retar(bundle: bytes, edit: dict[str, bytes]) -> bytes:
    """The same bundle with some members' bytes replaced (signature untouched)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read()
            data = edit.get(info.name, data)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


def _installed(admin: Admin, version: str = "2026.12.1") -> None:
    admin.feed.routes["/good.tar.gz"] = admin.bundle(version)
    assert admin.update("/good.tar.gz").returncode == 0
    assert admin.active_version() == version


def test_tampered_file_is_refused(admin: Admin) -> None:
    _installed(admin)
    good = admin.bundle("2026.12.2")
    evil_rule = feed_rule("attacker-allowlisted.example", confidence="low").encode()
    admin.feed.routes["/tampered.tar.gz"] = _retar(good, {"signatures/vendors/feed-test.yaml": evil_rule})
    admin.assert_refused(admin.update("/tampered.tar.gz"), "vendors/feed-test.yaml does not match its SHA-256",
                         "2026.12.1")
    # an added file the manifest does not list
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(good))) as tar:
        names = tar.getnames()
    assert "signatures/apps/alipay.yaml" in names
    manifest = json.loads(_member(good, "bundle.json"))
    manifest["version"] = "2026.12.9"  # edit the signed manifest itself
    admin.feed.routes["/forged.tar.gz"] = _retar(good, {"bundle.json": json.dumps(manifest).encode()})
    admin.assert_refused(admin.update("/forged.tar.gz"), "bad signature", "2026.12.1")


def _member(bundle: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(bundle))) as tar:
        return tar.extractfile(name).read()


def test_wrong_key_is_refused(admin: Admin, tmp_path: Path) -> None:
    _installed(admin)
    other, _ = write_keypair(tmp_path, "stranger")
    admin.feed.routes["/stranger.tar.gz"] = admin.bundle("2026.12.2", key=other)
    run = admin.update("/stranger.tar.gz")
    admin.assert_refused(run, "which is not trusted", "2026.12.1")
    # the default keyring (the key shipped with netwatch) does not trust a test key either
    admin.last_current = admin.current()
    run = cli("signatures", "update", "--url", admin.feed.url("/stranger.tar.gz"), "--ca-file", str(admin.feed.ca),
              env=admin.env)
    admin.assert_refused(run, "netwatch/data/keys/netwatch-signatures-2026.pub", "2026.12.1")


def test_replayed_older_bundle_is_refused_unless_downgrade_allowed(admin: Admin) -> None:
    old = admin.bundle("2026.12.1")
    admin.feed.routes["/v2.tar.gz"] = admin.bundle("2026.12.2")
    assert admin.update("/v2.tar.gz").returncode == 0
    admin.feed.routes["/v1.tar.gz"] = old  # a mirror replaying an older, validly signed bundle
    admin.assert_refused(admin.update("/v1.tar.gz"), "refusing to install 2026.12.1: older than the active set "
                         "2026.12.2", "2026.12.2")
    run = admin.update("/v1.tar.gz", "--allow-downgrade")
    assert run.returncode == 0, run.stderr
    assert admin.active_version() == "2026.12.1"


def test_bundle_older_than_the_bundled_set_is_refused(admin: Admin) -> None:
    admin.feed.routes["/old.tar.gz"] = admin.bundle("2026.1.1")
    admin.assert_refused(admin.update("/old.tar.gz"), f"older than the active set {BUNDLED_VERSION}",
                         BUNDLED_VERSION)


def test_garbage_from_the_server_is_refused(admin: Admin) -> None:
    _installed(admin)
    admin.feed.routes["/garbage.tar.gz"] = os.urandom(5000)
    admin.assert_refused(admin.update("/garbage.tar.gz"), "not a signature bundle", "2026.12.1")
    admin.feed.routes["/html.tar.gz"] = b"<html>captive portal</html>"
    admin.assert_refused(admin.update("/html.tar.gz"), "not a signature bundle", "2026.12.1")
    admin.feed.routes["/gzip-junk.tar.gz"] = gzip.compress(os.urandom(3000))
    admin.assert_refused(admin.update("/gzip-junk.tar.gz"), "truncated or corrupt", "2026.12.1")

    def not_http(handler: object) -> None:
        handler.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n")  # type: ignore[attr-defined]
        handler.close_connection = True  # type: ignore[attr-defined]

    admin.feed.routes["/not-http"] = not_http
    admin.assert_refused(admin.update("/not-http"), "invalid HTTP response", "2026.12.1")
    admin.assert_refused(admin.update("/missing.tar.gz"), "HTTP 404", "2026.12.1")
    admin.feed.routes["/huge.tar.gz"] = b"\x1f\x8b" + b"\0" * (2 * 2**20)
    admin.assert_refused(admin.update("/huge.tar.gz", "--max-size", "1"), "more than the limit", "2026.12.1")


def test_server_stopping_mid_download_is_refused(admin: Admin) -> None:
    _installed(admin)
    body = admin.bundle("2026.12.2")

    def stop_halfway(handler: object) -> None:
        handler.send_response(200)  # type: ignore[attr-defined]
        handler.send_header("Content-Length", str(len(body)))  # type: ignore[attr-defined]
        handler.end_headers()  # type: ignore[attr-defined]
        handler.wfile.write(body[: len(body) // 2])  # type: ignore[attr-defined]
        handler.wfile.flush()  # type: ignore[attr-defined]
        handler.close_connection = True  # type: ignore[attr-defined]

    def no_length(handler: object) -> None:  # close-delimited body: only the bundle itself can tell
        handler.send_response(200)  # type: ignore[attr-defined]
        handler.end_headers()  # type: ignore[attr-defined]
        handler.wfile.write(body[: len(body) // 2])  # type: ignore[attr-defined]
        handler.close_connection = True  # type: ignore[attr-defined]

    admin.feed.routes["/half.tar.gz"] = stop_halfway
    admin.assert_refused(admin.update("/half.tar.gz"), "download truncated", "2026.12.1")
    admin.feed.routes["/half-nolength.tar.gz"] = no_length
    admin.assert_refused(admin.update("/half-nolength.tar.gz"), "truncated or corrupt", "2026.12.1")
    # and a server that is gone altogether
    admin.feed.routes["/next.tar.gz"] = body
    url = admin.feed.url("/next.tar.gz")
    admin.feed.close()
    admin.last_current = admin.current()
    run = cli("signatures", "update", "--url", url, "--ca-file", str(admin.feed.ca), "--trusted-key",
              str(admin.pub), "--timeout", "5", env=admin.env)
    admin.assert_refused(run, "cannot download", "2026.12.1")


def test_ctrl_c_during_a_download(admin: Admin) -> None:
    _installed(admin)
    body = admin.bundle("2026.12.2")
    release = threading.Event()

    def stall(handler: object) -> None:
        handler.send_response(200)  # type: ignore[attr-defined]
        handler.send_header("Content-Length", str(len(body)))  # type: ignore[attr-defined]
        handler.end_headers()  # type: ignore[attr-defined]
        handler.wfile.write(body[:100])  # type: ignore[attr-defined]
        handler.wfile.flush()  # type: ignore[attr-defined]
        release.wait(60)

    admin.feed.routes["/stall.tar.gz"] = stall
    admin.last_current = admin.current()
    proc = subprocess.Popen([sys.executable, "-m", "netwatch.cli", "signatures", "update", "--url",
                             admin.feed.url("/stall.tar.gz"), "--ca-file", str(admin.feed.ca), "--trusted-key",
                             str(admin.pub)], cwd=REPO, env={**os.environ, **admin.env}, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while not _connected(proc.pid):  # the download is under way (and stalled by the server)
            assert proc.poll() is None and time.monotonic() < deadline, "the update never connected"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        release.set()
    assert proc.returncode == 2 and "update interrupted; the active set is 2026.12.1" in stderr, stderr
    assert "Traceback" not in stderr
    assert admin.current() == admin.last_current and admin.active_version() == "2026.12.1"


def _connected(pid: int) -> bool:
    """The process has an established TCP connection (its download started)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and fields[9] in inodes:  # 01 = ESTABLISHED
                return True
    return False


def test_signed_but_invalid_rules_are_refused(admin: Admin) -> None:
    """A correctly signed bundle whose rules do not validate: the `signatures check` errors decide."""
    _installed(admin)
    tree = make_tree(admin.tmp / "broken", "2026.12.2")
    (tree / "vendors" / "feed-test.yaml").write_text(feed_rule(app="no_such_app"))
    files = tree_files(tree)  # built with the library: `signatures bundle` itself refuses such a set
    admin.feed.routes["/broken.tar.gz"] = build_bundle_api(files, version="2026.12.2",
                                                           key=load_private_key(admin.key))
    run = admin.update("/broken.tar.gz")
    admin.assert_refused(run, "fails validation", "2026.12.1")
    assert "feed-test.yaml" in run.stderr and "no_such_app" in run.stderr


def test_update_must_work_with_the_local_overlays(admin: Admin) -> None:
    """An overlay naming an app the new set drops: refused, because the sensor could not reload it."""
    _installed(admin)
    overlay = admin.tmp / "overlay"
    overlay.mkdir()
    (overlay / "local.yaml").write_text(feed_rule("local.example", app="camscanner"))
    tree = make_tree(admin.tmp / "no-camscanner", "2026.12.2")
    (tree / "apps" / "camscanner.yaml").unlink()
    for path in [tree / "policies" / "eo13971.yaml", *(tree / "vendors").glob("*.yaml")]:
        text = path.read_text()
        path.write_text(text.replace("  - camscanner\n", "").replace("camscanner, ", ""))
    files = tree_files(tree)
    admin.feed.routes["/v2.tar.gz"] = build_bundle_api(files, version="2026.12.2", key=load_private_key(admin.key))
    run = admin.update("/v2.tar.gz", "--signatures", str(overlay))
    admin.assert_refused(run, "unknown app 'camscanner'", "2026.12.1")


def test_overlays_keep_priority_over_an_updated_set(admin: Admin) -> None:
    _installed(admin)
    overlay = admin.tmp / "overlay"
    overlay.mkdir()
    (overlay / "local.yaml").write_text(feed_rule(app="wps_office", confidence="medium"))
    run = cli("signatures", "match", FEED_NAME, "--signatures", str(overlay), "--format", "json", env=admin.env)
    assert run.returncode == 0, run.stderr
    [explained] = json.loads(run.stdout)
    assert explained["winner"]["app"] == "wps_office" and explained["winner"]["confidence"] == "medium"
    assert explained["winner"]["file"] == str(overlay / "local.yaml")
    assert [b["app"] for b in explained["beaten"]] == []  # replaced, not merely beaten


def test_bad_tls_and_plain_http_are_refused(admin: Admin) -> None:
    _installed(admin)
    admin.feed.routes["/v2.tar.gz"] = admin.bundle("2026.12.2")
    admin.last_current = admin.current()
    run = cli("signatures", "update", "--url", admin.feed.url("/v2.tar.gz"), "--trusted-key", str(admin.pub),
              env=admin.env)  # no --ca-file: the test CA is not trusted
    admin.assert_refused(run, "certificate verification failed", "2026.12.1")
    run = cli("signatures", "update", "--url", admin.feed.url("/v2.tar.gz").replace("https", "http"),
              "--trusted-key", str(admin.pub), env=admin.env)
    admin.assert_refused(run, "only https:// and file://", "2026.12.1")


def test_file_url_feed(admin: Admin) -> None:
    path = admin.tmp / "mirror" / "current.tar.gz"
    path.parent.mkdir()
    path.write_bytes(admin.bundle("2026.12.1"))
    run = cli("signatures", "update", "--url", path.as_uri(), "--trusted-key", str(admin.pub), env=admin.env)
    assert run.returncode == 0, run.stderr
    assert admin.active_version() == "2026.12.1"


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8) (Debian package mount)")
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "netwatch-test", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")


def test_full_disk_leaves_the_active_set(tmp_path: Path, feed: HttpsFeed) -> None:
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "1m")
    try:
        admin = Admin(tmp_path, feed, store=mnt / "store")
        _installed(admin)
        filler = mnt / "filler"
        with filler.open("wb", buffering=0) as fh:  # fill the file system to the last block
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        with filler.open("r+b") as fh:  # leave room for a few files of the new set, not all of them
            fh.truncate(filler.stat().st_size - 24 * 1024)
        admin.feed.routes["/v2.tar.gz"] = admin.bundle("2026.12.2")
        admin.assert_refused(admin.update("/v2.tar.gz"), "no space left on device", "2026.12.1")
        assert admin.matches_feed_name()  # the old set still loads whole
        filler.unlink()
        assert admin.update("/v2.tar.gz").returncode == 0
        assert admin.active_version() == "2026.12.2"
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
