/*
 * netwatch._fastpath: pcap/pcapng framing and a flow-head classifier, in C.
 *
 * Why netwatch carries its own framing and classifier instead of reusing a library:
 *   - libpcap cannot read a pcapng file whose interfaces have different link types,
 *     and it offers no streaming API over a Python buffer (gzip, stdin, pipes);
 *   - BPF cannot track flows, so it cannot express "the first N packets of each
 *     flow, plus DNS/DHCP, plus fragments", which is what the extractors need;
 *   - pcapy-ng's in-C classifier is IPv4-only and does not look inside tunnels.
 * A Python loop that merely touches every packet of a 1 M-packet capture costs
 * seconds, so framing and the keep/drop decision happen here and only candidate
 * packets become Python objects (RawPacket); every other frame is only counted.
 *
 * Everything in this file reads hostile bytes: every read is bounds-checked
 * against the captured length, no length field drives an allocation beyond the
 * bounds below, and decoding never recurses deeper than MAX_TUNNEL_DEPTH.
 *
 * Format references: pcap and pcapng, IETF draft-ietf-opsawg-pcap and
 * draft-ietf-opsawg-pcapng; link types https://www.tcpdump.org/linktypes.html;
 * GRE RFC 2784/2890; VXLAN RFC 7348; PPPoE RFC 2516; MPLS RFC 3032;
 * IPv6 extension headers RFC 8200 section 4, AH RFC 4302.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Bounds                                                                     */
/* ------------------------------------------------------------------------ */

#define MAX_BLOCK_BYTES (128u * 1024u * 1024u) /* sane upper bound of one record/block */
#define MIN_CAPLEN_BOUND 262144u                /* libpcap's MAXIMUM_SNAPLEN */
/* Bytes of one frame handed to Python: no real link carries more (libpcap's MAXIMUM_SNAPLEN), and a
 * hostile record of up to MAX_BLOCK_BYTES then costs its read buffer only, not a second copy. */
#define MAX_PACKET_BYTES MIN_CAPLEN_BOUND
#define MAX_INTERFACES 65536u                   /* pcapng interfaces per section */
#define MAX_TUNNEL_DEPTH 4                      /* nested encapsulations followed */
#define MAX_VLAN_TAGS 8
#define MAX_MPLS_LABELS 16
#define MAX_IPV6_EXT 16
#define MAX_LINKTYPES_SEEN 64
#define BUCKET_SIZE 4

/* ------------------------------------------------------------------------ */
/* Byte readers                                                               */
/* ------------------------------------------------------------------------ */

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t le16(const uint8_t *p) { return (uint16_t)((p[1] << 8) | p[0]); }
static inline uint32_t le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}
static inline uint16_t rd16(const uint8_t *p, int big) { return big ? be16(p) : le16(p); }
static inline uint32_t rd32(const uint8_t *p, int big) { return big ? be32(p) : le32(p); }
static inline uint64_t rd64(const uint8_t *p, int big)
{
    uint64_t a = rd32(p, big), b = rd32(p + 4, big);
    return big ? (a << 32) | b : (b << 32) | a;
}

/* ------------------------------------------------------------------------ */
/* RawPacket construction                                                     */
/* ------------------------------------------------------------------------ */

static PyTypeObject *packet_type = NULL; /* netwatch.model.RawPacket (a tuple subclass) */

static int check_packet_type(PyObject *obj)
{
    if (!PyType_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "packet type must be a class");
        return -1;
    }
    PyTypeObject *t = (PyTypeObject *)obj;
    if (!PyType_IsSubtype(t, &PyTuple_Type) || t->tp_basicsize != PyTuple_Type.tp_basicsize ||
        t->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "packet type must be a NamedTuple (tuple subclass without __dict__)");
        return -1;
    }
    return 0;
}

static PyObject *set_packet_type(PyObject *module, PyObject *obj)
{
    if (check_packet_type(obj) < 0)
        return NULL;
    Py_INCREF(obj);
    Py_XSETREF(packet_type, (PyTypeObject *)obj);
    Py_RETURN_NONE;
}

/* Import netwatch.model.RawPacket the first time a packet is built. */
static int ensure_packet_type(void)
{
    if (packet_type != NULL)
        return 0;
    PyObject *mod = PyImport_ImportModule("netwatch.model");
    if (mod == NULL)
        return -1;
    PyObject *cls = PyObject_GetAttrString(mod, "RawPacket");
    Py_DECREF(mod);
    if (cls == NULL)
        return -1;
    if (check_packet_type(cls) < 0) {
        Py_DECREF(cls);
        return -1;
    }
    packet_type = (PyTypeObject *)cls;
    return 0;
}

/* Append RawPacket(frame, ts, linktype, data) to list; -1 on error. */
static int append_packet(PyObject *list, uint64_t frame, double ts, uint32_t linktype, const uint8_t *data,
                         size_t len)
{
    PyObject *pkt = packet_type->tp_alloc(packet_type, 4);
    if (pkt == NULL)
        return -1;
    PyObject *f = PyLong_FromUnsignedLongLong(frame);
    PyObject *t = PyFloat_FromDouble(ts);
    PyObject *l = PyLong_FromUnsignedLong(linktype);
    PyObject *d = PyBytes_FromStringAndSize((const char *)data,
                                            (Py_ssize_t)(len > MAX_PACKET_BYTES ? MAX_PACKET_BYTES : len));
    if (f == NULL || t == NULL || l == NULL || d == NULL) {
        Py_XDECREF(f);
        Py_XDECREF(t);
        Py_XDECREF(l);
        Py_XDECREF(d);
        Py_DECREF(pkt);
        return -1;
    }
    PyTuple_SET_ITEM(pkt, 0, f);
    PyTuple_SET_ITEM(pkt, 1, t);
    PyTuple_SET_ITEM(pkt, 2, l);
    PyTuple_SET_ITEM(pkt, 3, d);
    int rc = PyList_Append(list, pkt);
    Py_DECREF(pkt);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Packet decoding: link layer -> encapsulations -> IP -> transport            */
/* ------------------------------------------------------------------------ */

enum decode_result {
    D_FLOW,          /* TCP or UDP: flow_info filled */
    D_ALWAYS,        /* always admitted (DNS/DHCP ports) */
    D_NON_IP,        /* not IP: drop */
    D_OTHER_PROTO,   /* IP but not TCP/UDP: drop */
    D_UNDECODABLE,   /* truncated or garbage: admit, Python counts it */
    D_FRAGMENT,      /* IP fragment: admit, Python reassembles */
    D_UNKNOWN_LINK,  /* link type we do not decode: admit */
};

typedef struct {
    uint8_t version;
    uint8_t proto;
    uint8_t tcp_flags;
    uint32_t tcp_seq; /* sequence number of the first payload byte (TCP only) */
    uint16_t vlan;
    uint16_t sport, dport;
    uint32_t payload_len;     /* payload length the IP header declares */
    uint32_t payload_cap;     /* payload bytes actually captured (TCP only) */
    const uint8_t *payload;   /* first captured payload byte (TCP only) */
    uint8_t src[16], dst[16];
} flow_info;

static int decode_ethernet(const uint8_t *p, size_t n, flow_info *fi, int depth);
static int decode_ipv4(const uint8_t *p, size_t n, flow_info *fi, int depth);
static int decode_ipv6(const uint8_t *p, size_t n, flow_info *fi, int depth);

/* Decode an IP packet whose version is given by its first nibble. */
static int decode_ip_guess(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n < 1)
        return D_UNDECODABLE;
    switch (p[0] >> 4) {
    case 4:
        return decode_ipv4(p, n, fi, depth);
    case 6:
        return decode_ipv6(p, n, fi, depth);
    default:
        return D_UNDECODABLE;
    }
}

static int decode_ethertype(uint16_t type, const uint8_t *p, size_t n, flow_info *fi, int depth);
static int decode_ppp(const uint8_t *p, size_t n, flow_info *fi, int depth);

/* PPP protocol numbers (https://www.iana.org/assignments/ppp-numbers): IPv4, IPv6, MPLS. */
static int decode_ppp_proto(uint16_t proto, const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    switch (proto) {
    case 0x0021:
        return decode_ipv4(p, n, fi, depth);
    case 0x0057:
        return decode_ipv6(p, n, fi, depth);
    case 0x0281:
        return decode_ethertype(0x8847, p, n, fi, depth);
    case 0x0283:
        return decode_ethertype(0x8848, p, n, fi, depth);
    default:
        return D_NON_IP;
    }
}

/* PPP (LINKTYPE_PPP 9, PPP_HDLC 50): optional 0xff03 address/control, then a
 * 1- or 2-byte protocol field (RFC 1661 section 6.5: protocol field compression). */
static int decode_ppp(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n >= 2 && p[0] == 0xff && p[1] == 0x03) {
        p += 2;
        n -= 2;
    }
    if (n < 1)
        return D_UNDECODABLE;
    uint16_t proto;
    if (p[0] & 1) { /* compressed one-byte protocol */
        proto = p[0];
        p += 1;
        n -= 1;
    } else {
        if (n < 2)
            return D_UNDECODABLE;
        proto = be16(p);
        p += 2;
        n -= 2;
    }
    return decode_ppp_proto(proto, p, n, fi, depth);
}

/* Follow an ethertype through VLAN tags, MPLS label stacks and PPPoE session headers. */
static int decode_ethertype(uint16_t type, const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    int tags = 0;
    for (;;) {
        switch (type) {
        case 0x0800:
            return decode_ipv4(p, n, fi, depth);
        case 0x86dd:
            return decode_ipv6(p, n, fi, depth);
        case 0x8100:
        case 0x88a8:
        case 0x9100:
        case 0x9200:
            if (n < 4 || ++tags > MAX_VLAN_TAGS)
                return D_UNDECODABLE;
            fi->vlan = be16(p) & 0x0fff; /* the innermost tag wins */
            type = be16(p + 2);
            p += 4;
            n -= 4;
            continue;
        case 0x8847:
        case 0x8848: {
            int labels = 0;
            for (;;) {
                if (n < 4 || ++labels > MAX_MPLS_LABELS)
                    return D_UNDECODABLE;
                uint32_t entry = be32(p);
                p += 4;
                n -= 4;
                if (entry & 0x100) /* bottom of stack */
                    break;
            }
            if (n < 1)
                return D_UNDECODABLE;
            switch (p[0] >> 4) {
            case 4:
                return decode_ipv4(p, n, fi, depth);
            case 6:
                return decode_ipv6(p, n, fi, depth);
            case 0: /* pseudowire control word (RFC 4385) then Ethernet */
                if (depth + 1 > MAX_TUNNEL_DEPTH || n < 4)
                    return D_UNDECODABLE;
                return decode_ethernet(p + 4, n - 4, fi, depth + 1);
            default:
                return D_NON_IP;
            }
        }
        case 0x8864: /* PPPoE session (RFC 2516): ver/type, code, session id, length, then a PPP frame
                        whose protocol field may be compressed to one byte */
            if (n < 8)
                return D_UNDECODABLE;
            return decode_ppp(p + 6, n - 6, fi, depth);
        case 0x6558: /* transparent Ethernet bridging (NVGRE and friends): an Ethernet frame */
            if (depth + 1 > MAX_TUNNEL_DEPTH)
                return D_UNDECODABLE;
            return decode_ethernet(p, n, fi, depth + 1);
        case 0x88e7: /* IEEE 802.1ah I-tag: 4 bytes, then the customer's Ethernet frame */
            if (n < 4 || depth + 1 > MAX_TUNNEL_DEPTH)
                return D_UNDECODABLE;
            return decode_ethernet(p + 4, n - 4, fi, depth + 1);
        default:
            return D_NON_IP;
        }
    }
}

static int decode_ethernet(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n < 14)
        return D_UNDECODABLE;
    uint16_t type = be16(p + 12);
    if (type < 0x0600) {
        /* IEEE 802.3 length field: only an LLC/SNAP header (DSAP = SSAP = 0xAA, UI) carries an
         * ethertype (RFC 1042), after its 3-byte OUI */
        if (n >= 22 && p[14] == 0xaa && p[15] == 0xaa && p[16] == 0x03)
            return decode_ethertype(be16(p + 20), p + 22, n - 22, fi, depth);
        return D_NON_IP;
    }
    return decode_ethertype(type, p + 14, n - 14, fi, depth);
}

static int is_always_port(uint16_t port)
{
    /* DNS 53, DHCP 67/68, mDNS 5353, LLMNR 5355: long conversations on one 5-tuple */
    return port == 53 || port == 67 || port == 68 || port == 5353 || port == 5355;
}

#define MAX_GTP_EXTENSIONS 8

/* A GTPv1-U G-PDU carries a user's IP packet after an 8-byte header, optional sequence/N-PDU/next
 * extension fields and a chain of extension headers; other message types (echo, error indication)
 * are ordinary UDP. */
static int decode_gtp_u(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n < 8)
        return D_FLOW;
    uint8_t flags = p[0];
    if ((flags >> 5) != 1 || !(flags & 0x10) || p[1] != 0xff) /* version 1, GTP, G-PDU */
        return D_FLOW;
    size_t end = 8u + be16(p + 2);
    if (end > n)
        end = n;
    size_t pos = 8;
    if (flags & 0x07) {
        if (end < pos + 4)
            return D_UNDECODABLE;
        uint8_t next_ext = p[pos + 3];
        pos += 4;
        int i = 0;
        for (; i < MAX_GTP_EXTENSIONS; i++) {
            if (!(flags & 0x04) || next_ext == 0)
                break;
            if (end < pos + 4)
                return D_UNDECODABLE;
            size_t size = (size_t)p[pos] * 4u;
            if (size == 0 || pos + size > end)
                return D_UNDECODABLE;
            next_ext = p[pos + size - 1];
            pos += size;
        }
        if (i == MAX_GTP_EXTENSIONS)
            return D_UNDECODABLE;
    }
    if (pos >= end || depth + 1 > MAX_TUNNEL_DEPTH)
        return D_UNDECODABLE;
    fi->vlan = 0;
    return decode_ip_guess(p + pos, end - pos, fi, depth + 1);
}

/* Transport header after IP. `declared` is the payload length the IP header claims
 * (bounded by what was captured only for header reads, not for payload accounting). */
static int decode_transport(uint8_t proto, const uint8_t *p, size_t n, size_t declared, flow_info *fi,
                            int depth)
{
    switch (proto) {
    case 6: { /* TCP */
        if (n < 20)
            return D_UNDECODABLE;
        size_t doff = (size_t)(p[12] >> 4) * 4;
        if (doff < 20 || declared < doff)
            return D_UNDECODABLE;
        fi->proto = 6;
        fi->sport = be16(p);
        fi->dport = be16(p + 2);
        fi->tcp_flags = p[13];
        fi->tcp_seq = be32(p + 4) + ((p[13] & 0x02) ? 1u : 0u); /* a SYN takes one sequence number */
        size_t payload = declared - doff;
        fi->payload_len = payload > 0xffffffffu ? 0xffffffffu : (uint32_t)payload;
        size_t cap = n > doff ? n - doff : 0; /* snaplen may cut the payload short */
        if (cap > payload)
            cap = payload;
        fi->payload = p + (doff < n ? doff : n);
        fi->payload_cap = cap > 0xffffffffu ? 0xffffffffu : (uint32_t)cap;
        return D_FLOW;
    }
    case 17: { /* UDP */
        if (n < 8 || declared < 8)
            return D_UNDECODABLE;
        fi->proto = 17;
        fi->sport = be16(p);
        fi->dport = be16(p + 2);
        uint16_t ulen = be16(p + 4);
        size_t payload = (ulen >= 8 && ulen <= declared) ? (size_t)ulen - 8 : declared - 8;
        fi->payload_len = (uint32_t)payload;
        if (is_always_port(fi->sport) || is_always_port(fi->dport))
            return D_ALWAYS;
        /* VXLAN (RFC 7348): 8-byte header with the I flag, then Ethernet */
        if (fi->dport == 4789 && n >= 16 && (p[8] & 0x08)) {
            if (depth + 1 > MAX_TUNNEL_DEPTH)
                return D_UNDECODABLE;
            fi->vlan = 0; /* the key uses the VLAN id of the innermost Ethernet */
            return decode_ethernet(p + 16, n - 16, fi, depth + 1);
        }
        if (fi->dport == 2152) /* GTPv1-U (3GPP TS 29.281): subscriber packets of a mobile core */
            return decode_gtp_u(p + 8, n - 8, fi, depth);
        if (fi->dport == 6081 && n >= 16 && (p[8] >> 6) == 0) { /* Geneve version 0 (RFC 8926) */
            size_t hlen = 8u + (size_t)(p[8] & 0x3f) * 4u;
            if (n - 8 < hlen || depth + 1 > MAX_TUNNEL_DEPTH)
                return D_UNDECODABLE;
            fi->vlan = 0;
            return decode_ethertype(be16(p + 10), p + 8 + hlen, n - 8 - hlen, fi, depth + 1);
        }
        return D_FLOW;
    }
    case 4: /* IPv4 in IP */
        if (depth + 1 > MAX_TUNNEL_DEPTH)
            return D_UNDECODABLE;
        return decode_ipv4(p, n, fi, depth + 1);
    case 41: /* IPv6 in IP (6in4) */
        if (depth + 1 > MAX_TUNNEL_DEPTH)
            return D_UNDECODABLE;
        return decode_ipv6(p, n, fi, depth + 1);
    case 47: { /* GRE: RFC 2784/2890 (version 0), enhanced GRE of PPTP (RFC 2637, version 1) */
        if (n < 4)
            return D_UNDECODABLE;
        uint8_t flags = p[0], version = p[1] & 0x07;
        if (flags & 0x40) /* source routing (RFC 1701): deprecated, never seen in practice */
            return D_UNDECODABLE;
        size_t hlen = 4;
        if (version == 0)
            hlen += 4u * (!!(flags & 0x80) + !!(flags & 0x20) + !!(flags & 0x10)); /* C, K, S */
        else if (version == 1)
            hlen += 4u + 4u * (!!(flags & 0x10) + !!(p[1] & 0x80)); /* K mandatory; S and A */
        else
            return D_UNDECODABLE;
        if (n < hlen || depth + 1 > MAX_TUNNEL_DEPTH)
            return D_UNDECODABLE;
        uint16_t type = be16(p + 2);
        p += hlen;
        n -= hlen;
        switch (type) {
        case 0x880b: /* PPP (PPTP) */
            return decode_ppp(p, n, fi, depth + 1);
        case 0x88be: /* ERSPAN type II (8-byte header, S flag set) or type I (no header) */
            if (flags & 0x10) {
                if (n < 8)
                    return D_UNDECODABLE;
                p += 8;
                n -= 8;
            }
            fi->vlan = 0;
            return decode_ethernet(p, n, fi, depth + 1);
        case 0x22eb: { /* ERSPAN type III: 12-byte header, 8 more with the O flag */
            if (n < 12)
                return D_UNDECODABLE;
            size_t skip = 12u + ((p[11] & 0x01) ? 8u : 0u);
            if (n < skip)
                return D_UNDECODABLE;
            fi->vlan = 0;
            return decode_ethernet(p + skip, n - skip, fi, depth + 1);
        }
        case 0x6558: /* transparent Ethernet bridging */
            fi->vlan = 0;
            return decode_ethernet(p, n, fi, depth + 1);
        default:
            return decode_ethertype(type, p, n, fi, depth + 1);
        }
    }
    default:
        return D_OTHER_PROTO;
    }
}

static int decode_ipv4(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n < 20 || (p[0] >> 4) != 4)
        return D_UNDECODABLE;
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    if (ihl < 20 || ihl > n)
        return D_UNDECODABLE;
    size_t total = be16(p + 2);
    size_t declared;
    if (total == 0) { /* TSO/LRO captures leave it 0: trust the capture */
        declared = n - ihl;
    } else {
        if (total < ihl)
            return D_UNDECODABLE;
        if (total < n)
            n = total; /* cut link-layer padding */
        declared = total - ihl;
    }
    if (be16(p + 6) & 0x3fff) /* MF flag or a fragment offset */
        return D_FRAGMENT;
    fi->version = 4;
    memset(fi->src, 0, sizeof fi->src);
    memset(fi->dst, 0, sizeof fi->dst);
    memcpy(fi->src, p + 12, 4);
    memcpy(fi->dst, p + 16, 4);
    return decode_transport(p[9], p + ihl, n - ihl, declared, fi, depth);
}

static int decode_ipv6(const uint8_t *p, size_t n, flow_info *fi, int depth)
{
    if (n < 40 || (p[0] >> 4) != 6)
        return D_UNDECODABLE;
    size_t plen = be16(p + 4);
    if (plen != 0 && 40 + plen < n)
        n = 40 + plen; /* cut link-layer padding */
    size_t end_declared = plen != 0 ? 40 + plen : n; /* 0: jumbogram or TSO: trust the capture */
    uint8_t nh = p[6];
    size_t off = 40;
    fi->version = 6;
    memcpy(fi->src, p + 8, 16);
    memcpy(fi->dst, p + 24, 16);
    for (int i = 0; i < MAX_IPV6_EXT; i++) {
        size_t len;
        switch (nh) {
        case 0:   /* hop-by-hop options */
        case 43:  /* routing */
        case 60:  /* destination options */
        case 135: /* mobility */
            if (off + 8 > n)
                return D_UNDECODABLE;
            len = ((size_t)p[off + 1] + 1) * 8;
            break;
        case 51: /* AH: length in 4-byte units minus 2 */
            if (off + 8 > n)
                return D_UNDECODABLE;
            len = ((size_t)p[off + 1] + 2) * 4;
            break;
        case 44: /* fragment header */
            return D_FRAGMENT;
        default:
            if (end_declared < off)
                return D_UNDECODABLE;
            return decode_transport(nh, p + off, n - off, end_declared - off, fi, depth);
        }
        nh = p[off];
        off += len;
        if (off > n)
            return D_UNDECODABLE;
    }
    return D_UNDECODABLE; /* too many extension headers */
}

/* Decode one frame of the given link type. */
static int decode_frame(int linktype, const uint8_t *p, size_t n, flow_info *fi)
{
    fi->vlan = 0;
    switch (linktype) {
    case 1: /* Ethernet */
        return decode_ethernet(p, n, fi, 0);
    case 113: /* Linux cooked v1: 16-byte header, protocol at 14 */
        if (n < 16)
            return D_UNDECODABLE;
        return decode_ethertype(be16(p + 14), p + 16, n - 16, fi, 0);
    case 276: /* Linux cooked v2: 20-byte header, protocol at 0 */
        if (n < 20)
            return D_UNDECODABLE;
        return decode_ethertype(be16(p), p + 20, n - 20, fi, 0);
    case 101: /* raw IP (LINKTYPE_RAW), and DLT_RAW's platform values 12 and 14 */
    case 12:
    case 14:
        return decode_ip_guess(p, n, fi, 0);
    case 228:
        return decode_ipv4(p, n, fi, 0);
    case 229:
        return decode_ipv6(p, n, fi, 0);
    case 0:     /* BSD NULL: AF in the capturing host's byte order */
    case 108: { /* LOOP: AF in network byte order (accept both anyway) */
        if (n < 4)
            return D_UNDECODABLE;
        uint32_t af_le = le32(p), af_be = be32(p);
        if (af_le == 2 || af_be == 2)
            return decode_ipv4(p + 4, n - 4, fi, 0);
        if (af_le == 24 || af_le == 28 || af_le == 30 || af_be == 24 || af_be == 28 || af_be == 30)
            return decode_ipv6(p + 4, n - 4, fi, 0);
        return D_NON_IP;
    }
    case 104: /* Cisco HDLC: address, control, then an ethertype */
        if (n < 4)
            return D_UNDECODABLE;
        return decode_ethertype(be16(p + 2), p + 4, n - 4, fi, 0);
    case 9:  /* PPP */
    case 50: /* PPP in HDLC-like framing */
        return decode_ppp(p, n, fi, 0);
    case 204: /* PPP_WITH_DIR: one direction byte, then PPP */
        if (n < 1)
            return D_UNDECODABLE;
        return decode_ppp(p + 1, n - 1, fi, 0);
    default:
        return D_UNKNOWN_LINK;
    }
}

/* ------------------------------------------------------------------------ */
/* FlowFilter                                                                 */
/* ------------------------------------------------------------------------ */

/* Per-direction TCP states of the protocol-aware head rule (smart=True).
 *
 * Why: the names netwatch needs travel in the client's TLS ClientHello, the client's
 * HTTP request head, DNS over TCP and SYNs. Server directions (ServerHello,
 * certificates, HTTP responses, downloads) and a client's bytes after its hello or
 * request head are pure cost: an admitted packet costs ~50 us in Python, a dropped
 * one well under a microsecond here. So the first payload bytes of each packet are
 * peeked at (a few byte compares, see peek_start) and move the direction between: */
enum tcp_state {
    ST_UNKNOWN = 0,  /* no recognised start yet: at most head_unknown_packets packets */
    ST_HEAD,         /* the plain head rule, still peeking: after CONNECT (a ClientHello follows) */
    ST_DNS,          /* TCP port 53: the plain head rule, never peeked (a DNS length can look like a
                        TLS record header) */
    ST_TLS_HELLO,    /* ClientHello started: admit segments that start before its end, nothing peeked */
    ST_TLS_DONE,     /* a segment past the ClientHello was seen: drop for good */
    ST_HTTP_REQUEST, /* request line seen: admit until a packet ending the head was admitted */
    ST_HTTP_IDLE,    /* request head complete: drop, but a new request line (keep-alive, proxy) reopens */
    ST_CLOSED,       /* a server's or past its hello (TLS record, HTTP response): drop; only a
                        ClientHello start reopens (a reordered hello of fragmented records) */
};

typedef struct {
    uint64_t key; /* 0 = empty slot */
    double last_seen;
    uint32_t packets; /* payload packets admitted */
    uint32_t bytes;   /* payload bytes admitted (as declared by IP, not as captured) */
    uint32_t hello_end; /* ST_TLS_HELLO: sequence number just past the ClientHello's bytes */
    uint8_t state;    /* enum tcp_state */
    uint8_t tail[3];  /* ST_HTTP_REQUEST: last bytes of the previous admitted packet */
} flow_entry;

typedef struct {
    uint64_t frames, admitted, bulk, no_payload, always, non_ip, other_proto, undecodable, unknown_linktype,
        fragments, syn, flows_evicted, flows_new;
    /* smart TCP rule: transitions */
    uint64_t tls_hello, tls_done, http_request, http_done;
    /* smart TCP rule: drops (with bulk, no_payload, non_ip, other_proto and syn_deferred they
     * partition the dropped frames) */
    uint64_t unknown_dropped, done_dropped, server_dropped;
    /* deferred SYNs: held back (counted as dropped), handed on before their direction's first admitted
     * packet (extra packets, not frames of this call), not deferred because the watch set overflowed */
    uint64_t syn_deferred, syn_released, watch_overflow, fin;
} filter_counters;

/* Deferred SYNs.
 *
 * Why: a SYN names nothing. Python needs it only (a) to start a connection to an address that can
 * be evidence (an address rule, or an address a banned name resolved to: the caller "watches"
 * those), and (b) to give the stream its initial sequence number before the first data. So a SYN to
 * an unwatched address is kept here, in a fixed slot beside its flow entry, and handed on just before
 * the first admitted packet of its direction; a SYN that no data follows (a port scan, a SYN flood,
 * a refused connection) never becomes a Python object. Deferral starts once the caller has called
 * watch(): before that every SYN is admitted as it comes. */
#define SYN_KEEP_BYTES 112 /* Ethernet + QinQ + IPv6 + TCP with 40 bytes of options; longer: admitted */

typedef struct {
    uint64_t frame;
    double ts;
    uint32_t linktype;
    uint16_t len; /* 0 = no SYN held */
    uint8_t data[SYN_KEEP_BYTES];
} syn_slot;

/* Watched destination addresses: an open-addressing set of IPv6 addresses (IPv4 as ::ffff:a.b.c.d),
 * fixed size, never shrinking; when it is half full deferral stops (fail open: every SYN is admitted
 * again), so a flood of answers cannot make the filter hide a connection Python wants. */
#define WATCH_SLOTS (1u << 18)          /* 4 MiB */
/* release_held() looks at most this far back: the SYNs held since the address was learnt, within a
 * read buffer, so a flood of answers for banned names costs a bounded pass each, not one over the
 * whole table (a SYN-only connection more than this many held SYNs after its answer, in the same
 * buffer, is missed) */
#define RECENT_HELD 4096u
#define WATCH_MAX_ADDRESSES (1u << 17)  /* 50% load */

typedef struct {
    uint64_t hi, lo; /* big-endian halves; 0,0 = empty (:: is never a destination) */
} addr128;

typedef struct {
    addr128 lo, hi;
} addr_range;

typedef struct {
    PyObject_HEAD
    flow_entry *table;
    uint32_t nbuckets;
    uint32_t max_flows;
    uint32_t head_packets;
    uint32_t head_bytes;
    uint32_t head_unknown_packets;
    double idle_timeout;
    double latest_ts;
    int admit_all;
    int smart;
    filter_counters c;
    /* deferred SYNs and the watch set (allocated by the first watch() call) */
    int watching;
    syn_slot *syn_slots;     /* one per flow entry */
    uint32_t *held_dst;      /* per flow entry: hash of the held SYN's destination, 0 = none held */
    uint32_t held;           /* SYNs held */
    uint32_t recent[RECENT_HELD];        /* ring: flow entries of the latest SYNs held ... */
    uint64_t recent_frame[RECENT_HELD];  /* ... and their frame numbers */
    uint32_t recent_next;
    syn_slot *release;       /* a held SYN to hand on before the packet just admitted */
    addr128 *watch_set;      /* WATCH_SLOTS */
    uint32_t watched;
    addr_range *ranges;      /* sorted, disjoint */
    size_t n_ranges;
} FlowFilterObject;

static inline uint64_t load_be64(const uint8_t *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

/* The destination of a flow as a 128-bit address (IPv4 mapped into ::ffff:0:0/96). */
static addr128 flow_dst(const flow_info *fi)
{
    addr128 a;
    if (fi->version == 4) {
        a.hi = 0;
        a.lo = 0x0000ffff00000000ULL | be32(fi->dst);
    } else {
        a.hi = load_be64(fi->dst);
        a.lo = load_be64(fi->dst + 8);
    }
    return a;
}

static inline int addr_cmp(addr128 a, addr128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

static inline uint64_t mix64(uint64_t x);

static inline uint32_t watch_slot(addr128 a)
{
    return (uint32_t)(mix64(a.hi ^ mix64(a.lo)) & (WATCH_SLOTS - 1));
}

static inline uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser (Steele, Lea, Flood 2014): full avalanche */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t flow_key(const flow_info *fi)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ fi->version;
    uint64_t tail = ((uint64_t)fi->sport << 48) | ((uint64_t)fi->dport << 32) | ((uint64_t)fi->proto << 24) |
                    ((uint64_t)fi->vlan << 8) | fi->version;
    if (fi->version == 4) {
        uint32_t s, d;
        memcpy(&s, fi->src, 4);
        memcpy(&d, fi->dst, 4);
        h = mix64(h ^ (((uint64_t)s << 32) | d));
    } else {
        h = mix64(h ^ load64(fi->src));
        h = mix64(h ^ load64(fi->src + 8));
        h = mix64(h ^ load64(fi->dst));
        h = mix64(h ^ load64(fi->dst + 8));
    }
    h = mix64(h ^ tail);
    return h ? h : 1;
}

static inline uint32_t held_tag(addr128 a)
{
    uint32_t h = (uint32_t)(mix64(a.lo ^ mix64(a.hi)) >> 32);
    return h ? h : 1;
}

/* Forget the SYN held for flow entry i (its flow restarted, or it was handed on). */
static inline void forget_held(FlowFilterObject *self, size_t i)
{
    if (self->syn_slots != NULL && self->syn_slots[i].len != 0) {
        self->syn_slots[i].len = 0;
        self->held_dst[i] = 0;
        self->held--;
    }
}

/* Is a connection to this destination something Python must see from its SYN on? */
static int dst_watched(const FlowFilterObject *self, const flow_info *fi)
{
    addr128 a = flow_dst(fi);
    for (uint32_t i = watch_slot(a), probes = 0; probes < WATCH_SLOTS; i = (i + 1) & (WATCH_SLOTS - 1), probes++) {
        const addr128 *w = &self->watch_set[i];
        if (w->hi == 0 && w->lo == 0)
            break;
        if (w->hi == a.hi && w->lo == a.lo)
            return 1;
    }
    size_t lo = 0, hi = self->n_ranges; /* the last range starting at or below a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr_cmp(self->ranges[mid].lo, a) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && addr_cmp(a, self->ranges[lo - 1].hi) <= 0;
}

/* A direction starts over: a new connection, an idle entry or a new slot. */
static void reset_entry(flow_entry *e, uint8_t state)
{
    e->packets = 0;
    e->bytes = 0;
    e->hello_end = 0;
    e->state = state;
    memset(e->tail, 0, sizeof e->tail);
}

/* The state a direction starts in: DNS over TCP on its port keeps the plain head rule. */
static uint8_t initial_state(const flow_info *fi)
{
    return (fi->proto == 6 && (fi->sport == 53 || fi->dport == 53)) ? ST_DNS : ST_UNKNOWN;
}

/* Find (or create, evicting the least recently seen entry of the bucket) the
 * entry of a directional flow. An entry idle for longer than idle_timeout restarts. */
static flow_entry *flow_lookup(FlowFilterObject *self, uint64_t key, double ts, uint8_t state)
{
    uint32_t bucket = (uint32_t)(((key >> 32) * (uint64_t)self->nbuckets) >> 32);
    flow_entry *b = self->table + (size_t)bucket * BUCKET_SIZE;
    flow_entry *empty = NULL, *oldest = NULL;
    for (int i = 0; i < BUCKET_SIZE; i++) {
        if (b[i].key == key) {
            if (ts - b[i].last_seen > self->idle_timeout) {
                reset_entry(&b[i], state);
                forget_held(self, (size_t)(&b[i] - self->table));
                self->c.flows_new++;
            }
            b[i].last_seen = ts;
            return &b[i];
        }
        if (b[i].key == 0) {
            if (empty == NULL)
                empty = &b[i];
        } else if (oldest == NULL || b[i].last_seen < oldest->last_seen) {
            oldest = &b[i];
        }
    }
    flow_entry *victim = empty;
    if (victim == NULL) {
        victim = oldest;
        self->c.flows_evicted++;
    }
    self->c.flows_new++;
    victim->key = key;
    victim->last_seen = ts;
    reset_entry(victim, state);
    forget_held(self, (size_t)(victim - self->table));
    return victim;
}

enum start_kind {
    START_NONE,
    START_CLIENT_HELLO,
    START_TLS_OTHER,     /* any other TLS record: a server, or a client past its hello */
    START_HTTP_RESPONSE, /* a server */
    START_HTTP_REQUEST,
    START_HTTP_CONNECT,
};

#define HELLO_LEN_UNKNOWN 0xffffffffu
#define TLS_MAX_RECORD (16384u + 2048u) /* RFC 8446 5.2: TLSCiphertext.length bound */
#define HTTP_MAX_METHOD 16

/* What a TCP payload starts, from its first bytes only.
 * TLS record header (RFC 8446 5.1): content type 20..23, legacy version 0x0300..0x0304,
 * a 16-bit length; a handshake record's first message header (4.1.2/4.4): msg_type 1 =
 * client_hello, then a 24-bit length, reported in *hello_len (HELLO_LEN_UNKNOWN when not
 * captured or not in this record). HTTP (RFC 9112 3 and 4): a request line starts with a
 * method token and a space (accepted: 3..16 upper-case letters), then a request-target
 * in origin-form "/", asterisk-form "*" or absolute-form "http(s)://" (first byte only;
 * CONNECT: any authority); a status line starts with "HTTP/1.". The target check keeps
 * bulk bytes (~1 in 4e6 random segments look like "ABC ") and SMTP's "EHLO host" from
 * opening a request. Reads at most 18 bytes of q[0..m). */
static int peek_start(const uint8_t *q, uint32_t m, uint32_t *hello_len)
{
    if (m >= 6 && q[0] >= 0x14 && q[0] <= 0x17 && q[1] == 0x03 && q[2] <= 0x04) {
        uint32_t rec_len = be16(q + 3);
        if (rec_len == 0 || rec_len > TLS_MAX_RECORD)
            return START_NONE;
        if (q[0] == 0x16 && q[5] == 1) {
            *hello_len = (m >= 9 && rec_len >= 4) ? ((uint32_t)q[6] << 16) | ((uint32_t)q[7] << 8) | q[8]
                                                  : HELLO_LEN_UNKNOWN;
            return START_CLIENT_HELLO;
        }
        return START_TLS_OTHER;
    }
    if (m >= 7 && memcmp(q, "HTTP/1.", 7) == 0)
        return START_HTTP_RESPONSE;
    uint32_t i = 0;
    while (i < m && i < HTTP_MAX_METHOD && q[i] >= 'A' && q[i] <= 'Z')
        i++;
    if (i < 3 || i + 1 >= m || q[i] != ' ')
        return START_NONE;
    uint8_t target = q[i + 1];
    if (i == 7 && memcmp(q, "CONNECT", 7) == 0)
        return target > ' ' ? START_HTTP_CONNECT : START_NONE;
    if (target == '/' || target == '*' || target == 'h' || target == 'H')
        return START_HTTP_REQUEST;
    return START_NONE;
}

/* Does q[0..m) hold the blank line that ends an HTTP head ("\r\n\r\n", or "\n\n" from lax
 * clients, RFC 9112 2.2)? */
static int has_blank_line(const uint8_t *q, size_t m)
{
    const uint8_t *end = q + m, *p = q;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p + 1 < end && p[1] == '\n')
            return 1;
        if (p + 2 < end && p[1] == '\r' && p[2] == '\n')
            return 1;
        p++;
    }
    return 0;
}

/* Does the head end in this packet, also across the boundary with the previous one? */
static int http_head_ends(flow_entry *e, const uint8_t *q, uint32_t m)
{
    uint8_t joint[6];
    uint32_t k = m < 3 ? m : 3;
    memcpy(joint, e->tail, 3);
    memcpy(joint + 3, q, k);
    if (has_blank_line(joint, 3 + k) || has_blank_line(q, m))
        return 1;
    uint8_t both[6];
    memcpy(both, e->tail, 3);
    memcpy(both + 3, q + m - k, k);
    memcpy(e->tail, both + k, 3); /* keep the last 3 bytes seen */
    return 0;
}

static void count_payload(flow_entry *e, uint32_t len)
{
    e->packets++;
    uint64_t b = (uint64_t)e->bytes + len;
    e->bytes = b > 0xffffffffu ? 0xffffffffu : (uint32_t)b;
}

/* A ClientHello starts at this segment: it needs hs_len + 4 handshake bytes plus a 5-byte
 * header per TLS record; when the first record does not hold the whole message (a hello
 * fragmented over records) allow one record per started 512 bytes. Capped by head_bytes.
 *
 * The end is kept as a TCP sequence number rather than as a count of admitted bytes:
 * retransmitted segments of the hello, and the bytes of a dialogue before it (STARTTLS,
 * CONNECT), would exhaust a byte count early and drop the hello's last segment (which
 * often carries the SNI of a post-quantum hello); segments of the hello reordered
 * before or after its first one still fall inside [start, end). */
static void enter_hello(FlowFilterObject *self, flow_entry *e, const flow_info *fi, uint32_t hello_len,
                        uint32_t first_record_len)
{
    uint64_t need;
    if (hello_len == HELLO_LEN_UNKNOWN)
        need = self->head_bytes;
    else if (first_record_len >= (uint64_t)hello_len + 4)
        need = (uint64_t)hello_len + 4 + 5;
    else
        need = (uint64_t)hello_len + 4 + 5 * (1 + (uint64_t)hello_len / 512);
    if (need > self->head_bytes)
        need = self->head_bytes;
    e->hello_end = fi->tcp_seq + (uint32_t)need;
    e->packets = 0; /* a hello gets the whole head_packets (CONNECT or STARTTLS may precede it) */
    e->state = ST_TLS_HELLO;
    self->c.tls_hello++;
}

enum verdict { V_ADMIT, V_BULK, V_UNKNOWN_DROP, V_DONE_DROP, V_SERVER_DROP };

/* The protocol-aware rule for one TCP payload packet of a direction (see enum tcp_state).
 * Updates the entry and the transition counters; the caller counts the verdict. */
static int smart_tcp(FlowFilterObject *self, flow_entry *e, const flow_info *fi)
{
    uint32_t len = fi->payload_len, m = fi->payload_cap;
    const uint8_t *q = fi->payload;
    switch (e->state) {
    case ST_TLS_DONE:
        return V_DONE_DROP;
    case ST_DNS:
        if (e->packets >= self->head_packets || e->bytes >= self->head_bytes)
            return V_BULK;
        count_payload(e, len);
        return V_ADMIT;
    case ST_TLS_HELLO:
        /* Nothing is peeked inside a hello: a segment of a hello fragmented in several
         * TLS records can begin with a record header of type 22 and any next byte.
         * Sequence numbers compare modulo 2**32 (RFC 9293 3.4). */
        if ((int32_t)(fi->tcp_seq - e->hello_end) >= 0) {
            e->state = ST_TLS_DONE;
            self->c.tls_done++;
            return V_DONE_DROP;
        }
        if (e->packets >= self->head_packets)
            return V_BULK;
        count_payload(e, len);
        return V_ADMIT;
    default:
        break;
    }
    uint32_t hello_len = HELLO_LEN_UNKNOWN;
    switch (peek_start(q, m, &hello_len)) {
    case START_CLIENT_HELLO:
        enter_hello(self, e, fi, hello_len, be16(q + 3));
        count_payload(e, len);
        return V_ADMIT;
    case START_TLS_OTHER:
    case START_HTTP_RESPONSE:
        /* Trade-off: such a start also closes a client direction whose segment merely
         * begins with these bytes (a request head continuing "HTTP/1.1" is excepted; a
         * ClientHello segment beginning 0x17 0x03 cannot be, but needs a record split at
         * that very byte; a direction closed this way reopens on a ClientHello start). */
        if (e->state == ST_HTTP_REQUEST)
            break;
        e->state = ST_CLOSED;
        return V_SERVER_DROP;
    case START_HTTP_REQUEST:
        if (e->state == ST_CLOSED)
            break; /* a server's body text: only a ClientHello reopens */
        reset_entry(e, ST_HTTP_REQUEST);
        self->c.http_request++;
        break;
    case START_HTTP_CONNECT:
        if (e->state == ST_CLOSED)
            break;
        reset_entry(e, ST_HEAD); /* the plain head rule: a ClientHello follows in this direction */
        self->c.http_request++;
        break;
    default:
        break;
    }
    switch (e->state) {
    case ST_CLOSED:
        return V_SERVER_DROP;
    case ST_HTTP_IDLE:
        return V_DONE_DROP;
    case ST_UNKNOWN:
        if (e->packets >= self->head_unknown_packets || e->packets >= self->head_packets ||
            e->bytes >= self->head_bytes)
            return V_UNKNOWN_DROP;
        count_payload(e, len);
        return V_ADMIT;
    case ST_HTTP_REQUEST:
        if (e->packets >= self->head_packets || e->bytes >= self->head_bytes)
            return V_BULK;
        count_payload(e, len);
        if (http_head_ends(e, q, m)) {
            e->state = ST_HTTP_IDLE;
            self->c.http_done++;
        }
        return V_ADMIT;
    default: /* ST_HEAD */
        if (e->packets >= self->head_packets || e->bytes >= self->head_bytes)
            return V_BULK;
        count_payload(e, len);
        return V_ADMIT;
    }
}

/* Keep a SYN (n <= SYN_KEEP_BYTES) in the slot of its flow entry, replacing the one held there. */
static void hold_syn(FlowFilterObject *self, flow_entry *e, const flow_info *fi, int linktype, const uint8_t *p,
                     size_t n, double ts, uint64_t frame)
{
    size_t idx = (size_t)(e - self->table);
    syn_slot *held = &self->syn_slots[idx];
    forget_held(self, idx);
    self->held_dst[idx] = held_tag(flow_dst(fi));
    self->held++;
    held->frame = frame;
    held->ts = ts;
    held->linktype = (uint32_t)linktype;
    held->len = (uint16_t)n;
    memcpy(held->data, p, n);
    self->recent[self->recent_next % RECENT_HELD] = (uint32_t)idx;
    self->recent_frame[self->recent_next % RECENT_HELD] = frame;
    self->recent_next++;
}

/* Decide one frame: 1 = admit, 0 = drop. Updates counters. */
static int classify(FlowFilterObject *self, int linktype, const uint8_t *p, size_t n, double ts, uint64_t frame)
{
    self->release = NULL;
    self->c.frames++;
    if (ts > self->latest_ts)
        self->latest_ts = ts;
    if (self->admit_all) {
        self->c.admitted++;
        return 1;
    }
    flow_info fi;
    int r = decode_frame(linktype, p, n, &fi);
    switch (r) {
    case D_NON_IP:
        self->c.non_ip++;
        return 0;
    case D_OTHER_PROTO:
        self->c.other_proto++;
        return 0;
    case D_UNDECODABLE:
        self->c.undecodable++;
        self->c.admitted++;
        return 1;
    case D_UNKNOWN_LINK:
        self->c.unknown_linktype++;
        self->c.admitted++;
        return 1;
    case D_FRAGMENT:
        self->c.fragments++;
        self->c.admitted++;
        return 1;
    case D_ALWAYS:
        self->c.always++;
        self->c.admitted++;
        return 1;
    default:
        break;
    }
    /* D_FLOW: TCP or UDP */
    int smart = self->smart && fi.proto == 6;
    if (fi.proto == 6 && (fi.tcp_flags & 0x12) == 0x02) { /* SYN without ACK: a new connection */
        flow_entry *e = flow_lookup(self, flow_key(&fi), ts, initial_state(&fi));
        reset_entry(e, initial_state(&fi));
        self->c.syn++;
        if (self->syn_slots != NULL) {
            forget_held(self, (size_t)(e - self->table));
            if (fi.payload_len == 0 && n <= SYN_KEEP_BYTES && !dst_watched(self, &fi)) {
                if (self->watched < WATCH_MAX_ADDRESSES) {
                    hold_syn(self, e, &fi, linktype, p, n, ts, frame);
                    self->c.syn_deferred++;
                    return 0;
                }
                self->c.watch_overflow++;
            }
        }
        if (fi.payload_len) { /* TCP Fast Open data: admitted with the SYN, and it may start a hello */
            if (smart)
                (void)smart_tcp(self, e, &fi);
            else
                count_payload(e, fi.payload_len);
        }
        self->c.admitted++;
        return 1;
    }
    if (fi.payload_len == 0) {
        if (fi.proto == 6 && (fi.tcp_flags & 0x03) && self->syn_slots != NULL && n <= SYN_KEEP_BYTES) {
            /* A SYN-ACK gives Python's stream of this direction its initial sequence number, a FIN
             * before any data its end (the head is complete and empty: later data is ignored). So
             * both are held like a SYN and handed on before the direction's first data. A FIN after
             * a held SYN is admitted (with the SYN before it); one after data (admitted or not: the
             * state moved) is dropped. */
            flow_entry *e = flow_lookup(self, flow_key(&fi), ts, initial_state(&fi));
            syn_slot *held = &self->syn_slots[e - self->table];
            if (!(fi.tcp_flags & 0x02) && (e->packets > 0 || e->state != initial_state(&fi))) {
                self->c.no_payload++;
                return 0;
            }
            if (!(fi.tcp_flags & 0x02) && held->len != 0) {
                self->release = held;
                self->c.fin++;
                self->c.admitted++;
                return 1;
            }
            hold_syn(self, e, &fi, linktype, p, n, ts, frame);
            self->c.syn_deferred++;
            return 0;
        }
        self->c.no_payload++;
        return 0;
    }
    flow_entry *e = flow_lookup(self, flow_key(&fi), ts, initial_state(&fi));
    if (self->syn_slots != NULL && fi.proto == 6) {
        syn_slot *held = &self->syn_slots[e - self->table];
        if (held->len != 0)
            self->release = held; /* handed on by the caller if this packet is admitted */
    }
    if (smart) {
        switch (smart_tcp(self, e, &fi)) {
        case V_ADMIT:
            self->c.admitted++;
            return 1;
        case V_UNKNOWN_DROP:
            self->c.unknown_dropped++;
            return 0;
        case V_DONE_DROP:
            self->c.done_dropped++;
            return 0;
        case V_SERVER_DROP:
            self->c.server_dropped++;
            return 0;
        default:
            self->c.bulk++;
            return 0;
        }
    }
    if (e->packets < self->head_packets && e->bytes < self->head_bytes) {
        count_payload(e, fi.payload_len);
        self->c.admitted++;
        return 1;
    }
    self->c.bulk++;
    return 0;
}

/* After an admitted packet: append the SYN its direction held back (if any) first. -1 on error. */
static int hand_on_held_syn(FlowFilterObject *self, PyObject *list)
{
    syn_slot *held = self->release;
    self->release = NULL;
    if (held == NULL || held->len == 0)
        return 0;
    size_t len = held->len;
    forget_held(self, (size_t)(held - self->syn_slots));
    self->c.syn_released++;
    if (list == NULL)
        return 0;
    return append_packet(list, held->frame, held->ts, held->linktype, held->data, len);
}

static void free_watch(FlowFilterObject *self)
{
    PyMem_Free(self->syn_slots);
    PyMem_Free(self->held_dst);
    self->held_dst = NULL;
    self->held = 0;
    self->recent_next = 0; /* the ring names entries of the old table */
    PyMem_Free(self->watch_set);
    PyMem_Free(self->ranges);
    self->syn_slots = NULL;
    self->watch_set = NULL;
    self->ranges = NULL;
    self->n_ranges = 0;
    self->watched = 0;
    self->watching = 0;
    self->release = NULL;
}

static int FlowFilter_init(FlowFilterObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_flows", "head_packets", "head_bytes",           "idle_timeout",
                             "admit_all", "smart",        "head_unknown_packets", NULL};
    /* head_packets 16, not 10: nDPI's tls_with_huge_ch.pcapng carries an 11 kB ClientHello in
     * 12 segments of 1024 bytes; 16 leaves room for retransmissions and costs ~10% more
     * candidates on small-flow captures (measured), almost nothing on bulk ones.
     * head_unknown_packets 4: enough for DNS over TCP on odd ports (a query or two per
     * direction) and for segments of a ClientHello reordered ahead of its first one. */
    long long max_flows = 262144, head_packets = 16, head_bytes = 32768, head_unknown_packets = 4;
    double idle_timeout = 120.0;
    int admit_all = 0, smart = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|LLLdppL:FlowFilter", kwlist, &max_flows, &head_packets,
                                     &head_bytes, &idle_timeout, &admit_all, &smart, &head_unknown_packets))
        return -1;
    if (max_flows < 1 || max_flows > (1LL << 28)) {
        PyErr_SetString(PyExc_ValueError, "max_flows must be in 1..2**28");
        return -1;
    }
    if (head_packets < 0 || head_packets > 0xffffffffLL || head_bytes < 0 || head_bytes > 0xffffffffLL ||
        head_unknown_packets < 0 || head_unknown_packets > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError,
                        "head_packets, head_bytes and head_unknown_packets must be in 0..2**32-1");
        return -1;
    }
    if (!(idle_timeout >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "idle_timeout must be >= 0");
        return -1;
    }
    uint32_t nbuckets = (uint32_t)((max_flows + BUCKET_SIZE - 1) / BUCKET_SIZE);
    flow_entry *table = PyMem_Calloc((size_t)nbuckets * BUCKET_SIZE, sizeof(flow_entry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->table);
    free_watch(self);
    self->table = table;
    self->nbuckets = nbuckets;
    self->max_flows = nbuckets * BUCKET_SIZE;
    self->head_packets = (uint32_t)head_packets;
    self->head_bytes = (uint32_t)head_bytes;
    self->head_unknown_packets = (uint32_t)head_unknown_packets;
    self->idle_timeout = idle_timeout;
    self->latest_ts = -1e300;
    self->admit_all = admit_all;
    self->smart = smart;
    memset(&self->c, 0, sizeof self->c);
    return 0;
}

static void FlowFilter_dealloc(FlowFilterObject *self)
{
    free_watch(self);
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int set_item_u64(PyObject *d, const char *name, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (o == NULL)
        return -1;
    int rc = PyDict_SetItemString(d, name, o);
    Py_DECREF(o);
    return rc;
}

static PyObject *FlowFilter_stats(FlowFilterObject *self, PyObject *unused)
{
    uint64_t active = 0;
    size_t cap = (size_t)self->nbuckets * BUCKET_SIZE;
    if (self->table != NULL) {
        for (size_t i = 0; i < cap; i++)
            if (self->table[i].key != 0 && self->latest_ts - self->table[i].last_seen <= self->idle_timeout)
                active++;
    }
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    const filter_counters *c = &self->c;
    if (set_item_u64(d, "frames", c->frames) || set_item_u64(d, "admitted", c->admitted) ||
        set_item_u64(d, "bulk", c->bulk) || set_item_u64(d, "no_payload", c->no_payload) ||
        set_item_u64(d, "always", c->always) || set_item_u64(d, "non_ip", c->non_ip) ||
        set_item_u64(d, "other_proto", c->other_proto) || set_item_u64(d, "undecodable", c->undecodable) ||
        set_item_u64(d, "unknown_linktype", c->unknown_linktype) ||
        set_item_u64(d, "fragments", c->fragments) || set_item_u64(d, "syn", c->syn) ||
        set_item_u64(d, "tls_hello", c->tls_hello) || set_item_u64(d, "tls_done", c->tls_done) ||
        set_item_u64(d, "http_request", c->http_request) || set_item_u64(d, "http_done", c->http_done) ||
        set_item_u64(d, "unknown_dropped", c->unknown_dropped) ||
        set_item_u64(d, "done_dropped", c->done_dropped) ||
        set_item_u64(d, "server_dropped", c->server_dropped) ||
        set_item_u64(d, "syn_deferred", c->syn_deferred) || set_item_u64(d, "syn_released", c->syn_released) ||
        set_item_u64(d, "watch_overflow", c->watch_overflow) || set_item_u64(d, "fin", c->fin) ||
        set_item_u64(d, "watched_addresses", self->watched) ||
        set_item_u64(d, "watched_ranges", self->n_ranges) ||
        set_item_u64(d, "flows_new", c->flows_new) || set_item_u64(d, "flows_evicted", c->flows_evicted) ||
        set_item_u64(d, "flows_active", active) || set_item_u64(d, "max_flows", self->max_flows) ||
        set_item_u64(d, "table_bytes", (uint64_t)cap * sizeof(flow_entry)) ||
        set_item_u64(d, "syn_held", self->held) ||
        set_item_u64(d, "watch_bytes", self->watching ? (uint64_t)cap * (sizeof(syn_slot) + sizeof(uint32_t)) +
                                                            (uint64_t)WATCH_SLOTS * sizeof(addr128) +
                                                            (uint64_t)self->n_ranges * sizeof(addr_range)
                                                      : 0)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static int filter_ready(FlowFilterObject *self)
{
    if (self->table == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FlowFilter not initialised");
        return 0;
    }
    return 1;
}

/* admits(linktype, data, ts=0.0) -> bool: classify one frame (tests, odd callers). */
static PyObject *FlowFilter_admits(FlowFilterObject *self, PyObject *args)
{
    int linktype;
    Py_buffer data;
    double ts = 0.0;
    if (!PyArg_ParseTuple(args, "iy*|d:admits", &linktype, &data, &ts))
        return NULL;
    if (!filter_ready(self)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    int r = classify(self, linktype, (const uint8_t *)data.buf, (size_t)data.len, ts, 0);
    if (r)
        (void)hand_on_held_syn(self, NULL); /* a single-frame call has nowhere to put it */
    PyBuffer_Release(&data);
    return PyBool_FromLong(r);
}

/* filter_batch(linktype, packet_bytes, meta, first_frame) -> list[RawPacket]
 * for pcapy-ng's next_batch(): meta holds 16-byte native records (sec, usec, offset, caplen). */
static PyObject *FlowFilter_filter_batch(FlowFilterObject *self, PyObject *args)
{
    unsigned int linktype;
    Py_buffer pkts, meta;
    unsigned long long first_frame;
    if (!PyArg_ParseTuple(args, "Iy*y*K:filter_batch", &linktype, &pkts, &meta, &first_frame))
        return NULL;
    PyObject *out = NULL;
    if (!filter_ready(self) || ensure_packet_type() < 0)
        goto done;
    if (meta.len % 16 != 0) {
        PyErr_SetString(PyExc_ValueError, "meta length must be a multiple of 16");
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto done;
    const uint8_t *base = (const uint8_t *)pkts.buf;
    size_t total = (size_t)pkts.len;
    Py_ssize_t count = meta.len / 16;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t rec[4];
        memcpy(rec, (const uint8_t *)meta.buf + i * 16, 16);
        size_t off = rec[2], len = rec[3];
        if (off > total || len > total - off) {
            Py_CLEAR(out);
            PyErr_Format(PyExc_ValueError, "meta record %zd points outside packet_bytes", i);
            goto done;
        }
        double ts = (double)rec[0] + (double)rec[1] / 1e6;
        if (classify(self, (int)linktype, base + off, len, ts, first_frame + (uint64_t)i) &&
            (hand_on_held_syn(self, out) < 0 ||
             append_packet(out, first_frame + (uint64_t)i, ts, linktype, base + off, len) < 0)) {
            Py_CLEAR(out);
            goto done;
        }
    }
done:
    PyBuffer_Release(&pkts);
    PyBuffer_Release(&meta);
    return out;
}

static int addr_from_16(PyObject *obj, addr128 *out)
{
    char *buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(obj, &buf, &len) < 0)
        return -1;
    if (len != 16) {
        PyErr_SetString(PyExc_ValueError, "range bounds must be 16-byte addresses (IPv4 as ::ffff:a.b.c.d)");
        return -1;
    }
    out->hi = load_be64((const uint8_t *)buf);
    out->lo = load_be64((const uint8_t *)buf + 8);
    return 0;
}

static int range_order(const void *a, const void *b)
{
    return addr_cmp(((const addr_range *)a)->lo, ((const addr_range *)b)->lo);
}

static int start_watching(FlowFilterObject *self)
{
    if (self->watching)
        return 0;
    size_t cap = (size_t)self->nbuckets * BUCKET_SIZE;
    self->syn_slots = PyMem_Calloc(cap, sizeof(syn_slot));
    self->held_dst = PyMem_Calloc(cap, sizeof(uint32_t));
    self->watch_set = PyMem_Calloc(WATCH_SLOTS, sizeof(addr128));
    if (self->syn_slots == NULL || self->held_dst == NULL || self->watch_set == NULL) {
        free_watch(self);
        PyErr_NoMemory();
        return -1;
    }
    self->watching = 1;
    return 0;
}

/* watch(ranges): start deferring SYNs; ranges (lo, hi) of 16-byte addresses replace the old ones. */
static PyObject *FlowFilter_watch(FlowFilterObject *self, PyObject *arg)
{
    if (!filter_ready(self))
        return NULL;
    PyObject *seq = PySequence_Fast(arg, "ranges must be a sequence of (lo, hi) pairs");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    addr_range *ranges = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(addr_range));
    if (ranges == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "each range must be a (lo, hi) tuple");
            goto fail;
        }
        if (addr_from_16(PyTuple_GET_ITEM(pair, 0), &ranges[i].lo) < 0 ||
            addr_from_16(PyTuple_GET_ITEM(pair, 1), &ranges[i].hi) < 0)
            goto fail;
        if (addr_cmp(ranges[i].lo, ranges[i].hi) > 0) {
            PyErr_SetString(PyExc_ValueError, "a range's lo is above its hi");
            goto fail;
        }
    }
    Py_DECREF(seq);
    qsort(ranges, (size_t)n, sizeof(addr_range), range_order);
    size_t kept = 0; /* merge overlapping or nested ranges so a binary search finds the one */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kept > 0 && addr_cmp(ranges[i].lo, ranges[kept - 1].hi) <= 0) {
            if (addr_cmp(ranges[i].hi, ranges[kept - 1].hi) > 0)
                ranges[kept - 1].hi = ranges[i].hi;
        } else {
            ranges[kept++] = ranges[i];
        }
    }
    if (start_watching(self) < 0) {
        PyMem_Free(ranges);
        return NULL;
    }
    PyMem_Free(self->ranges);
    self->ranges = ranges;
    self->n_ranges = kept;
    Py_RETURN_NONE;
fail:
    Py_DECREF(seq);
    PyMem_Free(ranges);
    return NULL;
}

/* An address text as a 128-bit address (IPv4 mapped); 0 for a bad one or "::". */
static int parse_address(const char *text, addr128 *a)
{
    uint8_t raw[16];
    if (inet_pton(AF_INET, text, raw) == 1) {
        a->hi = 0;
        a->lo = 0x0000ffff00000000ULL | be32(raw);
    } else if (inet_pton(AF_INET6, text, raw) == 1) {
        a->hi = load_be64(raw);
        a->lo = load_be64(raw + 8);
    } else {
        return 0;
    }
    return a->hi != 0 || a->lo != 0;
}

/* release_held(address, after_frame) -> list[RawPacket]: the SYNs held for connections to `address`
 * with a frame number above after_frame, oldest first. The caller learnt mid-buffer (at after_frame)
 * that the address matters: the framer had already classified (and held back) SYNs to it later in
 * the same buffer. Cost: a backwards pass over the SYNs held since after_frame (at most RECENT_HELD). */
static PyObject *FlowFilter_release_held(FlowFilterObject *self, PyObject *args)
{
    if (!filter_ready(self) || ensure_packet_type() < 0)
        return NULL;
    const char *text;
    unsigned long long after_frame;
    if (!PyArg_ParseTuple(args, "sK:release_held", &text, &after_frame))
        return NULL;
    PyObject *out = PyList_New(0);
    addr128 a;
    if (out == NULL || self->held == 0 || !parse_address(text, &a))
        return out;
    uint32_t tag = held_tag(a);
    uint32_t back = self->recent_next < RECENT_HELD ? self->recent_next : RECENT_HELD;
    for (uint32_t k = 1; k <= back; k++) { /* newest first, down to after_frame */
        uint32_t r = (self->recent_next - k) % RECENT_HELD;
        uint64_t frame = self->recent_frame[r];
        if (frame <= after_frame) /* passed when the address did not matter yet */
            break;
        size_t i = self->recent[r];
        syn_slot *held = &self->syn_slots[i];
        if (self->held_dst[i] != tag || held->len == 0 || held->frame != frame)
            continue;
        flow_info fi;
        if (decode_frame((int)held->linktype, held->data, held->len, &fi) != D_FLOW)
            continue;
        addr128 dst = flow_dst(&fi);
        if (dst.hi != a.hi || dst.lo != a.lo)
            continue;
        if (append_packet(out, held->frame, held->ts, held->linktype, held->data, held->len) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        forget_held(self, i);
        self->c.syn_released++;
    }
    if (PyList_GET_SIZE(out) > 1 && PyList_Sort(out) < 0) { /* RawPacket tuples order by frame number */
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* watch_address(text) -> bool: SYNs to this address are admitted at once (False for a bad address). */
static PyObject *FlowFilter_watch_address(FlowFilterObject *self, PyObject *arg)
{
    if (!filter_ready(self))
        return NULL;
    const char *text = PyUnicode_AsUTF8(arg);
    if (text == NULL)
        return NULL;
    if (start_watching(self) < 0)
        return NULL;
    addr128 a;
    if (!parse_address(text, &a))
        Py_RETURN_FALSE;
    for (uint32_t i = watch_slot(a);; i = (i + 1) & (WATCH_SLOTS - 1)) {
        addr128 *w = &self->watch_set[i];
        if (w->hi == a.hi && w->lo == a.lo)
            Py_RETURN_TRUE;
        if (w->hi == 0 && w->lo == 0) {
            if (self->watched >= WATCH_MAX_ADDRESSES)
                Py_RETURN_TRUE; /* full: deferral has stopped, every SYN is admitted */
            *w = a;
            self->watched++;
            Py_RETURN_TRUE;
        }
    }
}

static PyMethodDef FlowFilter_methods[] = {
    {"watch", (PyCFunction)FlowFilter_watch, METH_O,
     "watch(ranges): defer SYNs to unwatched addresses until their flow sends data; ranges is a list of "
     "(lo, hi) 16-byte addresses (IPv4 as ::ffff:a.b.c.d) whose SYNs are admitted at once."},
    {"release_held", (PyCFunction)FlowFilter_release_held, METH_VARARGS,
     "release_held(address, after_frame) -> list[RawPacket]: the SYNs held back for connections to address "
     "with a frame number above after_frame, in frame order (call after watch_address when the address "
     "was learnt mid-buffer)."},
    {"watch_address", (PyCFunction)FlowFilter_watch_address, METH_O,
     "watch_address(address) -> bool: admit SYNs to this address at once (an address a banned name "
     "resolved to)."},
    {"stats", (PyCFunction)FlowFilter_stats, METH_NOARGS, "Counters as a dict."},
    {"admits", (PyCFunction)FlowFilter_admits, METH_VARARGS,
     "admits(linktype, data, ts=0.0) -> bool: classify one frame (updates the flow table)."},
    {"filter_batch", (PyCFunction)FlowFilter_filter_batch, METH_VARARGS,
     "filter_batch(linktype, packet_bytes, meta, first_frame) -> list[RawPacket]"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FlowFilterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "netwatch._fastpath.FlowFilter",
    .tp_basicsize = sizeof(FlowFilterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FlowFilter(max_flows=262144, head_packets=16, head_bytes=32768, idle_timeout=120.0, "
              "admit_all=False, smart=True, head_unknown_packets=4)\n\n"
              "Keeps the head of each directional TCP/UDP flow (bounded table, LRU per bucket), "
              "DNS/DHCP/mDNS/LLMNR, fragments and undecodable frames; drops the rest.\n"
              "smart=True narrows the TCP head by its first payload bytes: a ClientHello direction up to "
              "the hello's length, an HTTP request direction up to the end of each request head, nothing "
              "of a direction that starts another TLS record or an HTTP response, head_unknown_packets "
              "of an unrecognised one; TCP port 53 keeps the plain rule. smart=False: the plain "
              "head_packets/head_bytes rule for every TCP/UDP direction.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlowFilter_init,
    .tp_dealloc = (destructor)FlowFilter_dealloc,
    .tp_methods = FlowFilter_methods,
};

/* ------------------------------------------------------------------------ */
/* Framer: pcap and pcapng records from a buffer that Python refills          */
/* ------------------------------------------------------------------------ */

enum { FMT_UNKNOWN = 0, FMT_PCAP = 1, FMT_PCAPNG = 2 };

typedef struct {
    uint32_t linktype;
    uint32_t snaplen;
    uint64_t units;   /* timestamp units per second */
    int64_t tsoffset; /* seconds added to every timestamp */
} iface_t;

typedef struct {
    PyObject_HEAD
    int format;
    int started;  /* file header / first SHB seen */
    int big;      /* big-endian file or section */
    /* pcap */
    int nanosec;
    int modified; /* 0xa1b2cd34: 24-byte record headers */
    uint32_t snaplen;
    uint32_t linktype;
    /* pcapng */
    iface_t *ifaces;
    uint32_t n_ifaces, cap_ifaces;
    double last_ts;
    /* both */
    uint64_t frame;
    uint64_t next_record_size;
    uint32_t linktypes_seen[MAX_LINKTYPES_SEEN];
    int n_linktypes;
} FramerObject;

static void note_linktype(FramerObject *self, uint32_t lt)
{
    for (int i = 0; i < self->n_linktypes; i++)
        if (self->linktypes_seen[i] == lt)
            return;
    if (self->n_linktypes < MAX_LINKTYPES_SEEN)
        self->linktypes_seen[self->n_linktypes++] = lt;
}

static double ts_from_units(uint64_t t, uint64_t units, int64_t offset)
{
    return (double)(t / units) + (double)(t % units) / (double)units + (double)offset;
}

static int Framer_init(FramerObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Framer", kwlist))
        return -1;
    PyMem_Free(self->ifaces);
    self->ifaces = NULL;
    self->n_ifaces = self->cap_ifaces = 0;
    self->format = FMT_UNKNOWN;
    self->started = 0;
    self->big = 0;
    self->frame = 0;
    self->last_ts = 0.0;
    self->next_record_size = 0;
    self->n_linktypes = 0;
    return 0;
}

static void Framer_dealloc(FramerObject *self)
{
    PyMem_Free(self->ifaces);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Error reporting inside feed(): message plus offset relative to the buffer start. */
typedef struct {
    size_t offset;
    char msg[160];
    int set;
} frame_error;

#define FAIL(at, ...)                                                                                        \
    do {                                                                                                     \
        err->offset = (at);                                                                                  \
        PyOS_snprintf(err->msg, sizeof err->msg, __VA_ARGS__);                                               \
        err->set = 1;                                                                                        \
        goto stop;                                                                                           \
    } while (0)

/* One admitted-or-not frame: classify, then append. -1 on Python error. */
static int deliver(FramerObject *self, FlowFilterObject *filter, PyObject *list, uint32_t linktype, double ts,
                   const uint8_t *data, size_t len)
{
    self->frame++;
    if (filter != NULL) {
        if (!classify(filter, (int)linktype, data, len, ts, self->frame))
            return 0;
        if (hand_on_held_syn(filter, list) < 0)
            return -1;
    }
    return append_packet(list, self->frame, ts, linktype, data, len);
}

static int pcap_header(FramerObject *self, const uint8_t *p)
{
    uint32_t magic_le = le32(p);
    switch (magic_le) {
    case 0xa1b2c3d4: self->big = 0; self->nanosec = 0; self->modified = 0; break;
    case 0xd4c3b2a1: self->big = 1; self->nanosec = 0; self->modified = 0; break;
    case 0xa1b23c4d: self->big = 0; self->nanosec = 1; self->modified = 0; break;
    case 0x4d3cb2a1: self->big = 1; self->nanosec = 1; self->modified = 0; break;
    case 0xa1b2cd34: self->big = 0; self->nanosec = 0; self->modified = 1; break;
    case 0x34cdb2a1: self->big = 1; self->nanosec = 0; self->modified = 1; break;
    default:
        return -1;
    }
    self->snaplen = rd32(p + 16, self->big);
    /* LinkType field: low 16 bits are the link type, the top bits carry FCS information */
    self->linktype = rd32(p + 20, self->big) & 0xffff;
    note_linktype(self, self->linktype);
    return 0;
}

static Py_ssize_t feed_pcap(FramerObject *self, const uint8_t *p, size_t n, FlowFilterObject *filter,
                            PyObject *list, uint64_t *frames, frame_error *err)
{
    size_t off = 0;
    if (!self->started) {
        if (n < 24)
            return 0;
        if (pcap_header(self, p) < 0)
            FAIL(0, "not a pcap file header");
        self->started = 1;
        off = 24;
    }
    size_t hdr = self->modified ? 24 : 16;
    uint32_t bound = self->snaplen > MIN_CAPLEN_BOUND ? self->snaplen : MIN_CAPLEN_BOUND;
    if (bound > MAX_BLOCK_BYTES)
        bound = MAX_BLOCK_BYTES;
    for (;;) {
        if (n - off < hdr) {
            self->next_record_size = hdr;
            break;
        }
        const uint8_t *r = p + off;
        uint32_t caplen = rd32(r + 8, self->big);
        if (caplen > bound)
            FAIL(off, "record length %u exceeds the bound %u", (unsigned)caplen, (unsigned)bound);
        if (n - off - hdr < caplen) {
            self->next_record_size = hdr + caplen;
            break;
        }
        uint32_t sec = rd32(r, self->big), frac = rd32(r + 4, self->big);
        double ts = (double)sec + (double)frac / (self->nanosec ? 1e9 : 1e6);
        (*frames)++;
        if (deliver(self, filter, list, self->linktype, ts, r + hdr, caplen) < 0)
            return -1;
        off += hdr + caplen;
    }
    return (Py_ssize_t)off;
stop:
    return (Py_ssize_t)err->offset;
}

static uint64_t pow_u64(uint64_t base, unsigned exp)
{
    uint64_t v = 1;
    while (exp--)
        v *= base;
    return v;
}

/* Parse an Interface Description Block body (without type/length/trailer). */
static const char *parse_idb(FramerObject *self, const uint8_t *b, size_t len)
{
    if (len < 8)
        return "interface description block too short";
    if (self->n_ifaces >= MAX_INTERFACES)
        return "too many interfaces";
    iface_t ifc;
    ifc.linktype = rd16(b, self->big);
    ifc.snaplen = rd32(b + 4, self->big);
    ifc.units = 1000000;
    ifc.tsoffset = 0;
    size_t o = 8;
    while (len - o >= 4) {
        uint16_t code = rd16(b + o, self->big), olen = rd16(b + o + 2, self->big);
        o += 4;
        if (code == 0 || olen > len - o) /* opt_endofopt, or an option running past the block */
            break;
        if (code == 9 && olen >= 1) { /* if_tsresol */
            uint8_t v = b[o];
            if (v & 0x80) {
                if ((v & 0x7f) > 63)
                    return "unsupported if_tsresol";
                ifc.units = (uint64_t)1 << (v & 0x7f);
            } else {
                if (v > 19)
                    return "unsupported if_tsresol";
                ifc.units = pow_u64(10, v);
            }
        } else if (code == 14 && olen >= 8) { /* if_tsoffset */
            ifc.tsoffset = (int64_t)rd64(b + o, self->big);
        }
        size_t padded = ((size_t)olen + 3) & ~(size_t)3;
        if (padded > len - o)
            break;
        o += padded;
    }
    if (self->n_ifaces == self->cap_ifaces) {
        uint32_t cap = self->cap_ifaces ? self->cap_ifaces * 2 : 4;
        iface_t *grown = PyMem_Realloc(self->ifaces, (size_t)cap * sizeof(iface_t));
        if (grown == NULL)
            return "out of memory for interfaces";
        self->ifaces = grown;
        self->cap_ifaces = cap;
    }
    self->ifaces[self->n_ifaces++] = ifc;
    note_linktype(self, ifc.linktype);
    return NULL;
}

static Py_ssize_t feed_pcapng(FramerObject *self, const uint8_t *p, size_t n, FlowFilterObject *filter,
                              PyObject *list, uint64_t *frames, frame_error *err)
{
    size_t off = 0;
    for (;;) {
        if (n - off < 12) {
            self->next_record_size = 12;
            break;
        }
        const uint8_t *blk = p + off;
        uint32_t type = rd32(blk, self->big);
        if (type == 0x0A0D0D0A) { /* SHB: palindromic type; the byte-order magic decides the order */
            uint32_t bom = le32(blk + 8);
            if (bom == 0x1A2B3C4D)
                self->big = 0;
            else if (bom == 0x4D3C2B1A)
                self->big = 1;
            else
                FAIL(off, "bad section byte-order magic");
        } else if (!self->started) {
            FAIL(off, "file does not start with a section header block");
        }
        uint32_t blen = rd32(blk + 4, self->big);
        if (blen < 12 || blen % 4 != 0 || blen > MAX_BLOCK_BYTES)
            FAIL(off, "bad block length %u", (unsigned)blen);
        if (n - off < blen) {
            self->next_record_size = blen;
            break;
        }
        if (rd32(blk + blen - 4, self->big) != blen)
            FAIL(off, "block trailer length differs from header length %u", (unsigned)blen);
        const uint8_t *body = blk + 8;
        size_t blen_body = blen - 12;
        switch (type) {
        case 0x0A0D0D0A: {
            if (blen_body < 16)
                FAIL(off, "section header block too short");
            if (rd16(body + 4, self->big) != 1)
                FAIL(off, "unsupported pcapng major version %u", (unsigned)rd16(body + 4, self->big));
            self->started = 1;
            self->n_ifaces = 0; /* a new section starts a new interface list */
            break;
        }
        case 1: {
            const char *why = parse_idb(self, body, blen_body);
            if (why != NULL)
                FAIL(off, "%s", why);
            break;
        }
        case 6:   /* Enhanced Packet Block */
        case 2: { /* obsolete Packet Block: the same layout with a 16-bit interface id */
            if (blen_body < 20)
                FAIL(off, "packet block too short");
            uint32_t ifid = type == 6 ? rd32(body, self->big) : rd16(body, self->big);
            if (ifid >= self->n_ifaces)
                FAIL(off, "packet for undefined interface %u", (unsigned)ifid);
            const iface_t *ifc = &self->ifaces[ifid];
            uint64_t t = ((uint64_t)rd32(body + 4, self->big) << 32) | rd32(body + 8, self->big);
            uint32_t caplen = rd32(body + 12, self->big);
            if (caplen > blen_body - 20)
                FAIL(off, "captured length %u exceeds its block", (unsigned)caplen);
            double ts = ts_from_units(t, ifc->units, ifc->tsoffset);
            self->last_ts = ts;
            (*frames)++;
            if (deliver(self, filter, list, ifc->linktype, ts, body + 20, caplen) < 0)
                return -1;
            break;
        }
        case 3: { /* Simple Packet Block: interface 0, no timestamp */
            if (blen_body < 4)
                FAIL(off, "simple packet block too short");
            if (self->n_ifaces == 0)
                FAIL(off, "simple packet block without an interface");
            const iface_t *ifc = &self->ifaces[0];
            size_t caplen = rd32(body, self->big); /* original length */
            if (caplen > blen_body - 4)
                caplen = blen_body - 4;
            if (ifc->snaplen != 0 && caplen > ifc->snaplen)
                caplen = ifc->snaplen;
            (*frames)++;
            if (deliver(self, filter, list, ifc->linktype, self->last_ts, body + 4, caplen) < 0)
                return -1;
            break;
        }
        default: /* name resolution, statistics, decryption secrets, custom: not ours */
            break;
        }
        off += blen;
    }
    return (Py_ssize_t)off;
stop:
    return (Py_ssize_t)err->offset;
}

/* feed(buffer, flow_filter=None) -> (consumed, frames_seen, admitted, error)
 * error is None or (offset_in_buffer, message): the caller stops reading that file. */
static PyObject *Framer_feed(FramerObject *self, PyObject *args)
{
    Py_buffer buf;
    PyObject *filter_obj = Py_None;
    if (!PyArg_ParseTuple(args, "y*|O:feed", &buf, &filter_obj))
        return NULL;
    FlowFilterObject *filter = NULL;
    PyObject *result = NULL, *list = NULL;
    if (filter_obj != Py_None) {
        if (!PyObject_TypeCheck(filter_obj, &FlowFilterType)) {
            PyErr_SetString(PyExc_TypeError, "flow_filter must be a FlowFilter or None");
            goto done;
        }
        filter = (FlowFilterObject *)filter_obj;
        if (!filter_ready(filter))
            goto done;
    }
    if (ensure_packet_type() < 0)
        goto done;
    list = PyList_New(0);
    if (list == NULL)
        goto done;
    const uint8_t *p = (const uint8_t *)buf.buf;
    size_t n = (size_t)buf.len;
    if (self->format == FMT_UNKNOWN) {
        if (n < 4) {
            result = Py_BuildValue("(nKOO)", (Py_ssize_t)0, 0ULL, list, Py_None);
            goto done;
        }
        self->format = le32(p) == 0x0A0D0D0A ? FMT_PCAPNG : FMT_PCAP;
    }
    frame_error err = {0, {0}, 0};
    uint64_t frames = 0;
    self->next_record_size = 0;
    Py_ssize_t consumed = self->format == FMT_PCAPNG ? feed_pcapng(self, p, n, filter, list, &frames, &err)
                                                     : feed_pcap(self, p, n, filter, list, &frames, &err);
    if (consumed < 0)
        goto done;
    if (err.set)
        result = Py_BuildValue("(nKO(ns))", consumed, (unsigned long long)frames, list, (Py_ssize_t)err.offset,
                               err.msg);
    else
        result = Py_BuildValue("(nKOO)", consumed, (unsigned long long)frames, list, Py_None);
done:
    Py_XDECREF(list);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *Framer_get_format(FramerObject *self, void *closure)
{
    switch (self->format) {
    case FMT_PCAP:
        return PyUnicode_FromString("pcap");
    case FMT_PCAPNG:
        return PyUnicode_FromString("pcapng");
    default:
        Py_RETURN_NONE;
    }
}

static PyObject *Framer_get_linktypes(FramerObject *self, void *closure)
{
    PyObject *t = PyTuple_New(self->n_linktypes);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < self->n_linktypes; i++) {
        PyObject *v = PyLong_FromUnsignedLong(self->linktypes_seen[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *Framer_get_frames(FramerObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->frame);
}

static PyObject *Framer_get_next_record_size(FramerObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->next_record_size);
}

static PyGetSetDef Framer_getset[] = {
    {"format", (getter)Framer_get_format, NULL, "'pcap', 'pcapng' or None before the first feed", NULL},
    {"linktypes", (getter)Framer_get_linktypes, NULL, "link types seen so far, in order of appearance", NULL},
    {"frames", (getter)Framer_get_frames, NULL, "frames framed so far (the last frame number)", NULL},
    {"next_record_size", (getter)Framer_get_next_record_size, NULL,
     "bytes the incomplete record at the end of the last feed needs (0 if none)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Framer_methods[] = {
    {"feed", (PyCFunction)Framer_feed, METH_VARARGS,
     "feed(buffer, flow_filter=None) -> (consumed, frames_seen, admitted, error)\n\n"
     "Frames the complete records in buffer; an incomplete trailing record is left unconsumed. error is "
     "None or (offset relative to the buffer start, message) for a corrupt record."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FramerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "netwatch._fastpath.Framer",
    .tp_basicsize = sizeof(FramerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Framer(): stateful pcap/pcapng record parser over buffers that the caller refills.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Framer_init,
    .tp_dealloc = (destructor)Framer_dealloc,
    .tp_methods = Framer_methods,
    .tp_getset = Framer_getset,
};

/* ------------------------------------------------------------------------ */
/* Module                                                                     */
/* ------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"set_packet_type", (PyCFunction)set_packet_type, METH_O,
     "set_packet_type(cls): the NamedTuple class built for admitted packets (default netwatch.model.RawPacket)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "netwatch._fastpath",
    "pcap/pcapng framing and the flow-head classifier of netwatch, in C.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&FlowFilterType) < 0 || PyType_Ready(&FramerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FlowFilterType);
    if (PyModule_AddObject(m, "FlowFilter", (PyObject *)&FlowFilterType) < 0) {
        Py_DECREF(&FlowFilterType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FramerType);
    if (PyModule_AddObject(m, "Framer", (PyObject *)&FramerType) < 0) {
        Py_DECREF(&FramerType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "MAX_RECORD_BYTES", MAX_BLOCK_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET_BYTES", MAX_PACKET_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_TUNNEL_DEPTH", MAX_TUNNEL_DEPTH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
