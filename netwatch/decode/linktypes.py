"""Link-layer header type numbers the decoder understands.

Values are the LINKTYPE_* numbers written in pcap/pcapng headers, from the tcpdump.org registry
(https://www.tcpdump.org/linktypes.html). They differ from the platform DLT_* values in a few
places: raw IP is LINKTYPE_RAW = 101 in files, but DLT_RAW is 12 on most platforms and 14 on
OpenBSD, and some writers leaked those values into files, so both are accepted as raw IP.
"""

from __future__ import annotations

LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in the writer's host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9  # PPP, optionally starting with the HDLC-like 0xff 0x03
LINKTYPE_DLT_RAW_12 = 12  # DLT_RAW on most platforms (leaked into files)
LINKTYPE_DLT_RAW_14 = 14  # DLT_RAW on OpenBSD (leaked into files)
LINKTYPE_PPP_HDLC = 50  # PPP in HDLC-like framing (RFC 1662)
LINKTYPE_RAW = 101  # raw IPv4 or IPv6, version from the first nibble
LINKTYPE_C_HDLC = 104  # Cisco HDLC: address, control, 2-byte ethertype
LINKTYPE_IEEE802_11 = 105  # 802.11 frames without a radio header
LINKTYPE_IEEE802_11_RADIOTAP = 127  # a radiotap header, then an 802.11 frame (Wi-Fi monitor mode)
LINKTYPE_PPI = 192  # a Per-Packet Information header, then (usually) an 802.11 frame
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" capture v1 (16-byte header)
LINKTYPE_PPP_WITH_DIR = 204  # 1 direction byte, then PPP
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # Linux "cooked" capture v2 (20-byte header)

RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, LINKTYPE_DLT_RAW_12, LINKTYPE_DLT_RAW_14})

SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_PPP,
        LINKTYPE_PPP_HDLC,
        LINKTYPE_C_HDLC,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_PPP_WITH_DIR,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_IEEE802_11,
        LINKTYPE_IEEE802_11_RADIOTAP,
        LINKTYPE_PPI,
    }
    | RAW_IP_LINKTYPES
)

# Names for the link types users meet most, for "N packets of link type X not decoded".
LINKTYPE_NAMES = {
    0: "BSD loopback", 1: "Ethernet", 7: "ARCNET", 9: "PPP", 50: "PPP/HDLC", 101: "raw IP", 104: "Cisco HDLC",
    105: "IEEE 802.11", 113: "Linux cooked", 119: "802.11 Prism", 127: "802.11 radiotap", 129: "ARCNET (Linux)",
    163: "802.11 AVS", 192: "PPI", 195: "IEEE 802.15.4", 228: "IPv4", 229: "IPv6", 239: "NFLOG",
    258: "Apple PKTAP", 276: "Linux cooked v2",
}


def linktype_name(linktype: int) -> str:
    """`105 (IEEE 802.11)`, or the bare number for a link type without a name here."""
    name = LINKTYPE_NAMES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)

# BSD address families in the NULL/LOOP header (values from the tcpdump.org LINKTYPE_NULL entry):
# AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD, BSD/OS), 28 (FreeBSD), 30 (Darwin).
BSD_AF_INET = 2
BSD_AF_INET6 = frozenset({24, 28, 30})

# ARPHRD_ETHER (Linux include/uapi/linux/if_arp.h): the SLL address is a 6-byte MAC.
ARPHRD_ETHER = 1
