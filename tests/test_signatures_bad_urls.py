"""Malformed feed URLs, typed by a user or sent by a server as a redirect: one clear error, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from netwatch.signatures.update import UpdateError, fetch
from tests.sigfeed import HttpsFeed

REPO = Path(__file__).resolve().parents[1]
MALFORMED = ["https://[::1", "https://127.0.0.1:abc/bundle", "https://127.0.0.1:99999/bundle"]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_url_is_an_update_error(url: str) -> None:
    with pytest.raises(UpdateError, match="not a valid URL"):
        fetch(url, timeout=5)


@pytest.mark.parametrize("command", [["verify"], ["update", "--url"]])
def test_cli_says_so_and_exits_2(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "netwatch.cli", "signatures", *command, "https://[::1"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "not a valid URL" in done.stderr


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[HttpsFeed]:
    server = HttpsFeed(tmp_path)
    yield server
    server.close()


def test_malformed_redirect_from_the_server(feed: HttpsFeed) -> None:
    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "https://127.0.0.1:notaport/bundle")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    feed.routes["/bundle"] = redirect
    with pytest.raises(UpdateError, match="not a valid URL"):
        fetch(feed.url("/bundle"), timeout=5, ca_file=feed.ca)
