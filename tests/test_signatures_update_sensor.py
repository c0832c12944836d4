"""A running sensor picks up `netwatch signatures update` by itself, without losing packets.

The sensor runs on a veth in namespaces (the topology of tests/test_sensor_system.py); the feed is
a real HTTPS server on loopback; DNS queries keep flowing from the client while the update lands.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.sigfeed import BUNDLED_VERSION, FEED_NAME, HttpsFeed, build_bundle, cli, make_tree, write_keypair
from tests.test_sensor_system import (
    DNS_NAME,
    NEW_NAME,
    REPO,
    SERVER_IP,
    NetnsPair,
    SensorProc,
    _alerts_for,
    _by_client,
    client,
    start_servers,
    testnet,  # noqa: F401 - the namespace fixture
)

pytestmark = pytest.mark.system

# Queries from the client, each from a new source port, until a stop file appears; prints the count.
BURST_SCRIPT = textwrap.dedent("""
    import os, socket, struct, sys, time
    server, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
    sent = 0
    while not os.path.exists(stop) and sent < 3000:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(struct.pack("!HHHHHH", sent & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname + b"\\0\\1\\0\\1", (server, 53))
        sent += 1
        try:
            s.recv(512)
        except OSError:
            pass
        s.close()
        time.sleep(0.02)
    print(sent)
""")


def _drops(sensor: SensorProc) -> tuple[int, int]:
    stats = [r for r in sensor.logs() if "kernel_dropped" in r]
    assert stats, "no capture statistics logged"
    return stats[-1]["kernel_dropped"], stats[-1].get("interface_dropped", 0)


def test_sensor_reloads_an_update_without_losing_packets(testnet: NetnsPair, tmp_path: Path,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert FEED_NAME == NEW_NAME  # dnsmasq in the test network answers for it
    start_servers(testnet, tmp_path)
    (tmp_path / "no-admin-keys").mkdir()
    monkeypatch.setenv("NETWATCH_SIGNATURE_UPDATES", str(tmp_path / "store"))  # the sensor's and the updater's
    monkeypatch.setenv("NETWATCH_SIGNATURE_KEYS_DIR", str(tmp_path / "no-admin-keys"))
    config = tmp_path / "sensor.toml"
    config.write_text("reminder_interval = 0\n")  # every detection is an alert line: losses would show
    sensor = SensorProc(testnet, tmp_path, config)

    # before: the bundled set; the feed's name is no banned name yet
    client(testnet, "dns", NEW_NAME)
    client(testnet, "dns", DNS_NAME)
    [first] = sensor.wait_events(lambda e: bool(_alerts_for([e], DNS_NAME, "dns_query")), 1)
    old_version = first["rule"]["version"]
    assert old_version.startswith(f"{BUNDLED_VERSION}+sha256:")
    assert not _alerts_for(sensor.events(), NEW_NAME, "dns_query")
    time.sleep(1.5)  # one more statistics line
    drops_before = _drops(sensor)

    feed = HttpsFeed(tmp_path / "feed-tls")
    try:
        key, pub = write_keypair(tmp_path, "feed")
        feed.routes["/signatures.tar.gz"] = build_bundle(make_tree(tmp_path / "tree", "2026.12.1"), key,
                                                         tmp_path / "bundle.tar.gz")
        stop = tmp_path / "stop-burst"
        (tmp_path / "burst.py").write_text(BURST_SCRIPT)
        burst = subprocess.Popen(testnet.exec(testnet.client_ns, [sys.executable, str(tmp_path / "burst.py"),
                                                                  SERVER_IP, DNS_NAME, str(stop)]),
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        testnet.procs.append(burst)
        time.sleep(1.0)  # traffic is flowing before the update starts
        run = cli("signatures", "update", "--url", feed.url("/signatures.tar.gz"), "--ca-file", str(feed.ca),
                  "--trusted-key", str(pub))
        assert run.returncode == 0, run.stderr
        assert f"signatures updated {BUNDLED_VERSION} -> 2026.12.1" in run.stdout
        reloaded = sensor.wait_log(lambda r: r.get("msg") == "reloaded", 20, "the sensor did not reload")
        assert reloaded["previous_signature_version"] == BUNDLED_VERSION
        assert reloaded["signature_version"] == "2026.12.1"
        assert any(r.get("msg") == "signature update installed; reloading" for r in sensor.logs())
        applied = sensor.wait_log(lambda r: r.get("msg") == "worker applied signatures", 20, "worker did not reload")
        assert applied["signature_version"] == "2026.12.1"
        time.sleep(1.0)  # traffic keeps flowing after the reload
        stop.touch()
        sent = int(burst.communicate(timeout=30)[0])
    finally:
        feed.close()
    assert sent > 50

    # the next alert carries the new set's version; the feed's new name now alerts
    client(testnet, "dns", NEW_NAME)
    [new_alert] = sensor.wait_events(lambda e: bool(_alerts_for([e], NEW_NAME, "dns_query")), 1)
    assert new_alert["rule"]["version"].startswith("2026.12.1+sha256:")
    assert _by_client(new_alert)

    # no packet lost during the reload: one alert per query sent, and no kernel drops
    expected = 1 + sent
    alerts = sensor.wait_events(lambda e: bool(_alerts_for([e], DNS_NAME, "dns_query")), expected, timeout=20)
    assert len(alerts) == expected, f"{len(alerts)} alerts for {expected} queries"
    versions = [a["rule"]["version"] for a in alerts]
    assert versions[0] == old_version and versions[-1].startswith("2026.12.1+")
    switch = next(i for i, v in enumerate(versions) if v != old_version)
    assert all(v == versions[-1] for v in versions[switch:])  # one clean switch, never back
    time.sleep(1.5)
    assert _drops(sensor) == drops_before == (0, 0)

    # a rollback is picked up the same way
    run = cli("signatures", "update", "--rollback")
    assert run.returncode == 0, run.stderr
    sensor.wait_log(lambda r: r.get("msg") == "reloaded" and r.get("signature_version") == BUNDLED_VERSION, 20,
                    "the sensor did not reload after the rollback")
    assert sensor.stop() == 0
