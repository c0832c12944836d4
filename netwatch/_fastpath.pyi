"""Type stub for the C core netwatch._fastpath (source: netwatch/capture/_fastpath.c)."""

from typing import TypeAlias

from netwatch.model import RawPacket

Buffer: TypeAlias = bytes | bytearray | memoryview

MAX_RECORD_BYTES: int
MAX_PACKET_BYTES: int
MAX_TUNNEL_DEPTH: int

def set_packet_type(cls: type, /) -> None: ...

class FlowFilter:
    """Flow-head classifier: keeps the packets that can carry a name, drops bulk, counts everything."""

    def __init__(
        self,
        max_flows: int = 262144,
        head_packets: int = 16,
        head_bytes: int = 32768,
        idle_timeout: float = 120.0,
        admit_all: bool = False,
        smart: bool = True,
        head_unknown_packets: int = 4,
    ) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def watch(self, ranges: list[tuple[bytes, bytes]], /) -> None: ...
    def watch_address(self, address: str, /) -> bool: ...
    def release_held(self, address: str, after_frame: int, /) -> list[RawPacket]: ...
    def admits(self, linktype: int, data: Buffer, ts: float = 0.0, /) -> bool: ...
    def filter_batch(
        self, linktype: int, packet_bytes: Buffer, meta: Buffer, first_frame: int, /
    ) -> list[RawPacket]: ...

class Framer:
    """Stateful pcap/pcapng record parser over buffers that the caller refills."""

    format: str | None
    linktypes: tuple[int, ...]
    frames: int
    next_record_size: int
    def __init__(self) -> None: ...
    def feed(
        self, buffer: Buffer, flow_filter: FlowFilter | None = None, /
    ) -> tuple[int, int, list[RawPacket], tuple[int, str] | None]: ...
