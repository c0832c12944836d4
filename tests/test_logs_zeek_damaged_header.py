"""A damaged Zeek header line (`#separator \\x9`, `\\xZZ`, no value) is one unreadable line: the reader
keeps its settings and goes on, never a traceback (log readers take hostile input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.logs.engine import read_logs
from netwatch.pipeline import Pipeline
from netwatch.signatures import load_signature_set

DNS_LOG = "\n".join([
    "#separator \\x09",
    "#set_separator\t,",
    "#empty_field\t(empty)",
    "#unset_field\t-",
    "#path\tdns",
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\tquery",
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tstring",
    "1795864937.000000\tC1\t10.0.0.5\t40000\t10.0.0.1\t53\tudp\t1\tmobilegw.alipay.com",
]) + "\n"


@pytest.mark.parametrize("damaged", ["#separator \\x9", "#separator \\xZZ", "#separator ", "#path\tdns\\x4"])
def test_damaged_header_is_one_bad_line(damaged: str, tmp_path: Path) -> None:
    log = tmp_path / "dns.log"
    lines = DNS_LOG.splitlines()
    log.write_text("\n".join([*lines[:-1], damaged, lines[-1]]) + "\n")
    events: list[dict] = []
    summary = read_logs([str(log)], Pipeline(load_signature_set()), events.append, fmt="zeek-tsv")
    assert summary.bad == 1
    assert [e["netwatch"]["name"] for e in events] == ["mobilegw.alipay.com"]
