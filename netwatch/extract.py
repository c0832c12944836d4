"""Protocol extraction: decoded segments in, observations out.

This is the dispatcher between the decode layer and the protocol parsers. It owns the per-flow
state that the stateless parsers must not hold: TCP stream heads, QUIC CRYPTO reassembly, which
DNS-over-TCP messages were already read, and which connections are still waiting for a name.
Protocols are recognised by their bytes, not their ports, so they are found on any port.

Besides the evidence kinds of the event schema it emits two internal observations that the
detector turns into evidence: `conn_start` (a new TCP connection or UDP flow, for address
rules) and `conn_unnamed` (a connection that ended up with no name of its own, for
`resolved_ip`), and `dns_answer` (addresses a DNS response resolved a name to).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from netwatch.decode.tcpstream import StreamHead, StreamHeads
from netwatch.model import (
    EVIDENCE_DHCP_HOSTNAME,
    EVIDENCE_DNS_QUERY,
    EVIDENCE_HTTP_HOST,
    EVIDENCE_PROXY_CONNECT,
    EVIDENCE_QUIC_SNI,
    EVIDENCE_TLS_SNI,
    Observation,
    Segment,
)
from netwatch.protocols import dhcp, dns, gquic, http, prologue, quic, tls
from netwatch.protocols.common import Status

OBS_CONN_START = "conn_start"
OBS_CONN_UNNAMED = "conn_unnamed"
OBS_DNS_ANSWER = "dns_answer"

# Ports where DNS, mDNS and LLMNR are parsed leniently; elsewhere a payload must parse as a
# complete, well-formed message to count as DNS.
DNS_PORTS = frozenset({53, 5353, 5355})
# NetBIOS name service (RFC 1002 section 4.2) is DNS-shaped but its names are NetBIOS names in the
# "first-level encoding" (each nibble a letter: EBEC... for "AB"), not host names: not DNS evidence.
NETBIOS_NAME_PORT = 137
# Only QUERY messages ask for a name; in NOTIFY (RFC 1996) and UPDATE (RFC 2136) the question
# section holds the zone the message is about.
_OPCODE_QUERY = 0
DHCP_PORTS = frozenset({67, 68})
# Requests read on one kept-alive HTTP connection (each new Host among them is evidence); all of
# them lie within the stream head (64 KiB by default, StreamHeads.head_limit).
MAX_HTTP_REQUESTS = 16
_TCP_SYN, _TCP_ACK = 0x02, 0x10
# What the first datagram of a UDP flow (on a port that is not DNS's or DHCP's) turned out to be.
_UDP_QUIC, _UDP_DNS, _UDP_OTHER = "quic", "dns", "other"
_QTYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
                33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}


def qtype_name(qtype: int) -> str:
    return _QTYPE_NAMES.get(qtype, f"TYPE{qtype}")


@dataclass(slots=True)
class ExtractCounters:
    """What the extractors saw; `malformed` counts payloads that started like a protocol but broke."""

    segments: int = 0
    dns_messages: int = 0
    tls_client_hellos: int = 0
    quic_initials: int = 0
    http_requests: int = 0
    dhcp_messages: int = 0
    malformed: int = 0
    malformed_by_protocol: dict[str, int] = field(default_factory=dict)

    def count_malformed(self, protocol: str) -> None:
        self.malformed += 1
        self.malformed_by_protocol[protocol] = self.malformed_by_protocol.get(protocol, 0) + 1


@dataclass(slots=True)
class _StreamState:
    """What a TCP direction has yielded so far."""

    dns_messages_read: int = 0
    # Where the next message starts: a ClientHello after an HTTP CONNECT, a SOCKS request or a
    # STARTTLS command; the next request on a kept-alive HTTP connection.
    tls_offset: int = 0
    tls_needed: int = 0  # stream bytes the ClientHello needs, once its length is known
    named: bool = False
    http_next: bool = False  # an HTTP request may start at tls_offset (keep-alive, inside a SOCKS tunnel)
    http_requests: int = 0
    http_hosts: list[str] = field(default_factory=list)  # hosts already reported on this stream


class _Bounded(OrderedDict):
    """An insertion-ordered dict that forgets its oldest entries beyond `limit`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.limit:
            self.popitem(last=False)


class Extractor:
    """Turns segments into observations; all flow state here is bounded."""

    def __init__(self, *, max_flows: int = 65536, pending_timeout: float = 30.0,
                 wants_answers: Callable[[str], bool] | None = None,
                 interesting_address: Callable[[str], bool] | None = None) -> None:
        self.streams = StreamHeads(max_streams=max_flows)
        # The assembler keeps a hello's pieces past the time-out at which a cut hello is read.
        self.quic = quic.QuicInitialAssembler(timeout=2 * pending_timeout + 1)
        self.counters = ExtractCounters()
        self._stream_state: _Bounded = _Bounded(max_flows)
        self._udp_flows: _Bounded = _Bounded(max_flows)  # UDP flow key -> what its first datagram was
        # connections with no name yet: flow key -> the segment that opened them
        self._pending: _Bounded = _Bounded(max_flows)
        # TLS streams stuck before the end of their ClientHello (a lost segment), with the SNI already read
        self._partial_hellos: _Bounded = _Bounded(max_flows)
        # QUIC flows whose hello is not complete yet: flow key -> the datagram that opened them
        self._quic_waiting: _Bounded = _Bounded(max_flows)
        self._pending_timeout = pending_timeout
        # Reading a DNS response's answers only pays off for names the detector cares about.
        self._wants_answers = wants_answers or (lambda name: True)
        # Connection-level evidence (address rules, resolved_ip) only exists for some destinations.
        self._interesting_address = interesting_address or (lambda address: True)
        self._last_sweep = 0.0

    # -- entry points -------------------------------------------------------------------------

    def segment(self, seg: Segment) -> list[Observation]:
        self.counters.segments += 1
        out: list[Observation] = []
        if seg.transport == "udp":
            self._udp(seg, out)
        else:
            self._tcp(seg, out)
        if seg.ts - self._last_sweep > self._pending_timeout:
            self._sweep(seg.ts, out)
        return out

    def flush(self) -> list[Observation]:
        """End of input: hellos that never completed still name their server; other connections get none."""
        out: list[Observation] = []
        for key, (seg, hello, start) in list(self._partial_hellos.items()):
            if not hello.sni:
                hello = self._hello_across_gaps(key, start) or hello
            if hello.sni:
                self.counters.count_malformed("tls")
                self._client_hello(seg, hello, EVIDENCE_TLS_SNI, "tls", key, out, partial=True)
        self._partial_hellos.clear()
        for key, opener in list(self._quic_waiting.items()):
            self._settle_quic(key, opener, out)
        self._quic_waiting.clear()
        for opener in self._pending.values():
            out.append(_observe(opener, OBS_CONN_UNNAMED, None, opener.transport))
        self._pending.clear()
        return out

    def _hello_across_gaps(self, key: tuple, start: int) -> tls.ClientHello | None:
        """A TLS hello with a lost segment: walk the bytes on both sides of the hole.

        Only a hello inside one TLS record is walked (the usual case): the record header, before the
        hole, then maps stream offsets to offsets in the handshake message.
        """
        pieces = self.streams.pieces(key)
        if len(pieces) < 2:
            return None
        prefix = pieces[0][1][start:]
        if len(prefix) < 9 or prefix[0] != 0x16:
            return None
        record_end = start + 5 + int.from_bytes(prefix[3:5], "big")
        message_start = start + 5
        if message_start + 4 + int.from_bytes(prefix[6:9], "big") > record_end:
            return None  # the hello spans records: their headers may lie in the hole
        message = [(0, prefix[5:])]
        for offset, data in pieces[1:]:
            data = data[: max(0, record_end - offset)]
            if data and offset >= message_start:
                message.append((offset - message_start, data))
        return tls.parse_client_hello_pieces(message, transport="t")

    def _settle_quic(self, key: tuple, opener: Segment, out: list[Observation]) -> None:
        """A QUIC hello that never completed (a lost Initial) still names its server if the SNI arrived whole."""
        hello = self.quic.partial(key)
        if hello is not None and hello.sni:
            self._client_hello(opener, hello, EVIDENCE_QUIC_SNI, "quic", key, out, partial=True)

    # -- UDP ----------------------------------------------------------------------------------

    def _udp(self, seg: Segment, out: list[Observation]) -> None:
        payload = seg.payload
        sport, dport = seg.src_port, seg.dst_port
        if sport in DHCP_PORTS and dport in DHCP_PORTS:
            self._dhcp(seg, out)
            return
        if sport == NETBIOS_NAME_PORT or dport == NETBIOS_NAME_PORT:
            return
        if sport in DNS_PORTS or dport in DNS_PORTS:
            message = dns.parse_message(payload, answers=False)
            if message is not None:
                if message.is_response and message.questions and self._wants_answers(message.questions[0].name):
                    message = dns.parse_message(payload) or message
                self._dns(seg, message, out)
                return
            if not quic.looks_like_initial(payload):
                self.counters.count_malformed("dns")
                return
        key = (seg.src_ip, sport, seg.dst_ip, dport)
        kind = self._udp_flows.get(key)
        if kind is _UDP_OTHER:
            return  # the flow's first datagram was neither QUIC nor DNS: the rest is bulk to us
        first_packet = kind is None
        if quic.looks_like_initial(payload):
            self.counters.quic_initials += 1
            if first_packet or key not in self._quic_waiting:
                self._quic_flow(seg, key, first_packet, out)
            hello = self.quic.add(key, payload, seg.ts)
            if hello is not None:
                self._quic_waiting.pop(key, None)
                self._client_hello(seg, hello, EVIDENCE_QUIC_SNI, "quic", key, out)
            return
        if kind is _UDP_QUIC:
            # Short-header QUIC packets carry nothing for us, but port 443 also carries DNS (DNSCrypt):
            # a datagram that is a whole, well-formed DNS message is read as one.
            if (message := dns.parse_message(payload, strict=True)) is not None:
                self._dns(seg, message, out)
            return
        if first_packet and gquic.gquic_version(payload):
            hello = gquic.parse_client_hello(payload)
            if hello is not None:
                self._udp_flows.put(key, _UDP_QUIC)
                self.counters.quic_initials += 1
                if self._interesting_address(seg.dst_ip):
                    out.append(_observe(seg, OBS_CONN_START, None, "quic"))
                    self._pending.put(key, seg)
                self._client_hello(seg, hello, EVIDENCE_QUIC_SNI, "quic", key, out,
                                   partial=hello.status is not Status.OK)
                return
        message = dns.parse_message(payload, strict=True)
        if message is not None:
            self._udp_flows.put(key, _UDP_DNS)
            self._dns(seg, message, out)
            return
        if first_packet and quic.looks_like_long_header(payload):
            # 0-RTT (or Handshake) before the Initial, or the Initial was lost: still QUIC.
            self._quic_flow(seg, key, True, out)
            return
        if first_packet:
            self._udp_flows.put(key, _UDP_OTHER)
            if self._interesting_address(seg.dst_ip):
                out.append(_observe(seg, OBS_CONN_START, None, "udp"))
                out.append(_observe(seg, OBS_CONN_UNNAMED, None, "udp"))

    def _quic_flow(self, seg: Segment, key: tuple, first_packet: bool, out: list[Observation]) -> None:
        """A new QUIC flow: it waits for its hello (a hello cut short is still read at the time-out)."""
        self._udp_flows.put(key, _UDP_QUIC)
        self._quic_waiting.put(key, seg)
        if first_packet and self._interesting_address(seg.dst_ip):
            out.append(_observe(seg, OBS_CONN_START, None, "quic"))
            self._pending.put(key, seg)

    def _dns(self, seg: Segment, message: dns.DnsMessage, out: list[Observation]) -> None:
        self.counters.dns_messages += 1
        if message.malformed:
            self.counters.count_malformed("dns")
        if not message.is_response:
            if message.opcode != _OPCODE_QUERY:
                return
            for question in message.questions:
                obs = _observe(seg, EVIDENCE_DNS_QUERY, question.name, "dns")
                obs.detail["qtype"] = qtype_name(question.qtype)
                out.append(obs)
            return
        if message.rcode != 0 or not message.questions:
            return
        addresses = [a.value for a in message.answers if a.rtype in (1, 28)]
        if addresses:
            obs = _observe(seg, OBS_DNS_ANSWER, message.questions[0].name, "dns")
            obs.detail["addresses"] = addresses
            obs.detail["cnames"] = [a.value for a in message.answers if a.rtype == 5]
            out.append(obs)

    def _dhcp(self, seg: Segment, out: list[Observation]) -> None:
        info = dhcp.parse_dhcp(seg.payload)
        if info is None:
            self.counters.count_malformed("dhcp")
            return
        self.counters.dhcp_messages += 1
        if info.op != 1 or not info.client_mac:  # only client messages name the client
            return
        obs = _observe(seg, EVIDENCE_DHCP_HOSTNAME, info.hostname, "dhcp")
        obs.src_mac = info.client_mac
        obs.detail.update(
            vendor_class=info.vendor_class,
            requested_ip=info.requested_ip,
            client_ip=info.ciaddr if info.ciaddr and info.ciaddr != "0.0.0.0" else None,
            msg_type=info.msg_type,
            fqdn=info.fqdn,
        )
        out.append(obs)

    # -- TCP ----------------------------------------------------------------------------------

    def _tcp(self, seg: Segment, out: list[Observation]) -> None:
        key = (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)
        if seg.tcp_flags & (_TCP_SYN | _TCP_ACK) == _TCP_SYN:
            self._stream_state.pop(key, None)
            if self._interesting_address(seg.dst_ip):
                out.append(_observe(seg, OBS_CONN_START, None, "tcp"))
                self._pending.put(key, seg)
        head = self.streams.add(seg)
        if head is None:
            return
        state = self._stream_state.get(key)
        if state is None:
            state = _StreamState()
            self._stream_state.put(key, state)
        self._parse_head(seg, head, state, out)

    def _parse_head(self, seg: Segment, head: StreamHead, state: _StreamState, out: list[Observation]) -> None:
        data = head.data
        key = head.key
        dns_port = bool(state.dns_messages_read) or seg.dst_port in DNS_PORTS or seg.src_port in DNS_PORTS
        if dns_port and self._dns_over_tcp(seg, data, state, out, strict=False):
            return
        start = state.tls_offset
        first = data[start] if len(data) > start else -1
        if first == 0x16:
            if len(data) > start + 5 and data[start + 5] != 1:
                self._finish(key, seg, out, named=False)  # a server's handshake, not a ClientHello
                return
            if state.tls_needed and len(data) - start < state.tls_needed and not head.complete:
                return  # the hello is still incomplete: do not re-parse it for every segment
            hello = tls.parse_client_hello_stream(data[start:] if start else data)
            if hello.status is Status.NEED_MORE and not head.complete:
                state.tls_needed = hello.needed
                self._partial_hellos.put(key, (seg, hello, start))
                return
            self._partial_hellos.pop(key, None)
            if hello.status is Status.OK:
                self.counters.tls_client_hellos += 1
                self._client_hello(seg, hello, EVIDENCE_TLS_SNI, "tls", key, out)
                self.streams.finish(key)
                return
            if hello.status is Status.INVALID or hello.status is Status.NEED_MORE:
                self.counters.count_malformed("tls")
                if hello.sni:  # a damaged or cut hello still names its server
                    self._client_hello(seg, hello, EVIDENCE_TLS_SNI, "tls", key, out, partial=True)
                    self.streams.finish(key)
                    return
            self._finish(key, seg, out, named=False)
            return
        if start == 0 or state.http_next:
            request = http.parse_request_head(data[start:] if start else data)
            if request.status is Status.NEED_MORE and not head.complete:
                return
            if request.status is Status.OK:
                self.counters.http_requests += 1
                self._http(seg, request, head, state, out)
                return
            if request.status is Status.INVALID and start == 0:
                self.counters.count_malformed("http")
        if start == 0:
            found = prologue.parse_prologue(data)
            if found.status is Status.NEED_MORE and not head.complete:
                return
            if found.status is Status.OK:
                self._prologue(seg, found, head, state, out)
                return
            if not dns_port and self._dns_over_tcp(seg, data, state, out, strict=True):
                return
        self._finish(key, seg, out, named=False)

    def _prologue(self, seg: Segment, found: prologue.Prologue, head: StreamHead, state: _StreamState,
                  out: list[Observation]) -> None:
        """A SOCKS request or a TLS upgrade command: what follows it is read as the stream's start."""
        if found.host is not None:  # SOCKS names the destination in clear
            obs = _observe(seg, EVIDENCE_PROXY_CONNECT, found.host, "socks")
            obs.detail.update(proxy=found.kind, port=found.port)
            if found.is_address:
                obs.detail["address"] = True
            out.append(obs)
            state.http_next = True  # the tunnel may carry a plain HTTP request as well as TLS
            if not found.is_address:
                state.named = True
                self._pending.pop(head.key, None)
        state.tls_offset = found.end
        if len(head.data) > found.end:
            self._parse_head(seg, head, state, out)

    def _http(self, seg: Segment, request: http.HttpRequestResult, head: StreamHead, state: _StreamState,
              out: list[Observation]) -> None:
        key, data = head.key, head.data
        start = state.tls_offset
        state.http_requests += 1
        if request.host and request.host not in state.http_hosts:
            obs = _observe(seg, EVIDENCE_HTTP_HOST, request.host, "http")
            obs.detail.update(method=request.method, host_source=request.host_source, port=request.port)
            if request.user_agent:
                obs.detail["user_agent"] = request.user_agent
            if state.http_requests > 1:
                obs.detail["request"] = state.http_requests  # a later request on a kept-alive connection
            out.append(obs)
            state.http_hosts.append(request.host)
            state.named = True
            self._pending.pop(key, None)
        if request.method == "CONNECT":
            # Through an explicit proxy the TLS ClientHello follows the CONNECT request in the same stream.
            state.tls_offset = start + (request.head_length or len(data))
            state.http_next = False
            if len(data) > state.tls_offset:
                self._parse_head(seg, head, state, out)
            return
        next_start = start + request.head_length + (request.content_length or 0)
        if (not request.complete or request.chunked or state.http_requests >= MAX_HTTP_REQUESTS
                or next_start >= self.streams.head_limit):
            self.streams.finish(key)
            return
        # Keep-alive: the next request head starts after this one's body.
        state.tls_offset = next_start
        state.http_next = True
        if len(data) > state.tls_offset:
            self._parse_head(seg, head, state, out)

    def _dns_over_tcp(self, seg: Segment, data: bytes, state: _StreamState, out: list[Observation],
                      *, strict: bool) -> bool:
        """DNS over TCP (RFC 1035 4.2.2, RFC 7766): True while this stream is, or may still become, DNS."""
        messages, _ = dns.split_tcp_messages(data)
        parsed_any = False
        for wire in messages[state.dns_messages_read:]:
            message = dns.parse_message(wire, strict=strict)
            if message is None:
                if strict and not state.dns_messages_read:
                    return False
                state.dns_messages_read += 1
                self.counters.count_malformed("dns")
                continue
            state.dns_messages_read += 1
            parsed_any = True
            self._dns(seg, message, out)
        if parsed_any or state.dns_messages_read:
            self._pending.pop(head_key(seg), None)
            return True
        if len(data) < 2:
            return True
        # The first message is still incomplete: wait for it only if its length is plausible.
        declared = int.from_bytes(data[:2], "big")
        return 17 <= declared <= (65535 if not strict else 4096)

    def _client_hello(self, seg: Segment, hello: tls.ClientHello, evidence: str, protocol: str,
                      key: tuple, out: list[Observation], *, partial: bool = False) -> None:
        if hello.sni:
            obs = _observe(seg, evidence, hello.sni, protocol)
            obs.ech = hello.ech
            if hello.alpn:
                obs.detail["alpn"] = list(hello.alpn)
            if hello.ja4:
                obs.detail["ja4"] = hello.ja4
            if partial:
                obs.detail["partial"] = True
            out.append(obs)
        if hello.sni:
            # A name of its own is in the stream (with ECH, the cover name): no resolved_ip for it.
            self._pending.pop(key, None)
        else:
            self._finish(key, seg, out, named=False)

    def _finish(self, key: tuple, seg: Segment, out: list[Observation], *, named: bool) -> None:
        """This direction yields no (more) names; a connection still waiting for one gets none."""
        self.streams.finish(key)
        opener = self._pending.pop(key, None)
        if opener is not None and not named:
            out.append(_observe(opener, OBS_CONN_UNNAMED, None, seg.transport))

    def _sweep(self, now: float, out: list[Observation]) -> None:
        """Connections that stayed silent past the time-out get no name of their own."""
        self._last_sweep = now
        while self._quic_waiting:
            key, opener = next(iter(self._quic_waiting.items()))
            if now - opener.ts < self._pending_timeout:
                break
            del self._quic_waiting[key]
            self._settle_quic(key, opener, out)
        while self._pending:
            key, opener = next(iter(self._pending.items()))
            if now - opener.ts < self._pending_timeout:
                break
            del self._pending[key]
            out.append(_observe(opener, OBS_CONN_UNNAMED, None, opener.transport))


def head_key(seg: Segment) -> tuple:
    return (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)


def _observe(seg: Segment, evidence: str, name: str | None, protocol: str) -> Observation:
    return Observation(
        evidence=evidence,
        name=name,
        frame=seg.frame,
        ts=seg.ts,
        src_ip=seg.src_ip,
        dst_ip=seg.dst_ip,
        src_port=seg.src_port,
        dst_port=seg.dst_port,
        transport=seg.transport,
        protocol=protocol,
        src_mac=seg.src_mac,
        detail={"vlan": list(seg.vlan)} if seg.vlan else {},
    )
