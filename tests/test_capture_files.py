"""Capture file sources: every framing variant, gzip, stdin, directories, damage.

Captures are crafted here byte by byte with struct (so each header field is the one
under test), and the real nDPI captures are checked against tshark and libpcap.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch._fastpath import FlowFilter, Framer
from netwatch.capture.files import (
    CaptureError,
    CaptureWarning,
    NotACaptureError,
    iter_capture_paths,
    open_capture,
)
from netwatch.model import RawPacket
from tests.conftest import SHARED_PCAPS

REPO = Path(__file__).resolve().parents[1]

# Three frames of distinct lengths and contents; the bytes need not be valid packets
# for the framing tests (the filter is not used unless a test passes one).
FRAMES = [bytes(range(20)), b"\xaa" * 61, bytes(range(255, 155, -1))]
TIMES = [(1700000000, 123456), (1700000001, 999999), (1700000002, 0)]


def pcap_bytes(
    frames=FRAMES,
    times=TIMES,
    *,
    big: bool = False,
    nanosec: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
    modified: bool = False,
) -> bytes:
    """A classic pcap file; `times` holds (seconds, fraction in the file's unit)."""
    e = ">" if big else "<"
    magic = 0xA1B2CD34 if modified else (0xA1B23C4D if nanosec else 0xA1B2C3D4)
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for data, (sec, frac) in zip(frames, times, strict=True):
        out.append(struct.pack(e + "IIII", sec, frac, len(data), len(data)))
        if modified:
            out.append(struct.pack(e + "IHBB", 3, 0x0800, 0, 0))
        out.append(data)
    return b"".join(out)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def ng_block(block_type: int, body: bytes, e: str = "<") -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack(e + "II", block_type, total) + body + struct.pack(e + "I", total)


def ng_option(code: int, value: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def ng_shb(e: str = "<") -> bytes:
    return ng_block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)


def ng_idb(linktype: int, *, snaplen: int = 0, tsresol: int | None = None, tsoffset: int = 0, e: str = "<"):
    options = b""
    if tsresol is not None:
        options += ng_option(9, bytes([tsresol]), e)
    if tsoffset:
        options += ng_option(14, struct.pack(e + "q", tsoffset), e)
    if options:
        options += struct.pack(e + "HH", 0, 0)
    return ng_block(1, struct.pack(e + "HHI", linktype, 0, snaplen) + options, e)


def ng_epb(iface: int, ticks: int, data: bytes, e: str = "<", comment: bytes = b"") -> bytes:
    body = struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + _pad4(data)
    if comment:
        body += ng_option(1, comment, e) + struct.pack(e + "HH", 0, 0)
    return ng_block(6, body, e)


def ng_spb(data: bytes, e: str = "<") -> bytes:
    return ng_block(3, struct.pack(e + "I", len(data)) + data, e)


def ng_pb(iface: int, ticks: int, data: bytes, e: str = "<") -> bytes:
    body = struct.pack(e + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data
    return ng_block(2, body, e)


def pcapng_bytes(e: str = "<") -> bytes:
    """One section, one Ethernet interface (microseconds), three EPBs (one with a comment)."""
    blocks = [ng_shb(e), ng_idb(1, e=e)]
    for i, (data, (sec, usec)) in enumerate(zip(FRAMES, TIMES, strict=True)):
        blocks.append(ng_epb(0, sec * 1_000_000 + usec, data, e, comment=b"hello" if i == 1 else b""))
    return b"".join(blocks)


def read_all(path, **kwargs) -> tuple[list[RawPacket], object]:
    with open_capture(path, **kwargs) as cap:
        packets = list(cap)
    return packets, cap


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- framing variants -------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nanosec", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, big, nanosec):
    times = [(1700000000, 123456789), (1700000001, 999999999), (1700000002, 5)] if nanosec else TIMES
    path = write(tmp_path, "a.pcap", pcap_bytes(times=times, big=big, nanosec=nanosec, linktype=113))
    packets, cap = read_all(path)
    assert cap.format == "pcap"
    assert cap.linktypes == [113]
    assert cap.frames == 3
    assert cap.warnings == []
    assert cap.bytes_read == path.stat().st_size
    scale = 1e9 if nanosec else 1e6
    for i, pkt in enumerate(packets):
        assert isinstance(pkt, RawPacket)
        assert pkt.frame == i + 1
        assert pkt.linktype == 113
        assert pkt.data == FRAMES[i]
        assert pkt.ts == pytest.approx(times[i][0] + times[i][1] / scale, abs=1e-6)


def test_modified_pcap_has_24_byte_record_headers(tmp_path):
    packets, cap = read_all(write(tmp_path, "m.pcap", pcap_bytes(modified=True)))
    assert [p.data for p in packets] == FRAMES
    assert cap.warnings == []


def test_pcap_linktype_field_ignores_fcs_bits(tmp_path):
    data = bytearray(pcap_bytes(linktype=1))
    struct.pack_into("<I", data, 20, 1 | (1 << 28) | (1 << 26))  # FCS present, 4 bytes
    packets, _ = read_all(write(tmp_path, "fcs.pcap", bytes(data)))
    assert {p.linktype for p in packets} == {1}


@pytest.mark.parametrize("e", ["<", ">"])
def test_pcapng_byte_orders(tmp_path, e):
    packets, cap = read_all(write(tmp_path, "a.pcapng", pcapng_bytes(e)))
    assert cap.format == "pcapng"
    assert [p.frame for p in packets] == [1, 2, 3]
    assert [p.data for p in packets] == FRAMES
    assert [p.ts for p in packets] == pytest.approx([s + u / 1e6 for s, u in TIMES], abs=1e-6)
    assert cap.warnings == []


def test_pcapng_interfaces_with_different_linktypes_and_resolutions(tmp_path):
    blocks = [
        ng_shb(),
        ng_idb(1, tsresol=9),  # Ethernet, nanoseconds
        ng_idb(101, tsresol=0x80 | 20, tsoffset=1000),  # raw IP, 2^-20 s, offset 1000 s
        ng_epb(0, 1_700_000_000_250_000_000, FRAMES[0]),
        ng_epb(1, (1_700_000_000 << 20) + (1 << 19), FRAMES[1]),  # .5 s
        ng_block(5, b"\0" * 16),  # interface statistics: skipped
        ng_epb(0, 1_700_000_001_000_000_001, FRAMES[2]),
    ]
    packets, cap = read_all(write(tmp_path, "multi.pcapng", b"".join(blocks)))
    assert [p.linktype for p in packets] == [1, 101, 1]
    assert cap.linktypes == [1, 101]
    assert packets[0].ts == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert packets[1].ts == pytest.approx(1_700_001_000.5, abs=1e-6)
    assert packets[2].ts == pytest.approx(1_700_000_001.0, abs=1e-6)


def test_pcapng_simple_and_obsolete_packet_blocks(tmp_path):
    blocks = [
        ng_shb(),
        ng_idb(1, snaplen=30),
        ng_pb(0, 5_000_000, FRAMES[0]),  # obsolete Packet Block at t = 5 s
        ng_spb(FRAMES[1]),  # Simple Packet Block: no timestamp, cut to snaplen 30
        ng_epb(0, 7_000_000, FRAMES[2]),
    ]
    packets, _ = read_all(write(tmp_path, "spb.pcapng", b"".join(blocks)))
    assert [p.frame for p in packets] == [1, 2, 3]
    assert packets[0].data == FRAMES[0]
    assert packets[1].data == FRAMES[1][:30]
    assert [p.ts for p in packets] == [5.0, 5.0, 7.0]  # the SPB takes the last timestamp seen


def test_pcapng_new_section_resets_interfaces_and_byte_order(tmp_path):
    first = [ng_shb("<"), ng_idb(1), ng_idb(113), ng_epb(1, 1_000_000, FRAMES[0])]
    second = [ng_shb(">"), ng_idb(229, e=">"), ng_epb(0, 2_000_000, FRAMES[1], ">")]
    path = write(tmp_path, "sections.pcapng", b"".join(first + second))
    packets, cap = read_all(path)
    assert [(p.frame, p.linktype, p.data) for p in packets] == [(1, 113, FRAMES[0]), (2, 229, FRAMES[1])]
    assert cap.warnings == []
    # interface 1 existed only in the first section
    bad = b"".join([*first, ng_shb("<"), ng_idb(1), ng_epb(1, 3_000_000, FRAMES[2])])
    packets, cap = read_all(write(tmp_path, "bad.pcapng", bad))
    assert len(packets) == 1
    offset = len(b"".join([*first, ng_shb("<"), ng_idb(1)]))
    assert cap.warnings == [
        CaptureWarning(
            str(tmp_path / "bad.pcapng"), offset, f"corrupt record at offset {offset}: packet for undefined interface 1"
        )
    ]


def test_small_chunks_and_a_record_larger_than_the_buffer(tmp_path):
    frames = [b"x" * 10, bytes(range(256)) * 40, b"y" * 7]  # 10 KiB middle record
    path = write(tmp_path, "big.pcap", pcap_bytes(frames=frames))
    packets, cap = read_all(path, chunk_size=64)
    assert [p.data for p in packets] == frames
    assert cap.warnings == []
    packets, _ = read_all(write(tmp_path, "big.pcapng", pcapng_bytes()), chunk_size=64)
    assert [p.data for p in packets] == FRAMES


def test_flow_filter_drops_but_frame_numbers_count_every_frame(tmp_path):
    arp = bytes(12) + b"\x08\x06" + bytes(28)  # dropped as non-IP
    dns = (
        bytes(12)
        + b"\x08\x00"
        + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + 4, 0, 0, 64, 17, 0, bytes(4), bytes(4))
        + struct.pack("!HHHH", 5000, 53, 12, 0)
        + b"abcd"
    )
    path = write(tmp_path, "f.pcap", pcap_bytes(frames=[arp, dns, arp]))
    flow_filter = FlowFilter()
    packets, cap = read_all(path, flow_filter=flow_filter)
    assert [p.frame for p in packets] == [2]
    assert (cap.frames, cap.admitted) == (3, 1)
    assert flow_filter.stats()["non_ip"] == 2


# -- gzip, stdin, directories --------------------------------------------------------------


def test_gzip_single_and_multi_member(tmp_path):
    raw = pcap_bytes()
    packets, cap = read_all(write(tmp_path, "a.pcap.gz", gzip.compress(raw)))
    assert [p.data for p in packets] == FRAMES
    assert cap.format == "pcap"
    assert cap.warnings == []
    two_members = gzip.compress(raw[:50]) + gzip.compress(raw[50:])
    packets, cap = read_all(write(tmp_path, "b.pcap.gz", two_members), chunk_size=64)
    assert [p.data for p in packets] == FRAMES
    assert cap.warnings == []


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    frames = [bytes([i]) * 200 for i in range(50)]
    compressed = gzip.compress(pcap_bytes(frames=frames, times=[(i, 0) for i in range(50)]), mtime=0)
    path = write(tmp_path, "t.pcap.gz", compressed[: len(compressed) - 20])  # cuts the 8-byte trailer and data
    packets, cap = read_all(path)
    assert 0 < len(packets) <= 50
    assert [p.data for p in packets] == frames[: len(packets)]
    assert len(cap.warnings) == 1
    assert cap.warnings[0].message.startswith("truncated gzip stream")


def test_gzip_of_something_else_is_not_a_capture(tmp_path):
    with pytest.raises(NotACaptureError):
        open_capture(write(tmp_path, "x.gz", gzip.compress(b"hello world")))


def test_stdin_pipe(tmp_path):
    data = gzip.compress(pcapng_bytes())
    script = (
        "from netwatch.capture.files import open_capture\n"
        "with open_capture('-') as cap:\n"
        "    print(cap.format, [p.frame for p in cap], len(cap.warnings))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=data,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert result.stdout.decode().split() == ["pcapng", "[1,", "2,", "3]", "0"]


def test_iter_capture_paths_walks_directories_sorted(tmp_path):
    (tmp_path / "d" / "b").mkdir(parents=True)
    (tmp_path / "d" / "a").mkdir()
    for rel in ["d/z.pcap", "d/b/x.pcap", "d/a/y.pcapng", "d/a/notes.txt"]:
        (tmp_path / rel).write_bytes(b"")
    single = tmp_path / "one.pcap"
    got = list(iter_capture_paths([str(single), str(tmp_path / "d"), "-"]))
    d = tmp_path / "d"
    assert got == [
        (str(single), True),
        (str(d / "a" / "notes.txt"), False),
        (str(d / "a" / "y.pcapng"), False),
        (str(d / "b" / "x.pcap"), False),
        (str(d / "z.pcap"), False),
        ("-", True),
    ]


# -- damage ---------------------------------------------------------------------------------


def test_truncated_last_record(tmp_path):
    data = pcap_bytes()
    path = write(tmp_path, "t.pcap", data[:-5])
    packets, cap = read_all(path)
    assert [p.data for p in packets] == FRAMES[:2]
    last = len(data) - 16 - len(FRAMES[2])
    assert cap.warnings == [
        CaptureWarning(str(path), last, f"truncated capture: last record at offset {last} is incomplete")
    ]


def test_truncated_file_header(tmp_path):
    packets, cap = read_all(write(tmp_path, "h.pcap", pcap_bytes()[:10]))
    assert packets == []
    assert cap.warnings[0].message == "truncated capture: last record at offset 0 is incomplete"


def test_corrupt_record_in_the_middle_stops_with_the_right_offset(tmp_path):
    data = bytearray(pcap_bytes(frames=FRAMES * 2, times=TIMES * 2))
    bad = 24 + 2 * 16 + len(FRAMES[0]) + len(FRAMES[1])  # the third record
    struct.pack_into("<I", data, bad + 8, 300000)  # caplen above max(snaplen, 262144)
    path = write(tmp_path, "c.pcap", bytes(data))
    packets, cap = read_all(path, chunk_size=64)
    assert [p.data for p in packets] == FRAMES[:2]
    assert len(cap.warnings) == 1
    assert cap.warnings[0].offset == bad
    assert cap.warnings[0].message.startswith(f"corrupt record at offset {bad}: record length 300000")


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_record_claiming_4_gb_is_not_allocated(tmp_path, fmt):
    if fmt == "pcap":
        data = pcap_bytes(snaplen=0xFFFFFFFF) + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 0xFFFFFFF0) + b"x" * 100
        bad = len(pcap_bytes())
    else:
        data = pcapng_bytes() + struct.pack("<II", 6, 0xFFFFFFF0) + b"x" * 100
        bad = len(pcapng_bytes())
    path = write(tmp_path, "huge." + fmt, data)
    tracemalloc.start()
    try:
        packets, cap = read_all(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(packets) == 3
    assert [w.offset for w in cap.warnings] == [bad]
    assert "corrupt record" in cap.warnings[0].message
    assert peak < 32 << 20


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:-4] + struct.pack("<I", len(b) - 12 + 4), "block trailer length"),
        (lambda b: b[:4] + struct.pack("<I", 13) + b[8:], "bad block length 13"),
    ],
)
def test_pcapng_block_length_checks(tmp_path, mutate, reason):
    epb = ng_epb(0, 1, FRAMES[0])
    head = ng_shb() + ng_idb(1) + ng_epb(0, 1, FRAMES[1])
    path = write(tmp_path, "b.pcapng", head + mutate(epb))
    packets, cap = read_all(path)
    assert [p.data for p in packets] == [FRAMES[1]]
    assert cap.warnings[0].offset == len(head)
    assert reason in cap.warnings[0].message


def test_not_a_capture_and_empty_file(tmp_path):
    text = write(tmp_path, "readme.txt", b"this is not a capture file")
    with pytest.raises(NotACaptureError, match=r"readme\.txt: not a pcap or pcapng file"):
        open_capture(text)
    with pytest.raises(NotACaptureError):
        open_capture(write(tmp_path, "empty.pcap", b""))
    with pytest.raises(CaptureError, match="missing"):
        open_capture(tmp_path / "missing.pcap")


def test_framer_reports_the_incomplete_record_size():
    framer = Framer()
    data = pcap_bytes()
    consumed, frames, packets, error = framer.feed(data[:-1])
    assert (frames, error) == (2, None)
    assert consumed == len(data) - 16 - len(FRAMES[2])
    assert framer.next_record_size == 16 + len(FRAMES[2])
    assert [p.frame for p in packets] == [1, 2]


# -- the real corpus against tshark and libpcap ------------------------------------------


def _ndpi_files(ndpi_dir: Path) -> list[Path]:
    return sorted(p for p in ndpi_dir.iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.system
def test_frames_and_timestamps_agree_with_tshark(ndpi_dir):
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (Debian package tshark)")
    for path in _ndpi_files(ndpi_dir):
        out = subprocess.run(
            [tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        expected = [(int(n), float(t)) for n, t in (line.split("\t") for line in out.splitlines() if line)]
        packets, cap = read_all(path, flow_filter=FlowFilter(admit_all=True))
        assert [p.frame for p in packets] == [n for n, _ in expected], path.name
        assert [p.ts for p in packets] == pytest.approx([t for _, t in expected], abs=1e-6), path.name
        assert cap.frames == len(expected)
        assert cap.warnings == []


def test_frame_bytes_agree_with_libpcap(ndpi_dir):
    pcapy = pytest.importorskip("pcapy")
    for path in _ndpi_files(ndpi_dir):
        reader = pcapy.open_offline(str(path))
        expected = []
        while True:
            header, data = reader.next()
            if header is None:
                break
            expected.append((data, reader.datalink()))
        packets, _ = read_all(path)
        assert [(p.data, p.linktype) for p in packets] == expected, path.name


# -- hostile input --------------------------------------------------------------------------


def _seeds() -> list[bytes]:
    seeds = [pcap_bytes(), pcap_bytes(big=True, nanosec=True), pcapng_bytes(), pcapng_bytes(">")]
    corpus = SHARED_PCAPS
    for name in ("dns.pcap", "tls_ech.pcapng", "quic-fuzz-overflow.pcapng", "dlt_ppp.pcap"):
        if (corpus / name).is_file():
            seeds.append((corpus / name).read_bytes())
    return seeds


@st.composite
def mutated_capture(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_seeds())))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.integers(4, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_capture(), chunk=st.sampled_from([64, 100, 4096]))
def test_fuzz_framing_never_crashes(tmp_path_factory, data, chunk):
    path = tmp_path_factory.mktemp("fuzz") / "f.cap"
    path.write_bytes(data)
    try:
        cap = open_capture(path, flow_filter=FlowFilter(max_flows=16), chunk_size=chunk)
    except NotACaptureError:
        return
    with cap:
        packets = list(cap)
    assert [p.frame for p in packets] == sorted({p.frame for p in packets})
    assert all(1 <= p.frame <= cap.frames for p in packets)
    assert sum(len(p.data) for p in packets) <= len(data)
    assert all(0 <= w.offset <= len(data) for w in cap.warnings)
    assert len(cap.warnings) <= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\xa1\xb2\x3c\x4d"]))
def test_fuzz_framer_random_bytes_after_magic(data, magic):
    framer = Framer()
    buf = magic + data
    consumed, frames, packets, error = framer.feed(buf, FlowFilter(admit_all=True))
    assert 0 <= consumed <= len(buf)
    assert len(packets) == frames == framer.frames
    if error is not None:
        assert 0 <= error[0] <= len(buf)
