"""Alert forwarding to SIEMs: formats, a durable queue and per-target delivery threads.

    fs = ForwarderSet.from_urls(["syslog+tls://siem:6514?format=cef"], state_dir=Path("/var/lib/netwatch"))
    fs.start(); fs.submit(event); ...; fs.flush(10); fs.close()

See docs/siem.md for URL forms, formats and delivery guarantees.
"""

from __future__ import annotations

from netwatch.forward.forwarder import Forwarder, ForwarderSet
from netwatch.forward.url import ForwardError, ForwardTarget, parse_forward_url

__all__ = ["ForwardError", "ForwardTarget", "Forwarder", "ForwarderSet", "parse_forward_url"]
