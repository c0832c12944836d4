"""Plain data passed between pipeline stages.

The pipeline runs one way:
capture (RawPacket) -> decode (Segment) -> protocols (parser results) ->
extract (Observation) -> detect (Detection, device inventory) -> outputs (ECS dicts).

Every type here is a dumb record: no behaviour, no I/O, so each stage can be tested
and fuzzed alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class RawPacket(NamedTuple):
    """One captured frame, as a capture source hands it on.

    `frame` is the 1-based index of the frame in its file (tshark's frame.number),
    counting every frame, also the ones the C filter dropped, so an analyst can jump to
    the evidence in Wireshark.
    """

    frame: int
    ts: float  # seconds since the epoch, UTC
    linktype: int  # a LINKTYPE_* value (https://www.tcpdump.org/linktypes.html)
    data: bytes


@dataclass(slots=True)
class Segment:
    """A transport payload after link, tunnel and IP decoding (and IP reassembly)."""

    frame: int
    ts: float
    transport: str  # "tcp" | "udp"
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    payload: bytes
    src_mac: str | None = None  # innermost Ethernet source, "aa:bb:cc:dd:ee:ff"
    dst_mac: str | None = None
    tcp_seq: int = 0
    tcp_flags: int = 0  # raw TCP flag bits (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10)
    vlan: tuple[int, ...] = ()  # outer to inner 802.1Q ids
    ip_version: int = 4


# Evidence kinds: the fixed vocabulary of `netwatch.evidence`.
EVIDENCE_DNS_QUERY = "dns_query"
EVIDENCE_TLS_SNI = "tls_sni"
EVIDENCE_QUIC_SNI = "quic_sni"
EVIDENCE_HTTP_HOST = "http_host"
EVIDENCE_PROXY_CONNECT = "proxy_connect"  # a SOCKS CONNECT request names its destination in clear
EVIDENCE_DHCP_HOSTNAME = "dhcp_hostname"
EVIDENCE_RESOLVED_IP = "resolved_ip"
EVIDENCE_ENCRYPTED_DNS = "encrypted_dns"
EVIDENCE_ECH = "ech"
EVIDENCE_IP_MATCH = "ip_match"


@dataclass(slots=True)
class Observation:
    """Something a device did that names a host (or an address), before matching."""

    evidence: str  # one of the EVIDENCE_* constants
    name: str | None  # host name as seen (presentation form, not yet normalised)
    frame: int
    ts: float
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    transport: str  # "tcp" | "udp"
    protocol: str  # "dns" | "tls" | "quic" | "http" | "dhcp" | ...
    src_mac: str | None = None
    ech: bool = False
    detail: dict = field(default_factory=dict)  # protocol extras (qtype, alpn, http method, ...)
