"""Live capture through libpcap (pcapy-ng) with the flow-head filter in C.

Why this shape: a Python loop over every packet of a busy link cannot keep up, so
libpcap hands over whole batches (`next_batch`, one C call per batch), the kernel BPF
program drops what the user excludes, and `netwatch._fastpath.FlowFilter` drops bulk
flow data in C. Only the candidate packets (flow heads, DNS, DHCP, fragments) become
`RawPacket` objects for the Python pipeline.

Several processes can share one interface with Linux PACKET_FANOUT (hash mode keeps
both directions of a flow on the same process).
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from netwatch.model import RawPacket

#: libpcap's DLT_* values that differ from the LINKTYPE_* values stored in files
#: (https://www.tcpdump.org/linktypes.html): DLT_RAW is 12 or 14 on some systems.
_DLT_TO_LINKTYPE = {12: 101, 14: 101}
_META_RECORD = 16  # sec, usec, offset, caplen: four native uint32 per packet (pcapy-ng next_batch)


class LiveCaptureError(Exception):
    """The interface cannot be opened or read (message says which and why)."""


_NEED_PRIVILEGE = "run as root or give the binary cap_net_raw,cap_net_admin (docs/sensor.md)"

#: pcap_activate() status codes (libpcap pcap/pcap.h, PCAP_ERROR_*) and what a user should read.
#: pcapy-ng returns the status instead of raising, and has no pcap_geterr(), so the code is all there is.
_ACTIVATE_ERRORS = {
    -1: "libpcap could not activate the capture",
    -4: "capture already activated",
    -5: "no such device",
    -6: "monitor mode not supported",
    -8: f"permission denied: {_NEED_PRIVILEGE}",
    -9: "interface is down",
    -10: "cannot set the time stamp type",
    -11: f"permission denied for promiscuous mode: {_NEED_PRIVILEGE}, or use --no-promisc",
    -12: "time stamp precision not supported",
}


@dataclass(slots=True)
class LiveOptions:
    """How to open one interface; every field maps to a sensor option."""

    interface: str
    snaplen: int = 65535
    promisc: bool = True
    buffer_size: int = 64 * 1024 * 1024  # kernel ring, bytes
    timeout_ms: int = 100  # read timeout: the loop wakes at least this often
    bpf: str = ""
    fanout_group: int | None = None  # PACKET_FANOUT group id shared by the workers of one interface
    batch_size: int = 4096


@dataclass(slots=True)
class CaptureCounters:
    """Totals over the life of a LiveCapture, including earlier (re-)opened handles."""

    frames: int = 0  # frames libpcap handed us
    admitted: int = 0  # frames the C filter passed to Python
    kernel_received: int = 0
    kernel_dropped: int = 0
    interface_dropped: int = 0
    reopens: int = 0
    base: dict[str, int] = field(default_factory=dict)  # kernel stats of handles closed before


def _open_handle(opts: LiveOptions) -> Any:
    """Open and activate a pcapy-ng handle; raise LiveCaptureError with the reason."""
    import pcapy  # imported here so offline users never need libpcap

    try:
        handle = pcapy.create(opts.interface)
        handle.set_snaplen(opts.snaplen)
        handle.set_promisc(1 if opts.promisc else 0)
        handle.set_buffer_size(opts.buffer_size)
        handle.set_timeout(opts.timeout_ms)
        status = handle.activate()
        if isinstance(status, int) and status < 0:
            with contextlib.suppress(Exception):
                handle.close()
            reason = _ACTIVATE_ERRORS.get(status, f"libpcap activate failed (status {status})")
            raise LiveCaptureError(f"{opts.interface}: {reason}")
        handle.setnonblock(1)  # see LiveCapture.read_batch: we wait with poll(2) ourselves
        if handle.datalink() < 0:  # activate() can "succeed" on a down interface; the handle is unusable
            handle.close()
            raise LiveCaptureError(f"{opts.interface}: capture not activated (interface down?)")
        if opts.bpf:
            handle.setfilter(opts.bpf)
        if opts.fanout_group is not None:
            handle.set_fanout(opts.fanout_group, pcapy.PACKET_FANOUT_HASH)
    except pcapy.PcapError as exc:
        raise LiveCaptureError(f"{opts.interface}: {_plain_pcap_error(str(exc))}") from exc
    except (OSError, ValueError) as exc:
        raise LiveCaptureError(f"{opts.interface}: {exc}") from exc
    return handle


def _plain_pcap_error(text: str) -> str:
    """libpcap's own text, with the privilege hint where it says 'Operation not permitted'."""
    if "not permitted" in text or "ermission denied" in text:
        return f"{text}: {_NEED_PRIVILEGE}"
    return text


def check_interface(opts: LiveOptions) -> None:
    """Open and close `opts.interface` once (small ring, same filter) so a missing interface, a
    missing capability or a bad BPF expression is reported before any worker starts."""
    probe = LiveOptions(interface=opts.interface, snaplen=opts.snaplen, promisc=opts.promisc,
                        buffer_size=min(opts.buffer_size, 1 << 20), timeout_ms=opts.timeout_ms, bpf=opts.bpf)
    handle = _open_handle(probe)
    with contextlib.suppress(Exception):
        handle.close()


class LiveCapture:
    """One interface (or one fanout member of it), re-opened when it goes down.

    `batches()` yields lists of admitted RawPacket (possibly empty on a read timeout,
    so the caller gets control back regularly for signals and housekeeping).
    """

    def __init__(
        self,
        opts: LiveOptions,
        flow_filter: Any,
        *,
        on_event: Callable[[str, dict], None] | None = None,
        reopen_backoff: tuple[float, float] = (0.2, 5.0),
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.opts = opts
        self.flow_filter = flow_filter
        self.counters = CaptureCounters()
        self._on_event = on_event or (lambda _msg, _fields: None)
        self._backoff = reopen_backoff
        self._should_stop = should_stop or (lambda: False)
        self._handle: Any = None
        self._poller: Any = None
        self.linktype = 0
        self.open()

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        self._handle = _open_handle(self.opts)
        self._poller = select.poll()
        self._poller.register(self._handle.getfd(), select.POLLIN)
        dlt = self._handle.datalink()
        self.linktype = _DLT_TO_LINKTYPE.get(dlt, dlt)
        self._on_event(
            "capture opened",
            {
                "interface": self.opts.interface,
                "linktype": self.linktype,
                "bpf": self.opts.bpf,
                "fanout_group": self.opts.fanout_group,
            },
        )

    def close(self) -> None:
        if self._handle is None:
            return
        self._fold_kernel_stats()
        # a handle of a vanished interface may fail to close; nothing more to do then
        with contextlib.suppress(Exception):
            self._handle.close()
        self._handle = None

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------
    def read_batch(self) -> list[RawPacket]:
        """Read one batch; re-open the interface (with backoff) when it went away."""
        import pcapy

        while True:
            if self._handle is None:
                if not self._reopen():
                    return []  # asked to stop while the interface was away
                continue
            try:
                packet_bytes, meta = self._handle.next_batch(self.opts.batch_size)
                if not meta:
                    # With TPACKET_V3 a blocking read never returns while the link is silent (the
                    # kernel retires a ring block only once it holds a packet), so the handle is
                    # non-blocking and the wait is bounded here.
                    self._poller.poll(self.opts.timeout_ms)
                    packet_bytes, meta = self._handle.next_batch(self.opts.batch_size)
            except pcapy.PcapError as exc:
                self._on_event("capture read failed, re-opening", {"interface": self.opts.interface, "error": str(exc)})
                self.close()
                continue
            n = len(meta) // _META_RECORD
            if n == 0:
                return []
            first = self.counters.frames + 1
            self.counters.frames += n
            admitted = self.flow_filter.filter_batch(self.linktype, packet_bytes, meta, first)
            self.counters.admitted += len(admitted)
            return admitted

    def batches(self, stop: Callable[[], bool]) -> Iterator[list[RawPacket]]:
        while not stop():
            yield self.read_batch()

    def _reopen(self) -> bool:
        delay = self._backoff[0]
        while not self._should_stop():
            try:
                self.open()
                self.counters.reopens += 1
                return True
            except LiveCaptureError as exc:
                self._on_event(
                    "capture re-open failed", {"interface": self.opts.interface, "error": str(exc), "retry_in_s": delay}
                )
                time.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
        return False

    # -- statistics ------------------------------------------------------------------
    def _kernel_stats(self) -> tuple[int, int, int]:
        if self._handle is None:
            return (0, 0, 0)
        try:
            received, dropped, if_dropped = self._handle.stats()
        except Exception:
            return (0, 0, 0)
        return int(received), int(dropped), int(if_dropped)

    def _fold_kernel_stats(self) -> None:
        received, dropped, if_dropped = self._kernel_stats()
        base = self.counters.base
        base["received"] = base.get("received", 0) + received
        base["dropped"] = base.get("dropped", 0) + dropped
        base["if_dropped"] = base.get("if_dropped", 0) + if_dropped

    def stats(self) -> dict[str, int]:
        """Kernel drops and filter counts, cumulative over re-opens."""
        received, dropped, if_dropped = self._kernel_stats()
        base = self.counters.base
        out = {
            "frames": self.counters.frames,
            "admitted": self.counters.admitted,
            "kernel_received": base.get("received", 0) + received,
            "kernel_dropped": base.get("dropped", 0) + dropped,
            "interface_dropped": base.get("if_dropped", 0) + if_dropped,
            "reopens": self.counters.reopens,
        }
        try:
            for key, value in self.flow_filter.stats().items():
                out[f"filter_{key}"] = int(value)
        except Exception:
            pass
        return out
