"""Stateless header parsers: link layers, link shims (VLAN, MPLS, PPPoE), tunnels, IPv4/IPv6, UDP/TCP.

Every parser reads a `bytes` buffer between an offset and an end index with `struct.unpack_from`, so no
layer makes a copy or an object of its own; the only per-frame object is the `LinkInfo` scratch record.
A parser that meets bytes it cannot use raises `Malformed(reason)` (the frame is broken) or
`NotDecodable(counter)` (a valid frame that carries no TCP/UDP over IP); the `Decoder` turns both into
counters, so they never leave the decode layer.

Checksums are not verified: captures on the sending host carry unfilled checksums (offload), and a
passive sensor wants the bytes the capture shows either way.

Bounds: at most MAX_VLAN_TAGS VLAN tags, MAX_MPLS_LABELS MPLS labels, MAX_IPV6_EXTENSIONS IPv6 extension
headers per IPv6 header. Tunnel nesting is bounded by the decoder (MAX_TUNNELS).
"""

from __future__ import annotations

import struct

from netwatch.decode import linktypes as lt

MAX_VLAN_TAGS = 8
MAX_MPLS_LABELS = 16
MAX_IPV6_EXTENSIONS = 12

# Ethertypes (IEEE registry; https://www.iana.org/assignments/ieee-802-numbers).
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100  # IEEE 802.1Q customer tag
ETH_QINQ = 0x88A8  # IEEE 802.1ad service tag
ETH_QINQ_OLD = 0x9100  # pre-standard QinQ tag
ETH_QINQ_OLD2 = 0x9200
ETH_MPLS_UC = 0x8847
ETH_MPLS_MC = 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows (GRE, NVGRE)
ETH_PBB = 0x88E7  # IEEE 802.1ah I-tag: 4 bytes, then a customer Ethernet frame
ETH_ERSPAN_2 = 0x88BE  # ERSPAN type I/II (draft-foschiano-erspan)
ETH_ERSPAN_3 = 0x22EB
ETH_PPP = 0x880B  # PPP inside enhanced GRE (PPTP, RFC 2637)

_VLAN_TYPES = frozenset({ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD, ETH_QINQ_OLD2})

# PPP protocol numbers (https://www.iana.org/assignments/ppp-numbers) mapped to ethertypes.
_PPP_TO_ETHERTYPE = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6, 0x0281: ETH_MPLS_UC, 0x0283: ETH_MPLS_MC}

# IP protocol numbers (https://www.iana.org/assignments/protocol-numbers).
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_FRAGMENT = 44
IPPROTO_GRE = 47
IPPROTO_AH = 51
IPPROTO_NONE = 59
# IPv6 extension headers with the generic (next header, length in 8-octet units - 1) layout:
# hop-by-hop 0, routing 43, destination options 60, mobility 135, HIP 139, shim6 140 (RFC 8200 s4, RFC 7045).
_IPV6_GENERIC_EXT = frozenset({0, 43, 60, 135, 139, 140})

_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
_IPV4_FIELDS = struct.Struct("!HHHBB").unpack_from  # total length, id, flags+offset, ttl, protocol
_UDP_FIELDS = struct.Struct("!HHH").unpack_from
_TCP_FIELDS = struct.Struct("!HHIIH").unpack_from


class Malformed(Exception):
    """The frame is broken at some layer; `reason` is the short counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotDecodable(Exception):
    """A well-formed frame without TCP/UDP over IP; `counter` names the DecodeCounters field."""

    def __init__(self, counter: str) -> None:
        super().__init__(counter)
        self.counter = counter


class LinkInfo:
    """Per-frame scratch: the link addresses enclosing the innermost IP packet and the VLAN stack."""

    __slots__ = ("dst_mac", "src_mac", "vlan")

    def __init__(self) -> None:
        self.src_mac: bytes | None = None
        self.dst_mac: bytes | None = None
        self.vlan: list[int] = []

    def forget_macs(self) -> None:
        """Entering an IP tunnel: the outer MACs belong to tunnel endpoints, not to the inner device."""
        self.src_mac = None
        self.dst_mac = None


# ---------------------------------------------------------------------------------------------------------
# Link layers


def link_header(linktype: int, buf: bytes, info: LinkInfo) -> tuple[int, int]:
    """Parse the link header of a frame; return (ethertype of what follows, offset where it starts)."""
    if linktype == lt.LINKTYPE_ETHERNET:
        return ethernet(buf, 0, len(buf), info)
    if linktype in lt.RAW_IP_LINKTYPES:
        return _raw_ip(buf, 0), 0
    if linktype == lt.LINKTYPE_LINUX_SLL:
        return _linux_sll(buf, info)
    if linktype == lt.LINKTYPE_LINUX_SLL2:
        return _linux_sll2(buf, info)
    if linktype == lt.LINKTYPE_IPV4:
        return ETH_IPV4, 0
    if linktype == lt.LINKTYPE_IPV6:
        return ETH_IPV6, 0
    if linktype in (lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP):
        return _bsd_loopback(buf), 4
    if linktype in (lt.LINKTYPE_PPP, lt.LINKTYPE_PPP_HDLC):
        return ppp(buf, 0, len(buf))
    if linktype == lt.LINKTYPE_PPP_WITH_DIR:
        return ppp(buf, 1, len(buf))
    if linktype == lt.LINKTYPE_C_HDLC:
        if len(buf) < 4:
            raise Malformed("chdlc_header")
        return _U16(buf, 2)[0], 4
    if linktype == lt.LINKTYPE_IEEE802_11_RADIOTAP:
        return _radiotap(buf, info)
    if linktype == lt.LINKTYPE_IEEE802_11:
        return ieee80211(buf, 0, info)
    if linktype == lt.LINKTYPE_PPI:
        return _ppi(buf, info)
    raise NotDecodable("unsupported_linktype")


def _radiotap(buf: bytes, info: LinkInfo) -> tuple[int, int]:
    """Radiotap (radiotap.org): version 0, pad, header length (LE), then an 802.11 frame.

    A trailing FCS (radiotap flag 0x10) needs no stripping: the IP header's length ends the packet.
    """
    if len(buf) < 8 or buf[0] != 0:
        raise Malformed("radiotap_header")
    length = buf[2] | (buf[3] << 8)
    if length < 8 or length > len(buf):
        raise Malformed("radiotap_header")
    return ieee80211(buf, length, info)


def _ppi(buf: bytes, info: LinkInfo) -> tuple[int, int]:
    """Per-Packet Information (PPI spec 1.0): version 0, flags, header length (LE), link type (LE)."""
    if len(buf) < 8 or buf[0] != 0:
        raise Malformed("ppi_header")
    length = buf[2] | (buf[3] << 8)
    if length < 8 or length > len(buf):
        raise Malformed("ppi_header")
    dlt = int.from_bytes(buf[4:8], "little")
    if dlt != lt.LINKTYPE_IEEE802_11:
        raise NotDecodable("unsupported_linktype")
    return ieee80211(buf, length, info)


def ieee80211(buf: bytes, off: int, info: LinkInfo) -> tuple[int, int]:
    """An unprotected IEEE 802.11 data frame (IEEE 802.11-2020 9.2, 9.3.2.1) with LLC/SNAP: the
    ethertype of its payload. Management, control, null-data and protected frames carry nothing to read."""
    end = len(buf)
    if end - off < 24:
        raise Malformed("ieee80211_header")
    control, flags = buf[off], buf[off + 1]
    if (control >> 2) & 0x03 != 2:
        raise NotDecodable("non_ip")  # management or control frame
    subtype = control >> 4
    if subtype & 0x04:
        raise NotDecodable("non_ip")  # null data, CF-Ack/Poll only: no payload
    if flags & 0x40:
        raise NotDecodable("non_ip")  # protected (WEP/WPA): the payload is encrypted
    to_ds, from_ds = flags & 0x01, flags & 0x02
    addr1, addr2, addr3 = buf[off + 4 : off + 10], buf[off + 10 : off + 16], buf[off + 16 : off + 22]
    header = 24
    if to_ds and from_ds:
        header += 6
        source = buf[off + 24 : off + 30]
        destination = addr3
    else:
        destination = addr3 if to_ds else addr1
        source = addr3 if from_ds else addr2
    if subtype & 0x08:  # QoS data: QoS Control, and an HT Control field when Order is set
        header += 2 + (4 if flags & 0x80 else 0)
    llc = off + header
    if end - llc < 8 or buf[llc : llc + 6] != b"\xaa\xaa\x03\x00\x00\x00":
        raise NotDecodable("non_ip")  # not LLC/SNAP with an ethertype (RFC 1042)
    info.dst_mac, info.src_mac = destination, source
    return _U16(buf, llc + 6)[0], llc + 8


def ethernet(buf: bytes, off: int, end: int, info: LinkInfo) -> tuple[int, int]:
    """Ethernet II (or 802.3 + LLC/SNAP) header; records the MACs as the ones enclosing what follows."""
    if end - off < 14:
        raise Malformed("ethernet_header")
    info.dst_mac = buf[off : off + 6]
    info.src_mac = buf[off + 6 : off + 12]
    ethertype = _U16(buf, off + 12)[0]
    if ethertype >= 0x0600:
        return ethertype, off + 14
    # IEEE 802.3 length field: only SNAP (DSAP=SSAP=0xAA, UI) carries an ethertype (RFC 1042).
    if end - off >= 22 and buf[off + 14 : off + 17] == b"\xaa\xaa\x03":
        return _U16(buf, off + 20)[0], off + 22
    raise NotDecodable("non_ip")


def _raw_ip(buf: bytes, off: int) -> int:
    """Raw IP (link types, GTP-U) carries no type field: the version nibble decides."""
    if len(buf) <= off:
        raise Malformed("ip_header")
    version = buf[off] >> 4
    if version == 4:
        return ETH_IPV4
    if version == 6:
        return ETH_IPV6
    raise Malformed("ip_version")


def _linux_sll(buf: bytes, info: LinkInfo) -> tuple[int, int]:
    """Linux cooked v1: type(2) ARPHRD(2) addr len(2) addr(8) protocol(2) (tcpdump.org LINKTYPE_LINUX_SLL)."""
    if len(buf) < 16:
        raise Malformed("sll_header")
    hatype, halen = struct.unpack_from("!HH", buf, 2)
    if halen == 6 and hatype == lt.ARPHRD_ETHER:
        info.src_mac = buf[6:12]
    return _sll_protocol(_U16(buf, 14)[0]), 16


def _linux_sll2(buf: bytes, info: LinkInfo) -> tuple[int, int]:
    """Linux cooked v2: protocol(2) reserved(2) ifindex(4) ARPHRD(2) type(1) addr len(1) addr(8)."""
    if len(buf) < 20:
        raise Malformed("sll2_header")
    if buf[11] == 6 and _U16(buf, 8)[0] == lt.ARPHRD_ETHER:
        info.src_mac = buf[12:18]
    return _sll_protocol(_U16(buf, 0)[0]), 20


def _sll_protocol(protocol: int) -> int:
    # Values below 0x0600 are Linux ETH_P_* pseudo-protocols (802.3, 802.2 LLC, CAN, ...), never IP.
    if protocol < 0x0600:
        raise NotDecodable("non_ip")
    return protocol


def _bsd_loopback(buf: bytes) -> int:
    """NULL/LOOP: 4-byte address family, in either byte order (writers disagree)."""
    if len(buf) < 4:
        raise Malformed("loopback_header")
    for family in (int.from_bytes(buf[:4], "little"), int.from_bytes(buf[:4], "big")):
        if family == lt.BSD_AF_INET:
            return ETH_IPV4
        if family in lt.BSD_AF_INET6:
            return ETH_IPV6
    raise NotDecodable("non_ip")


def ppp(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """PPP frame (RFC 1661), with optional HDLC address/control 0xff 0x03 and protocol-field compression."""
    if end - off >= 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
        off += 2
    if end - off < 1:
        raise Malformed("ppp_header")
    if buf[off] & 1:  # compressed 1-byte protocol field (RFC 1661 s6.5)
        protocol = buf[off]
        off += 1
    else:
        if end - off < 2:
            raise Malformed("ppp_header")
        protocol = _U16(buf, off)[0]
        off += 2
    ethertype = _PPP_TO_ETHERTYPE.get(protocol)
    if ethertype is None:
        raise NotDecodable("non_ip")
    return ethertype, off


# ---------------------------------------------------------------------------------------------------------
# Link shims between the link header and IP


def walk_ethertype(ethertype: int, buf: bytes, off: int, end: int, info: LinkInfo) -> tuple[int, int, int]:
    """Follow VLAN tags, MPLS labels, PPPoE, bridged Ethernet until an IP header.

    Returns (IP version, offset of the IP header, end of the usable bytes). MPLS pseudowires with a
    control word and the PBB I-tag lead to an inner Ethernet header, whose MACs replace the outer ones.
    """
    tags = 0
    # Each pass consumes at least 4 bytes, so the loop ends; the bound only guards hostile nesting.
    for _ in range(MAX_VLAN_TAGS + 8):
        if ethertype == ETH_IPV4:
            return 4, off, end
        if ethertype == ETH_IPV6:
            return 6, off, end
        if ethertype in _VLAN_TYPES:
            tags += 1
            if tags > MAX_VLAN_TAGS:
                raise Malformed("vlan_depth")
            if end - off < 4:
                raise Malformed("vlan_header")
            info.vlan.append(_U16(buf, off)[0] & 0x0FFF)
            ethertype = _U16(buf, off + 2)[0]
            off += 4
        elif ethertype in (ETH_MPLS_UC, ETH_MPLS_MC):
            ethertype, off = _mpls(buf, off, end, info)
        elif ethertype == ETH_PPPOE_SESSION:
            # RFC 2516: ver/type(1)=0x11 code(1)=0 session(2) length(2), then the PPP protocol field.
            if end - off < 8:
                raise Malformed("pppoe_header")
            if buf[off] != 0x11 or buf[off + 1] != 0:
                raise Malformed("pppoe_header")
            end = min(end, off + 6 + _U16(buf, off + 4)[0])
            ethertype, off = ppp(buf, off + 6, end)
        elif ethertype == ETH_TEB:
            ethertype, off = ethernet(buf, off, end, info)
        elif ethertype == ETH_PBB:
            ethertype, off = ethernet(buf, off + 4, end, info)
        else:
            raise NotDecodable("non_ip")
    raise Malformed("link_depth")


def _mpls(buf: bytes, off: int, end: int, info: LinkInfo) -> tuple[int, int]:
    """MPLS label stack (RFC 3032); the payload type is guessed from its first nibble, as routers do."""
    for _ in range(MAX_MPLS_LABELS):
        if end - off < 4:
            raise Malformed("mpls_header")
        bottom = buf[off + 2] & 0x01
        off += 4
        if bottom:
            break
    else:
        raise Malformed("mpls_depth")
    if off >= end:
        raise Malformed("mpls_payload")
    nibble = buf[off] >> 4
    if nibble == 4:
        return ETH_IPV4, off
    if nibble == 6:
        return ETH_IPV6, off
    if nibble == 0:  # pseudowire control word (RFC 4385), then an Ethernet frame (RFC 4448)
        return ethernet(buf, off + 4, end, info)
    raise NotDecodable("non_ip")


# ---------------------------------------------------------------------------------------------------------
# Tunnels


def gre(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """GRE (RFC 2784/2890) and enhanced GRE v1 (PPTP, RFC 2637); return (ethertype, payload offset).

    ERSPAN type I/II/III payloads are turned into ETH_TEB at the mirrored Ethernet frame.
    """
    if end - off < 4:
        raise Malformed("gre_header")
    flags = buf[off]
    version = buf[off + 1] & 0x07
    protocol = _U16(buf, off + 2)[0]
    if flags & 0x40:  # R: source routing (RFC 1701), deprecated and never seen in practice
        raise Malformed("gre_routing")
    size = 4
    if version == 0:
        size += 4 * (bool(flags & 0x80) + bool(flags & 0x20) + bool(flags & 0x10))  # C, K, S
    elif version == 1:
        # K is mandatory; S and A (acknowledgement, byte 1 bit 0x80) add 4 bytes each.
        size += 4 + 4 * (bool(flags & 0x10) + bool(buf[off + 1] & 0x80))
    else:
        raise Malformed("gre_version")
    off += size
    if off > end:
        raise Malformed("gre_header")
    if protocol == ETH_PPP:
        return ppp(buf, off, end)
    if protocol == ETH_ERSPAN_2:
        # With S set this is type II with an 8-byte ERSPAN header; without it, type I (no header).
        return ETH_TEB, off + (8 if flags & 0x10 else 0)
    if protocol == ETH_ERSPAN_3:
        if end - off < 12:
            raise Malformed("erspan_header")
        return ETH_TEB, off + 12 + (8 if buf[off + 11] & 0x01 else 0)
    return protocol, off


def vxlan_inner(buf: bytes, off: int, end: int) -> int | None:
    """Offset of the inner Ethernet frame of a VXLAN payload (RFC 7348), None unless the I flag is set."""
    if end - off >= 8 + 14 and buf[off] & 0x08:
        return off + 8
    return None


MAX_GTP_EXTENSIONS = 8


def gtp_u(buf: bytes, off: int, end: int) -> tuple[int, int, int] | None:
    """GTPv1-U G-PDU (3GPP TS 29.281): (ethertype, inner IP offset, inner end), None if not a G-PDU.

    Mobile-core captures carry subscriber traffic this way; other message types (echo, error
    indication) carry no user packet and decode as ordinary UDP.
    """
    if end - off < 8:
        return None
    flags = buf[off]
    if flags >> 5 != 1 or not flags & 0x10 or buf[off + 1] != 0xFF:  # version 1, PT=GTP, G-PDU
        return None
    end = min(end, off + 8 + _U16(buf, off + 2)[0])
    pos = off + 8
    if flags & 0x07:  # E, S or PN: sequence(2), N-PDU(1), next extension type(1) are present
        if end - pos < 4:
            raise Malformed("gtp_header")
        next_ext = buf[pos + 3]
        pos += 4
        for _ in range(MAX_GTP_EXTENSIONS):
            if not flags & 0x04 or next_ext == 0:
                break
            if end - pos < 4:
                raise Malformed("gtp_header")
            size = buf[pos] * 4  # length in 4-octet units, the last octet is the next type
            if size == 0 or pos + size > end:
                raise Malformed("gtp_header")
            next_ext = buf[pos + size - 1]
            pos += size
        else:
            raise Malformed("gtp_header")
    if pos >= end:
        raise Malformed("gtp_header")
    return _raw_ip(buf, pos), pos, end


def geneve(buf: bytes, off: int, end: int) -> tuple[int, int] | None:
    """Geneve (RFC 8926): (protocol type as ethertype, payload offset), None unless version 0."""
    if end - off < 8 or buf[off] >> 6 != 0:
        return None
    payload = off + 8 + (buf[off] & 0x3F) * 4
    if payload > end:
        raise Malformed("geneve_header")
    return _U16(buf, off + 2)[0], payload


# ---------------------------------------------------------------------------------------------------------
# IP


def ipv4(buf: bytes, off: int, end: int) -> tuple[bytes, bytes, int, int, int, int, int, bool]:
    """IPv4 header (RFC 791); options are skipped.

    Returns (src, dst, protocol, id, flags+fragment offset, payload offset, payload end, truncated).
    The payload end honours the total length (cutting Ethernet padding); a total length of 0 (TSO
    offload captures) means "as captured"; a total length beyond the captured bytes (snaplen cut)
    yields the captured bytes and truncated=True.
    """
    if end - off < 20:
        raise Malformed("ipv4_header")
    first = buf[off]
    if first >> 4 != 4:
        raise Malformed("ip_version")
    header_len = (first & 0x0F) * 4
    if header_len < 20 or off + header_len > end:
        raise Malformed("ipv4_header")
    total, ident, fragment, _ttl, protocol = _IPV4_FIELDS(buf, off + 2)
    truncated = False
    if total == 0:
        ip_end = end
    elif total < header_len:
        raise Malformed("ipv4_length")
    else:
        ip_end = off + total
        if ip_end > end:
            ip_end = end
            truncated = True
    return (
        buf[off + 12 : off + 16],
        buf[off + 16 : off + 20],
        protocol,
        ident,
        fragment & 0x3FFF,
        off + header_len,
        ip_end,
        truncated,
    )


def ipv4_ah(buf: bytes, off: int, end: int) -> tuple[int, int]:
    """Skip an IPsec AH header (RFC 4302) inside IPv4: return (next protocol, offset after it)."""
    if end - off < 8:
        raise Malformed("ah_header")
    size = (buf[off + 1] + 2) * 4
    if off + size > end:
        raise Malformed("ah_header")
    return buf[off], off + size


def ipv6(buf: bytes, off: int, end: int) -> tuple[bytes, bytes, int, int, int, bool]:
    """IPv6 fixed header (RFC 8200); returns (src, dst, next header, payload offset, payload end, truncated).

    A payload length of 0 (jumbogram or TSO capture) means "as captured"; jumbograms are not decoded
    beyond that.
    """
    if end - off < 40:
        raise Malformed("ipv6_header")
    if buf[off] >> 4 != 6:
        raise Malformed("ip_version")
    payload_len = _U16(buf, off + 4)[0]
    start = off + 40
    truncated = False
    if payload_len == 0:
        ip_end = end
    else:
        ip_end = start + payload_len
        if ip_end > end:
            ip_end = end
            truncated = True
    return buf[off + 8 : off + 24], buf[off + 24 : off + 40], buf[off + 6], start, ip_end, truncated


def ipv6_extensions(
    buf: bytes, off: int, end: int, next_header: int
) -> tuple[int, int, tuple[int, bool, int, int] | None]:
    """Walk IPv6 extension headers up to the upper-layer header or a fragment header.

    Returns (protocol, offset, fragment) where fragment is None or
    (fragment offset in bytes, more fragments, identification, next header of the fragmentable part)
    and offset then points at the fragment data. At most MAX_IPV6_EXTENSIONS headers are walked.
    """
    for _ in range(MAX_IPV6_EXTENSIONS):
        if next_header in _IPV6_GENERIC_EXT:
            if end - off < 8:
                raise Malformed("truncated_ipv6_ext")
            size = (buf[off + 1] + 1) * 8
        elif next_header == IPPROTO_AH:
            if end - off < 8:
                raise Malformed("truncated_ipv6_ext")
            size = (buf[off + 1] + 2) * 4
        elif next_header == IPPROTO_FRAGMENT:
            if end - off < 8:
                raise Malformed("truncated_ipv6_ext")
            field = _U16(buf, off + 2)[0]
            return (
                IPPROTO_FRAGMENT,
                off + 8,
                (field & 0xFFF8, bool(field & 0x0001), _U32(buf, off + 4)[0], buf[off]),
            )
        else:
            return next_header, off, None
        if off + size > end:
            raise Malformed("truncated_ipv6_ext")
        next_header = buf[off]
        off += size
    raise Malformed("ipv6_ext_limit")


# ---------------------------------------------------------------------------------------------------------
# Transport


def udp(buf: bytes, off: int, end: int, truncated: bool) -> tuple[int, int, int, int]:
    """UDP header (RFC 768): (src port, dst port, payload offset, payload end).

    The UDP length cuts trailing bytes; a length beyond the IP payload is malformed unless the IP
    packet itself was cut by the snap length. Length 0 (IPv6 jumbogram) means "to the IP end".
    """
    if end - off < 8:
        raise Malformed("udp_header")
    src_port, dst_port, length = _UDP_FIELDS(buf, off)
    if length == 0:
        return src_port, dst_port, off + 8, end
    if length < 8:
        raise Malformed("udp_length")
    udp_end = off + length
    if udp_end > end:
        if not truncated:
            raise Malformed("udp_length")
        udp_end = end
    return src_port, dst_port, off + 8, udp_end


def tcp(buf: bytes, off: int, end: int) -> tuple[int, int, int, int, int]:
    """TCP header (RFC 9293): (src port, dst port, sequence number, flag bits, payload offset)."""
    if end - off < 20:
        raise Malformed("tcp_header")
    src_port, dst_port, seq, _ack, offset_flags = _TCP_FIELDS(buf, off)
    header_len = (offset_flags >> 12) * 4
    if header_len < 20 or off + header_len > end:
        raise Malformed("tcp_header")
    return src_port, dst_port, seq, offset_flags & 0x01FF, off + header_len
