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
step); see layers.py for the per-header bounds and fragments.py for the reassembly bounds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from netwatch.decode import layers
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
        self, *, max_fragment_bytes: int = 16 << 20, max_datagrams: int = 4096, fragment_timeout: float = 30.0
    ) -> None:
        self.counters = DecodeCounters()
        self._fragments = FragmentReassembler(
            max_bytes=max_fragment_bytes, max_datagrams=max_datagrams, timeout=fragment_timeout
        )

    def decode(self, pkt: RawPacket) -> Segment | None:
        """Decode one frame. None: not TCP/UDP, malformed, or a fragment held back for reassembly."""
        counters = self.counters
        counters.frames += 1
        try:
            segment = self._decode(pkt)
        except Malformed as exc:
            self._count_malformed(exc.reason)
            return None
        except NotDecodable as exc:
            setattr(counters, exc.counter, getattr(counters, exc.counter) + 1)
            return None
        except Exception:  # a bug here must cost one frame, never the sensor
            self._count_malformed("internal_error")
            return None
        if segment is not None:
            counters.segments += 1
        return segment

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
