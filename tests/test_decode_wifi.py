"""802.11 captures (radiotap, PPI, bare 802.11) and link types netwatch cannot decode.

Wi-Fi monitor-mode captures are common: unprotected data frames carry LLC/SNAP and then IP like
Ethernet. Frames of a link type netwatch does not decode are counted and reported per file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.dot11 import Dot11, Dot11Beacon, Dot11QoS, Dot11WEP, RadioTap
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import LLC, SNAP, Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter, wrpcap

from netwatch import _fastpath
from netwatch.decode import linktypes as lt
from netwatch.pipeline import Pipeline
from netwatch.scan import scan_paths
from netwatch.signatures import load_signature_set

REPO = Path(__file__).resolve().parents[1]
AP, CLIENT, ROUTER, FAR = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:99", "02:00:00:00:00:77"


@pytest.fixture(scope="module")
def sigset():
    return load_signature_set()


def query(name: str, src: str = "192.0.2.10") -> IP:
    return IP(src=src, dst="192.0.2.1") / UDP(sport=5555, dport=53) / DNS(rd=1, qd=DNSQR(qname=name))


def data_frames() -> list:
    """To the AP (plain and QoS with an HT Control field), from the AP, over a WDS link, then frames
    that carry nothing readable: a beacon, a protected frame and a null-data frame."""
    return [
        Dot11(type=2, subtype=0, FCfield=0x01, addr1=AP, addr2=CLIENT, addr3=ROUTER) / LLC() / SNAP()
        / query("mobilegw.alipay.com"),
        Dot11(type=2, subtype=8, FCfield=0x81, addr1=AP, addr2=CLIENT, addr3=ROUTER) / Dot11QoS() / (b"\x00" * 4)
        / LLC() / SNAP() / query("qpay.qq.com"),
        Dot11(type=2, subtype=0, FCfield=0x02, addr1=CLIENT, addr2=AP, addr3=ROUTER) / LLC() / SNAP()
        / query("dl.wps.cn", src="192.0.2.99"),
        Dot11(type=2, subtype=0, FCfield=0x03, addr1=AP, addr2=AP, addr3=ROUTER, addr4=FAR) / LLC() / SNAP()
        / query("pay.weixin.qq.com", src="192.0.2.77"),
        Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=AP, addr3=AP) / Dot11Beacon(),
        Dot11(type=2, subtype=0, FCfield=0x41, addr1=AP, addr2=CLIENT, addr3=ROUTER) / Dot11WEP(b"\x00" * 40),
        Dot11(type=2, subtype=4, FCfield=0x01, addr1=AP, addr2=CLIENT, addr3=ROUTER),
    ]


EXPECTED = [("mobilegw.alipay.com", "02-00-00-00-00-0A"), ("qpay.qq.com", "02-00-00-00-00-0A"),
            ("dl.wps.cn", "02-00-00-00-00-99"), ("pay.weixin.qq.com", "02-00-00-00-00-77")]


def write(path: Path, frames: list, linktype: int) -> Path:
    with PcapWriter(str(path), linktype=linktype) as writer:
        for index, frame in enumerate(frames):
            frame.time = 1767600000 + index
            writer.write(frame)
    return path


def scanned(path: Path, sigset) -> list[tuple[str, str]]:
    events: list[dict] = []
    scan_paths([str(path)], Pipeline(sigset), events.append)
    return [(e["netwatch"]["name"], e["source"]["mac"]) for e in events]


def test_radiotap_data_frames(tmp_path, sigset):
    path = write(tmp_path / "radiotap.pcap", [RadioTap() / frame for frame in data_frames()],
                 lt.LINKTYPE_IEEE802_11_RADIOTAP)
    assert scanned(path, sigset) == EXPECTED


def test_bare_80211_frames(tmp_path, sigset):
    path = write(tmp_path / "dot11.pcap", data_frames(), lt.LINKTYPE_IEEE802_11)
    assert scanned(path, sigset) == EXPECTED


def test_ppi_frames(tmp_path, sigset):
    ppi = b"\x00\x00\x08\x00" + lt.LINKTYPE_IEEE802_11.to_bytes(4, "little")  # version, flags, length, DLT
    path = write(tmp_path / "ppi.pcap", [Raw(ppi + bytes(frame)) for frame in data_frames()], lt.LINKTYPE_PPI)
    assert scanned(path, sigset) == EXPECTED


def test_the_fast_path_admits_wifi_frames():
    frame = bytes(RadioTap() / data_frames()[0])
    assert _fastpath.FlowFilter().admits(lt.LINKTYPE_IEEE802_11_RADIOTAP, frame)


@pytest.mark.system
def test_tshark_reads_the_same_names(tmp_path, sigset):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt-get install tshark)")
    path = write(tmp_path / "radiotap.pcap", [RadioTap() / frame for frame in data_frames()],
                 lt.LINKTYPE_IEEE802_11_RADIOTAP)
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "dns", "-T", "fields", "-e", "wlan.sa", "-e",
                          "dns.qry.name"], capture_output=True, text=True, check=True).stdout
    theirs = [(name, mac.upper().replace(":", "-")) for mac, name in (line.split("\t") for line in out.split("\n")
                                                                       if line)]
    assert theirs == EXPECTED == scanned(path, sigset)


# --- link types netwatch does not decode ---


def run_scan(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netwatch.cli", "scan", *map(str, paths), "--format", "jsonl"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def test_an_undecodable_capture_is_a_warning_and_exit_2_when_alone(tmp_path):
    nflog = write(tmp_path / "nflog.pcap", [Ether() / query("mobilegw.alipay.com")] * 3, 239)
    done = run_scan(nflog)
    assert done.returncode == 2
    assert f"netwatch: warning: {nflog}: 3 packets of link type 239 (NFLOG) not decoded" in done.stderr
    assert "nothing could be analysed" in done.stderr
    # Next to a capture with findings it is reported, and the other file decides the exit status.
    good = tmp_path / "good.pcap"
    wrpcap(str(good), [Ether(src="02:00:00:00:00:0a") / query("mobilegw.alipay.com")])
    done = run_scan(nflog, good)
    assert done.returncode == 1 and "3 packets of link type 239 (NFLOG) not decoded" in done.stderr


def test_unknown_link_type_numbers_and_clean_files(tmp_path):
    unknown = write(tmp_path / "odd.pcap", [Ether() / query("example.org")], 4242)
    done = run_scan(unknown)
    assert done.returncode == 2 and "1 packet of link type 4242 not decoded" in done.stderr
    clean = tmp_path / "clean.pcap"
    wrpcap(str(clean), [Ether(src="02:00:00:00:00:0a") / query("example.org")])
    done = run_scan(clean)
    assert done.returncode == 0 and "not decoded" not in done.stderr and "nothing" not in done.stderr
