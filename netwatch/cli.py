"""Command line: click commands only; the work happens in netwatch.scan, .pipeline and friends."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import click

from netwatch import __version__
from netwatch.parallel.options import parallel_options
from netwatch.signatures import SignatureError, load_signature_set

EXIT_CLEAN, EXIT_ALERTS, EXIT_USAGE = 0, 1, 2
TIER_CHOICE = click.Choice(["low", "medium", "high"])


def fail(message: str) -> None:
    """Input or usage error: one line on stderr, exit status 2."""
    click.echo(f"netwatch: {message}", err=True)
    sys.exit(EXIT_USAGE)


def load_signatures_or_exit(overlays: tuple[Path, ...], policy: str | None) -> Any:
    try:
        return load_signature_set(overlay_dirs=overlays, policy=policy)
    except SignatureError as exc:
        fail(str(exc))


signatures_option = click.option(
    "--signatures", "overlays", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Overlay directory of signature/policy files added to the bundled set (repeatable).")
policy_option = click.option("--policy", default=None, help="Policy id (default: the set's default, eo13971).")
min_confidence_option = click.option(
    "--min-confidence", type=TIER_CHOICE, default=None,
    help="Lowest tier that raises an alert (default: the policy's, normally medium).")


_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "signatures": ("netwatch.signatures.cli", "signatures_group"),
    "sensor": ("netwatch.sensor.cli", "sensor"),
    "devices": ("netwatch.sensor.cli", "devices"),
    "health": ("netwatch.sensor.cli", "health"),
    "logs": ("netwatch.logs.cli", "logs"),
    "report": ("netwatch.report.cli", "report"),
}


class _LazyGroup(click.Group):
    """Imports the sensor and signature commands only when they are used: `scan` starts faster."""

    _lazy = _LAZY_COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy:
            import importlib

            module, attribute = self._lazy[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        """Write errors on standard output that a command did not handle itself (`> /dev/full`, a closed
        pipe) end every command the way they end `scan`: one line and status 2, or 141 quietly for a
        reader that went away (click would exit 1, which here means "found")."""
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS or exc.filename is not None:
                raise
            _detach_stdout()  # the interpreter's last flush of the dead stream must not fail again
            if exc.errno == errno.EPIPE:
                sys.exit(EXIT_BROKEN_PIPE)
            fail(f"cannot write standard output: {exc.strerror or exc}")


_WRITE_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _detach_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netwatch")
def main() -> None:
    """Find the devices on a network that still talk to banned apps (EO 13971 by default)."""


class _Progress:
    """A one-line progress display on stderr for long scans (only when stderr is a terminal)."""

    def __init__(self, total_bytes: int) -> None:
        self.total = total_bytes
        self.done_files = 0
        self.current = ""
        self.base = 0
        self._last = 0

    def __call__(self, path: str, bytes_read: int) -> None:
        if path != self.current:
            self.base += self._last if self.current else 0
            self.current = path
        self._last = bytes_read
        done = self.base + bytes_read
        pct = f"{100 * done / self.total:5.1f}%" if self.total else ""
        click.echo(f"\rnetwatch: {pct} {done / 1e6:,.0f} MB  {Path(path).name[:40]:<40}", err=True, nl=False)

    def close(self) -> None:
        click.echo("\r" + " " * 70 + "\r", err=True, nl=False)


forward_state_dir_options = [
    click.option("--forward-state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Directory of the durable forwarding queue (default: ~/.local/state/netwatch)."),
    click.option("--forward-state", "forward_state_alias", type=click.Path(file_okay=False, path_type=Path),
                 default=None, hidden=True),  # the option's first spelling, kept working
]


def _with_options(options: list[Any]) -> Any:
    def apply(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function
    return apply


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default=None,
              help="Output format (default: table on a terminal, jsonl otherwise).")
@click.option("--all", "emit_all", is_flag=True,
              help="Also report every other name seen (events in jsonl/csv, names per device in the table).")
@click.option("-o", "--output", metavar="FILE", default=None,
              help="Write the output to FILE instead of standard output (created mode 0640 minus the umask).")
@signatures_option
@policy_option
@min_confidence_option
@click.option("--forward", "forward_urls", multiple=True, metavar="URL",
              help="Also send alerts to a SIEM (syslog+tcp://HOST:PORT, hec+https://..., see docs/siem.md).")
@_with_options(forward_state_dir_options)
@click.option("--forward-timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for forwarders to deliver before exiting.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line on stderr.")
@click.option("--continuous", is_flag=True,
              help="The files are consecutive slices of one capture (rotated files): flows carry over.")
@parallel_options
def scan(inputs: tuple[str, ...], fmt: str | None, emit_all: bool, output: str | None,
         overlays: tuple[Path, ...], policy: str | None, min_confidence: str | None,
         forward_urls: tuple[str, ...], forward_state_dir: Path | None, forward_state_alias: Path | None,
         forward_timeout: float, quiet: bool, continuous: bool, **parallel: Any) -> None:
    """Analyse pcap/pcapng captures (files, directories, '-' for stdin; gzip is fine).

    Ctrl-C ends the scan early and reports what was analysed until then.

    Exit status: 0 nothing found, 1 at least one alert, 2 usage, input or output error.
    """
    from netwatch.outputs.destination import OutputError, open_output
    from netwatch.pipeline import Pipeline, default_observer

    sigset = load_signatures_or_exit(overlays, policy)
    if fmt is None:
        fmt = "table" if output is None and sys.stdout.isatty() else "jsonl"
    try:
        pipeline = Pipeline(sigset, min_confidence=min_confidence, emit_all=emit_all,
                            observer=default_observer("analyzer"))
    except ValueError as exc:
        fail(str(exc))
    try:
        out = open_output(output, inputs)
    except OutputError as exc:
        fail(str(exc))

    state_dir = forward_state_dir or forward_state_alias
    try:
        summary = _scan_to(out, inputs, pipeline, fmt, emit_all, quiet, (forward_urls, state_dir, forward_timeout),
                           {"continuous": continuous, "quiet": quiet, "parallel": parallel,
                            "recipe": (overlays, policy, min_confidence, emit_all)})
    except OutputError as exc:
        out.abandon()
        if exc.broken_pipe:  # the reader is gone (`| head`): stop quietly, as tools ended by SIGPIPE do
            sys.exit(EXIT_BROKEN_PIPE)
        fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C: the user does not want the summary either
        out.abandon()
        click.echo("netwatch: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _report_scan(summary, pipeline, fmt, quiet)


EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process ended by SIGPIPE
EXIT_INTERRUPTED = 128 + 2  # ... and by SIGINT


def _scan_to(out: Any, inputs: tuple[str, ...], pipeline: Any, fmt: str, emit_all: bool, quiet: bool,
             forwarding: tuple[tuple[str, ...], Path | None, float], scan_options: dict[str, Any]) -> Any:
    """Run the scan writing to `out`; returns the summary. Write errors raise OutputError.

    `forwarding` is (URLs, queue directory, seconds to wait); `scan_options` go to run_scan as they are.
    """
    from netwatch.parallel.cli import run_scan
    from netwatch.scan import Interruption, input_size

    forward_urls, state_dir, forward_timeout = forwarding
    with ExitStack() as stack:
        forwarders = _start_forwarders(forward_urls, state_dir, stack) if forward_urls else None
        seen = None
        if fmt == "table" and emit_all:
            from netwatch.outputs.table import SeenNames

            seen = SeenNames()
        sink = _event_sink(fmt, out, forwarders, seen)
        progress = None
        if not quiet and sys.stderr.isatty():
            progress = _Progress(sum(input_size(p) for p in inputs))
        with Interruption().installed() as interruption:
            summary = run_scan(inputs, pipeline, sink, progress=progress, interruption=interruption,
                               **scan_options)
        if progress is not None:
            progress.close()
        if fmt == "table":
            from netwatch.outputs.table import write_table

            write_table(out, pipeline.inventory.devices(), summary, policy=pipeline._policy,
                        version=pipeline._ruleset_version, show_all=emit_all, seen=seen)
        out.close()
        if forwarders is not None and not forwarders.flush(forward_timeout, stall=FORWARD_STALL_SECONDS):
            for line in forwarders.undelivered():
                click.echo(f"netwatch: warning: forwarding: {line}; sent on the next run with the same "
                           "forwarding state directory", err=True)
    return summary


def _report_scan(summary: Any, pipeline: Any, fmt: str, quiet: bool) -> None:
    """Errors, warnings and notes on stderr, the summary line, then exit by the scan's status."""
    for report in summary.files:
        if report.error:
            click.echo(f"netwatch: {report.error}", err=True)
        elif report.note:
            click.echo(f"netwatch: note: {report.path}: {report.note}", err=True)
    for warning in summary.warnings:
        click.echo(f"netwatch: warning: {warning.path}: {warning.message}", err=True)
    if summary.interrupted and fmt != "table":
        click.echo("netwatch: interrupted (Ctrl-C): the results cover the input read until then", err=True)
    clamped = summary.counters.get("timestamps_clamped", 0)
    if clamped:
        click.echo(f"netwatch: warning: {clamped:,} packet(s) had a time outside 1970..9999 (a wrong pcapng "
                   "if_tsoffset?); their events carry the nearest valid time", err=True)
    if not quiet and fmt != "table":
        counters = summary.counters
        click.echo(
            f"netwatch: {counters.get('alerts', 0)} alert(s) from "
            f"{sum(1 for d in pipeline.inventory.devices() if any(c.alert for c in d.apps.values()))} device(s); "
            f"{summary.frames:,} packets in {len([f for f in summary.files if not f.skipped])} file(s), "
            f"{counters.get('malformed', 0):,} malformed, {summary.seconds:.2f} s", err=True)
    if summary.alerts:
        sys.exit(EXIT_ALERTS)
    if [report.nothing_analysed for report in summary.files if not report.skipped] == [True]:
        click.echo(f"netwatch: warning: {summary.files[0].path}: nothing could be analysed", err=True)
        sys.exit(EXIT_USAGE)  # the only input: a clean exit would read as "nothing found"
    if summary.errors or all(report.skipped for report in summary.files):
        if not summary.errors:  # an empty directory, or one of notes and FIFOs only
            click.echo("netwatch: no capture files found", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_CLEAN)


# A scan stops waiting for a receiver that keeps failing after this long without progress; its
# alerts stay queued for the next run (the full --forward-timeout is for receivers that are slow).
FORWARD_STALL_SECONDS = 5.0


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "netwatch"


def _start_forwarders(urls: tuple[str, ...], state_dir: Path | None, stack: ExitStack) -> Any:
    from netwatch.forward import ForwardError, ForwarderSet

    try:
        forwarders = ForwarderSet.from_urls(urls, state_dir=state_dir or _default_state_dir())
    except ForwardError as exc:
        fail(str(exc))
    forwarders.start()
    stack.callback(forwarders.close)
    return forwarders


def _event_sink(fmt: str, out: IO[str], forwarders: Any, seen: Any = None) -> Any:
    """The per-event callback: write the event in the chosen format (or collect names for the table), forward alerts."""
    if fmt == "jsonl":
        from netwatch.outputs.jsonl import dumps_event

        def write(event: dict[str, Any]) -> None:
            out.write(dumps_event(event))
            out.write("\n")
    elif fmt == "csv":
        from netwatch.outputs.csv import CsvWriter

        write = CsvWriter(out).write
    elif seen is not None:
        write = seen.add
    else:
        def write(event: dict[str, Any]) -> None:
            return None

    if forwarders is None:
        return write

    def write_and_forward(event: dict[str, Any]) -> None:
        write(event)
        if event["event"]["kind"] == "alert":
            forwarders.submit(event)

    return write_and_forward


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="netwatch")  # `python -m netwatch.cli` completes and reads like the installed command
