"""The `scan` options for parallel and cluster runs (kept apart so cli.py stays a list of commands)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class ByteSize(click.ParamType):
    """A size such as 512M, 2G or 1048576 (binary units)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        number = text[: len(text) - len(unit)] if unit else text
        try:
            size = int(float(number) * _UNITS[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 512M, 2G)", param, ctx)
        if size < 0:
            self.fail("a size cannot be negative", param, ctx)
        return size


def parallel_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """-j, --cluster, --chunk-size, --chunk-overlap."""
    options = [
        click.option("-j", "--jobs", type=click.IntRange(min=0), default=0, show_default="number of cores",
                     help="Worker processes; files (and parts of large pcap files) are analysed in parallel. "
                          "0: one per core; 1: serial."),
        click.option("--cluster", metavar="tcp://HOST:8786", default=None,
                     help="Run the tasks on this Dask scheduler (pip install 'netwatch[cluster]'); inputs may be "
                          "fsspec URLs the workers can read (s3://..., file:///nfs/...). See docs/scale.md."),
        click.option("--chunk-size", type=ByteSize(), default="512M", show_default=True,
                     help="Split pcap files larger than this into parts for parallel workers (0: never split)."),
        click.option("--chunk-overlap", type=ByteSize(), default="16M", show_default=True,
                     help="Bytes before each part read again to rebuild flow heads cut by the split."),
        click.option("--min-parallel-size", type=ByteSize(), default="32M", hidden=True,
                     help="Below this much input, -j analyses in this process (workers cost more to start)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command
