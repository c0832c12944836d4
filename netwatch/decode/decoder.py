"""RawPacket -> Segment: link layer, shims, tunnels, IP (with reassembly), UDP/TCP.

The decoder never raises: every frame ends either as a Segment or as one counter increment with a short
reason. The Segment describes the innermost IP packet; its MACs are those of the Ethernet header that
directly encloses that packet (None after an IP tunnel without inner Ethernet, whose outer MACs belong
to tunnel endpoints). VLAN ids are collected outer to inner across all layers, tunnels included.
A reassembled IP datagram is decoded like any other and reported with the frame number and time of the
fragment that completed it.
Tunnels followed: IP-in-IP (4, 41 in either IP version), GRE (incl. transparent Ethernet bridging,
ERSPAN I/II/III, PPTP enhanced GRE), VXLAN (UDP 4789, I flag), Geneve (UDP 6081), GTPv1-U G-PDU (UDP 2152).

Bounds: MAX_TUNNELS nested tunnels (IP-in-IP, GRE, VXLAN, MPLS pseudowire counted by their IP/GRE/UDP
step); see layers.py for the per-header bounds and fragments.py for the reassembly bounds; the fast path's
text caches hold at most _TEXT_CACHE_SIZE entries each.

Fast path: nearly every frame is Ethernet (at most one 802.1Q tag), Linux cooked or raw IP, carrying IPv4
without options or fragmentation, or IPv6 without extension headers, then TCP or UDP, all inside the
captured bytes or cut by the snap length. `_fast` decodes exactly those shapes with one struct unpack
for the IP and transport headers and cached address/MAC text; it answers None for anything else
(fragments, options, tunnel ports, length fields that disagree, ...), and the general path then decodes
the frame from scratch, so both paths give the same Segment and counters for every frame
(tests/test_decode_fastpath.py checks this).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netwatch.decode import layers
from netwatch.decode import linktypes as lt
from netwatch.decode.fragments import FragmentReassembler
from netwatch.decode.layers import LinkInfo, Malformed, NotDecodable
from netwatch.model import RawPacket, Segment

MAX_TUNNELS = 6
VXLAN_PORT = 4789  # IANA-assigned (RFC 7348 s5)
GTP_U_PORT = 2152  # 3GPP TS 29.281
GENEVE_PORT = 6081  # RFC 8926

_IPV4_DATAGRAM_LIMIT = 65535  # whole datagram, header included (RFC 791)
_IPV6_FRAGMENTABLE_LIMIT = 65535  # payload-length field bound; jumbograms are not reassembled

_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6

# Fast path: IP and transport fixed headers in one unpack (RFC 791, RFC 8200, RFC 9293, RFC 768).
# IPv4 (IHL 5): total length, flags + fragment offset, source, destination; IPv6: payload length, source,
# destination. Then TCP: ports, sequence number, data offset + flags; UDP: ports, length.
_IP4_TCP = struct.Struct("!2xH2xH4x4s4sHHI4xH").unpack_from
_IP4_UDP = struct.Struct("!2xH2xH4x4s4sHHH").unpack_from
_IP6_TCP = struct.Struct("!4xH2x16s16sHHI4xH").unpack_from
_IP6_UDP = struct.Struct("!4xH2x16s16sHHH").unpack_from
_TUNNEL_PORTS = frozenset({VXLAN_PORT, GTP_U_PORT, GENEVE_PORT})
_TEXT_CACHE_SIZE = 4096


class _TextCache(dict[bytes, Any]):
    """Bounded memo of address text: flows repeat their addresses, and formatting them is the costly part.

    Cleared when full (a scan of many hosts just recomputes), so memory stays bounded.
    """

    __slots__ = ("_render",)

    def __init__(self, render: Callable[[bytes], Any]) -> None:
        super().__init__()
        self._render = render

    def __missing__(self, raw: bytes) -> Any:
        if len(self) >= _TEXT_CACHE_SIZE:
            self.clear()
        text = self[raw] = self._render(raw)
        return text


def _ipv4_text(raw: bytes) -> str:
    return _inet_ntop(_AF_INET, raw)


def _ipv6_text(raw: bytes) -> str:
    return _inet_ntop(_AF_INET6, raw)


def _mac_pair_text(raw: bytes) -> tuple[str, str]:
    """Destination and source MAC text of an Ethernet header's first 12 bytes."""
    return raw[:6].hex(":"), raw[6:12].hex(":")


def _mac_text(raw: bytes) -> str:
    return raw.hex(":")


@dataclass(slots=True)
class DecodeCounters:
    """What happened to the frames; malformed == sum(malformed_by_reason.values())."""

    frames: int = 0
    segments: int = 0
    malformed: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    non_ip: int = 0
    other_proto: int = 0  # IP without TCP/UDP (ICMP, ESP, no next header, ...)
    unsupported_linktype: int = 0
    undecoded_linktypes: dict[int, int] = field(default_factory=dict)  # link type -> frames not decoded
    truncated: int = 0  # IP packets cut by the snap length (decoded with what was captured)
    tunnels: int = 0  # tunnel layers entered
    fragments: int = 0
    reassembled: int = 0
    fragments_expired: int = 0
    fragments_dropped: int = 0  # evicted by the memory / count limits
    fragment_overlaps: int = 0


class Decoder:
    """Stateful only for IP reassembly; one instance per capture stream (not thread-safe)."""

    def __init__(
        self,
        *,
        max_fragment_bytes: int = 16 << 20,
        max_datagrams: int = 4096,
        fragment_timeout: float = 30.0,
        fast_path: bool = True,
    ) -> None:
        """`fast_path=False` decodes every frame the general way (for tests that compare the two)."""
        self.counters = DecodeCounters()
        self._fragments = FragmentReassembler(
            max_bytes=max_fragment_bytes, max_datagrams=max_datagrams, timeout=fragment_timeout
        )
        self._fast_path = fast_path
        self._ipv4_text = _TextCache(_ipv4_text)
        self._ipv6_text = _TextCache(_ipv6_text)
        self._mac_pair_text = _TextCache(_mac_pair_text)
        self._mac_text = _TextCache(_mac_text)

    def decode(self, pkt: RawPacket) -> Segment | None:
        """Decode one frame. None: not TCP/UDP, malformed, or a fragment held back for reassembly."""
        counters = self.counters
        counters.frames += 1
        if self._fast_path:
            segment = self._fast(pkt)
            if segment is not None:
                counters.segments += 1
                return segment
        try:
            segment = self._decode(pkt)
        except Malformed as exc:
            self._count_malformed(exc.reason)
            return None
        except NotDecodable as exc:
            setattr(counters, exc.counter, getattr(counters, exc.counter) + 1)
            if exc.counter == "unsupported_linktype":
                undecoded = counters.undecoded_linktypes
                undecoded[pkt.linktype] = undecoded.get(pkt.linktype, 0) + 1
            return None
        except Exception:  # a bug here must cost one frame, never the sensor
            self._count_malformed("internal_error")
            return None
        if segment is not None:
            counters.segments += 1
        return segment

    def _fast(self, pkt: RawPacket) -> Segment | None:
        """Decode the common frame shapes (module docstring); None hands the frame to the general path.

        Every check mirrors the general path's, written as "not the plain case -> None", so a frame
        this accepts decodes to the same Segment there; it never raises on short or hostile bytes.
        """
        frame, ts, linktype, buf = pkt
        if type(buf) is not bytes:
            return None
        size = len(buf)
        vlan: tuple[int, ...] = ()
        src_mac = dst_mac = None
        if linktype == lt.LINKTYPE_ETHERNET:
            if size < 34:  # Ethernet + the smallest IPv4 header
                return None
            ethertype = (buf[12] << 8) | buf[13]
            off = 14
            if ethertype == layers.ETH_VLAN:
                vlan = (((buf[14] << 8) | buf[15]) & 0x0FFF,)
                ethertype = (buf[16] << 8) | buf[17]
                off = 18
            if ethertype == layers.ETH_IPV4:
                version = 4
            elif ethertype == layers.ETH_IPV6:
                version = 6
            else:
                return None
            dst_mac, src_mac = self._mac_pair_text[buf[:12]]
        elif linktype == lt.LINKTYPE_LINUX_SLL:
            if size < 36:
                return None
            ethertype = (buf[14] << 8) | buf[15]
            version = 4 if ethertype == layers.ETH_IPV4 else 6 if ethertype == layers.ETH_IPV6 else 0
            off = 16
            if buf[2:6] == b"\x00\x01\x00\x06":  # ARPHRD_ETHER, 6-byte address
                src_mac = self._mac_text[buf[6:12]]
        elif linktype == lt.LINKTYPE_LINUX_SLL2:
            if size < 40:
                return None
            ethertype = (buf[0] << 8) | buf[1]
            version = 4 if ethertype == layers.ETH_IPV4 else 6 if ethertype == layers.ETH_IPV6 else 0
            off = 20
            if buf[11] == 6 and buf[8] == 0 and buf[9] == lt.ARPHRD_ETHER:
                src_mac = self._mac_text[buf[12:18]]
        elif linktype in lt.RAW_IP_LINKTYPES or linktype == lt.LINKTYPE_IPV4 or linktype == lt.LINKTYPE_IPV6:
            if size < 20:
                return None
            version = buf[0] >> 4
            off = 0
            if (linktype == lt.LINKTYPE_IPV4 and version != 4) or (linktype == lt.LINKTYPE_IPV6 and version != 6):
                return None
        else:
            return None
        room = size - off
        if version == 4:
            # No options (IHL 5), not a fragment. A total length beyond the captured bytes is a snap-length
            # cut (decoded with what was captured and counted, as the general path does).
            if room < 28 or buf[off] != 0x45:
                return None
            proto = buf[off + 9]
            if proto == layers.IPPROTO_TCP:
                if room < 40:
                    return None
                total, fragment, src, dst, src_port, dst_port, seq, offset_flags = _IP4_TCP(buf, off)
                truncated = total > room
                end = size if truncated else off + total
                payload_off = off + 20 + (offset_flags >> 12) * 4
                if fragment & 0x3FFF or offset_flags < 0x5000 or payload_off > end:  # total 0 lands here too
                    return None
                if truncated:
                    self.counters.truncated += 1
                addr = self._ipv4_text
                return Segment(  # positional, in field order: this is the hot line of the whole decoder
                    frame, ts, "tcp", addr[src], addr[dst], src_port, dst_port, buf[payload_off:end],
                    src_mac, dst_mac, seq, offset_flags & 0x01FF, vlan, 4,
                )
            if proto == layers.IPPROTO_UDP:
                total, fragment, src, dst, src_port, dst_port, length = _IP4_UDP(buf, off)
                if fragment & 0x3FFF or length < 8 or dst_port in _TUNNEL_PORTS:
                    return None
                end = off + 20 + length
                if total > room:
                    self.counters.truncated += 1
                    end = min(end, size)
                elif length > total - 20:  # beyond the IP payload (or total length 0)
                    return None
                addr = self._ipv4_text
                return Segment(
                    frame, ts, "udp", addr[src], addr[dst], src_port, dst_port, buf[off + 28 : end],
                    src_mac, dst_mac, 0, 0, vlan, 4,
                )
            return None
        if version == 6:
            # No extension headers and a payload length (0 means a jumbogram or TSO capture).
            if room < 48 or buf[off] >> 4 != 6:
                return None
            proto = buf[off + 6]
            if proto == layers.IPPROTO_TCP:
                if room < 60:
                    return None
                length, src, dst, src_port, dst_port, seq, offset_flags = _IP6_TCP(buf, off)
                truncated = length + 40 > room
                end = size if truncated else off + 40 + length
                payload_off = off + 40 + (offset_flags >> 12) * 4
                if offset_flags < 0x5000 or payload_off > end or not length:
                    return None
                if truncated:
                    self.counters.truncated += 1
                addr = self._ipv6_text
                return Segment(
                    frame, ts, "tcp", addr[src], addr[dst], src_port, dst_port, buf[payload_off:end],
                    src_mac, dst_mac, seq, offset_flags & 0x01FF, vlan, 6,
                )
            if proto == layers.IPPROTO_UDP:
                length, src, dst, src_port, dst_port, udp_length = _IP6_UDP(buf, off)
                if not length or udp_length < 8 or dst_port in _TUNNEL_PORTS:
                    return None
                end = off + 40 + udp_length
                if length + 40 > room:
                    self.counters.truncated += 1
                    end = min(end, size)
                elif udp_length > length:
                    return None
                addr = self._ipv6_text
                return Segment(
                    frame, ts, "udp", addr[src], addr[dst], src_port, dst_port, buf[off + 48 : end],
                    src_mac, dst_mac, 0, 0, vlan, 6,
                )
        return None

    def _count_malformed(self, reason: str) -> None:
        counters = self.counters
        counters.malformed += 1
        counters.malformed_by_reason[reason] = counters.malformed_by_reason.get(reason, 0) + 1

    def _decode(self, pkt: RawPacket) -> Segment | None:
        buf = pkt.data
        if type(buf) is not bytes:
            buf = bytes(buf)
        info = LinkInfo()
        ethertype, off = layers.link_header(pkt.linktype, buf, info)
        end = len(buf)
        counters = self.counters
        tunnels = 0
        while True:
            version, off, end = layers.walk_ethertype(ethertype, buf, off, end, info)
            # IP layer; IP-in-IP loops here, tunnels with an Ethernet or ethertype payload break out.
            while True:
                if version == 4:
                    ip_start = off
                    src, dst, proto, ident, fragment, off, end, truncated = layers.ipv4(buf, off, end)
                    if truncated:
                        counters.truncated += 1
                    if fragment and truncated:
                        # A fragment cut by the snap length can never be reassembled; the first one
                        # still holds the transport header and the start of its payload (as tshark).
                        if fragment & 0x1FFF:
                            raise Malformed("fragment_truncated")
                        fragment = 0
                    if fragment:
                        got = self._reassemble(
                            (4, src, dst, ident, proto),
                            pkt.ts,
                            (fragment & 0x1FFF) * 8,
                            bool(fragment & 0x2000),
                            buf[off:end],
                            proto,
                            _IPV4_DATAGRAM_LIMIT - (off - ip_start),
                        )
                        if got is None:
                            return None
                        buf, proto = got
                        off, end = 0, len(buf)
                    if proto == layers.IPPROTO_AH:
                        proto, off = layers.ipv4_ah(buf, off, end)
                else:
                    src, dst, next_header, off, end, truncated = layers.ipv6(buf, off, end)
                    if truncated:
                        counters.truncated += 1
                    proto, off, fragment6 = layers.ipv6_extensions(buf, off, end, next_header)
                    if fragment6 is not None:
                        frag_offset, more, ident, inner = fragment6
                        if frag_offset == 0 and not more:  # atomic fragment (RFC 6946): no reassembly
                            proto, off, fragment6 = layers.ipv6_extensions(buf, off, end, inner)
                        elif truncated:
                            if frag_offset:
                                raise Malformed("fragment_truncated")
                            proto, off, fragment6 = layers.ipv6_extensions(buf, off, end, inner)
                        else:
                            got = self._reassemble(
                                (6, src, dst, ident),
                                pkt.ts,
                                frag_offset,
                                more,
                                buf[off:end],
                                inner,
                                _IPV6_FRAGMENTABLE_LIMIT,
                            )
                            if got is None:
                                return None
                            buf, inner = got
                            off, end = 0, len(buf)
                            proto, off, fragment6 = layers.ipv6_extensions(buf, off, end, inner)
                        if fragment6 is not None:
                            raise Malformed("ipv6_nested_fragment")

                if proto == layers.IPPROTO_TCP:
                    src_port, dst_port, seq, flags, payload_off = layers.tcp(buf, off, end)
                    return self._segment(
                        pkt,
                        "tcp",
                        version,
                        src,
                        dst,
                        src_port,
                        dst_port,
                        buf[payload_off:end],
                        info,
                        seq,
                        flags,
                    )
                if proto == layers.IPPROTO_UDP:
                    src_port, dst_port, payload_off, payload_end = layers.udp(buf, off, end, truncated)
                    tunnel = None
                    if dst_port == VXLAN_PORT:
                        inner = layers.vxlan_inner(buf, payload_off, payload_end)
                        if inner is not None:
                            tunnel = layers.ETH_TEB, inner, payload_end
                    elif dst_port == GTP_U_PORT:
                        tunnel = layers.gtp_u(buf, payload_off, payload_end)
                    elif dst_port == GENEVE_PORT:
                        inner = layers.geneve(buf, payload_off, payload_end)
                        if inner is not None:
                            tunnel = inner[0], inner[1], payload_end
                    if tunnel is None:
                        return self._segment(
                            pkt,
                            "udp",
                            version,
                            src,
                            dst,
                            src_port,
                            dst_port,
                            buf[payload_off:payload_end],
                            info,
                            0,
                            0,
                        )
                    tunnels = self._enter_tunnel(tunnels, info)
                    ethertype, off, end = tunnel
                    break
                if proto == layers.IPPROTO_IPIP or proto == layers.IPPROTO_IPV6:
                    tunnels = self._enter_tunnel(tunnels, info)
                    version = 4 if proto == layers.IPPROTO_IPIP else 6
                    continue
                if proto == layers.IPPROTO_GRE:
                    tunnels = self._enter_tunnel(tunnels, info)
                    ethertype, off = layers.gre(buf, off, end)
                    break
                raise NotDecodable("other_proto")

    def _enter_tunnel(self, tunnels: int, info: LinkInfo) -> int:
        tunnels += 1
        if tunnels > MAX_TUNNELS:
            raise Malformed("tunnel_depth")
        self.counters.tunnels += 1
        info.forget_macs()
        return tunnels

    def _reassemble(
        self, key: tuple, ts: float, offset: int, more: bool, data: bytes, first_info: int, limit: int
    ) -> tuple[bytes, int] | None:
        reassembler = self._fragments
        counters = self.counters
        counters.fragments += 1
        try:
            return reassembler.add(key, ts, offset, more, data, first_info, limit)
        finally:
            counters.reassembled = reassembler.reassembled
            counters.fragments_expired = reassembler.expired
            counters.fragments_dropped = reassembler.dropped
            counters.fragment_overlaps = reassembler.overlaps

    @staticmethod
    def _segment(
        pkt: RawPacket,
        transport: str,
        version: int,
        src: bytes,
        dst: bytes,
        src_port: int,
        dst_port: int,
        payload: bytes,
        info: LinkInfo,
        seq: int,
        flags: int,
    ) -> Segment:
        family = _AF_INET if version == 4 else _AF_INET6
        return Segment(
            frame=pkt.frame,
            ts=pkt.ts,
            transport=transport,
            src_ip=_inet_ntop(family, src),
            dst_ip=_inet_ntop(family, dst),
            src_port=src_port,
            dst_port=dst_port,
            payload=payload,
            src_mac=info.src_mac.hex(":") if info.src_mac is not None else None,
            dst_mac=info.dst_mac.hex(":") if info.dst_mac is not None else None,
            tcp_seq=seq,
            tcp_flags=flags,
            vlan=tuple(info.vlan),
            ip_version=version,
        )
