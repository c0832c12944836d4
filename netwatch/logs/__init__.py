"""Logs in: Zeek, Suricata EVE and DNS-server query logs turned into the pipeline's observations.

Each reader turns lines of one log family into the same `Observation`s the packet path makes, so
the shared detector, device inventory, outputs and forwarders treat them exactly like packets:

    log files (source.py) -> format sniffing (sniff.py) -> a reader per family
    (zeek.py, suricata.py, bind.py, unbound.py, dnsmasq.py, windows_dns.py) -> Pipeline.detect

`engine.py` runs a batch over files (`netwatch logs`), `follow.py` tails them (`--follow`).
"""

from netwatch.logs.sniff import FORMATS

__all__ = ["FORMATS"]
