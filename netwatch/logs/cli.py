"""`netwatch logs`: Zeek, Suricata and DNS-server logs through netwatch's detection (registered in netwatch.cli)."""

from __future__ import annotations

import io
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import click

from netwatch.cli import (
    EXIT_ALERTS,
    EXIT_BROKEN_PIPE,
    EXIT_CLEAN,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    _default_state_dir,
    _event_sink,
    _start_forwarders,
    _with_options,
    fail,
    forward_state_dir_options,
    load_signatures_or_exit,
    min_confidence_option,
    policy_option,
    signatures_option,
)
from netwatch.logs.sniff import FORMATS

INPUT_FORMATS = click.Choice(sorted(FORMATS))


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default=None,
              help="Output format (default: table on a terminal, jsonl otherwise; --follow: jsonl).")
@click.option("--input-format", type=INPUT_FORMATS, default=None,
              help="Read every input as this log format instead of detecting it per file.")
@click.option("--all", "emit_all", is_flag=True, help="Also emit an observation for every name in the logs.")
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
@click.option("--follow", is_flag=True,
              help="Keep reading as the logs grow and rotate (like tail -F), with the sensor's alert "
                   "aggregation, state database and metrics; stop with Ctrl-C or SIGTERM.")
@click.option("--db", default=None,
              help="--follow: state database (devices, contacts, read positions). "
                   "[~/.local/state/netwatch/logs.db]")
@click.option("--reminder-interval", type=float, default=3600.0, show_default=True,
              help="--follow: seconds between reminder alerts per (device, app).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0,
              help="--follow: serve Prometheus metrics on this port.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True, help="--follow: metrics address.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=0.5, show_default=True,
              help="--follow: seconds between checks for new lines and rotation.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
def logs(inputs: tuple[str, ...], fmt: str | None, input_format: str | None, emit_all: bool, output: str | None,
         overlays: tuple[Path, ...], policy: str | None, min_confidence: str | None,
         forward_urls: tuple[str, ...], forward_state_dir: Path | None, forward_state_alias: Path | None,
         forward_timeout: float, follow: bool,
         db: str | None, reminder_interval: float, metrics_port: int, metrics_address: str,
         poll_interval: float, quiet: bool) -> None:
    """Read Zeek, Suricata EVE and DNS-server logs (files, directories, '-' for stdin; gzip is fine).

    Formats, detected per file: zeek-tsv, zeek-json (dns, ssl, quic, http, dhcp, conn), suricata-eve
    (dns, tls, quic, http, dhcp), bind (query log), unbound (log-queries/log-replies), dnsmasq
    (log-queries), windows-dns-debug and windows-dns-csv (analytical log exported as CSV).

    Exit status: 0 nothing found, 1 at least one alert, 2 usage, input or output error.
    """
    from netwatch.outputs.destination import OutputError, open_output
    from netwatch.pipeline import Pipeline, default_observer

    sigset = load_signatures_or_exit(overlays, policy)
    forward_state_dir = forward_state_dir or forward_state_alias
    if follow:
        if "-" in inputs:
            fail("--follow needs files or directories, not standard input")
        if fmt not in (None, "jsonl"):
            fail("--follow writes JSON lines only (--format jsonl)")
        from netwatch.logs.follow import FollowOptions, run_follow

        sys.exit(run_follow(FollowOptions(
            inputs=list(inputs), input_format=input_format, output=output, db=db,
            policy=policy, min_confidence=min_confidence, emit_all=emit_all, forward=list(forward_urls),
            forward_state_dir=str(forward_state_dir) if forward_state_dir else None,
            reminder_interval=reminder_interval, metrics_port=metrics_port, metrics_address=metrics_address,
            poll_interval=poll_interval), sigset))

    if fmt is None:
        fmt = "table" if output is None and sys.stdout.isatty() else "jsonl"
    try:
        pipeline = Pipeline(sigset, min_confidence=min_confidence, emit_all=emit_all,
                            observer=default_observer("analyzer"))
        out = open_output(output, inputs)
    except (ValueError, OutputError) as exc:
        fail(str(exc))
    try:
        summary = _read_to(out, inputs, input_format, pipeline, fmt, emit_all,
                           (forward_urls, forward_state_dir, forward_timeout))
    except OutputError as exc:
        out.abandon()
        if exc.broken_pipe:  # the reader went away (`| head`): stop quietly
            sys.exit(EXIT_BROKEN_PIPE)
        fail(str(exc))
    except KeyboardInterrupt:  # a second Ctrl-C: no summary either
        out.abandon()
        click.echo("netwatch: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _report(summary, pipeline, quiet=quiet or fmt == "table")
    if summary.interrupted:
        click.echo("netwatch: interrupted (Ctrl-C): the results cover the lines read until then", err=True)
    if summary.alerts:
        sys.exit(EXIT_ALERTS)
    if summary.errors or not summary.read_files:
        if not summary.files:
            click.echo("netwatch: no log files found", err=True)
        elif not summary.read_files and not summary.errors:
            click.echo("netwatch: none of the files is a log format netwatch reads", err=True)
        sys.exit(EXIT_USAGE)
    sys.exit(EXIT_CLEAN)


def _read_to(out: Any, inputs: tuple[str, ...], input_format: str | None, pipeline: Any, fmt: str, emit_all: bool,
             forwarding: tuple[tuple[str, ...], Path | None, float]) -> Any:
    """Read the logs writing events to `out` (and the forwarders); the table comes at the end."""
    from netwatch.logs.engine import read_logs
    from netwatch.scan import Interruption

    forward_urls, state_dir, forward_timeout = forwarding
    with ExitStack() as stack:
        forwarders = _start_forwarders(forward_urls, state_dir, stack) if forward_urls else None
        seen = None
        if fmt == "table" and emit_all:
            from netwatch.outputs.table import SeenNames

            seen = SeenNames()
        sink = _event_sink(fmt, out, forwarders, seen)
        with Interruption().installed() as interruption:
            summary = read_logs(inputs, pipeline, sink, fmt=input_format, interruption=interruption)
        if fmt == "table":
            _write_table(out, pipeline, summary, emit_all, seen)
        out.close()
        if forwarders is not None and not forwarders.flush(forward_timeout):
            click.echo("netwatch: warning: some alerts are not delivered yet; they stay queued in "
                       f"{state_dir or _default_state_dir()} for the next run", err=True)
    return summary


def _write_table(out: IO[str], pipeline: Any, summary: Any, emit_all: bool, seen: Any) -> None:
    """The device table `netwatch scan` prints, with a footer that counts log lines instead of packets."""
    from netwatch.outputs.table import write_table
    from netwatch.scan import ScanSummary

    body = io.StringIO()
    write_table(body, pipeline.inventory.devices(), ScanSummary(counters=summary.counters),
                policy=pipeline._policy, version=pipeline._ruleset_version, show_all=emit_all, seen=seen)
    text = body.getvalue()
    text = text.replace("netwatch scan", "netwatch logs", 1)
    text = text[: text.rfind("Totals:")] if "Totals:" in text else text
    counters = summary.counters
    devices = pipeline.inventory.devices()
    alerting = sum(1 for d in devices if any(c.alert for c in d.apps.values()))
    rate = summary.lines / summary.seconds if summary.seconds > 0 else 0.0
    out.write(text)
    out.write(
        f"Totals: {alerting} device(s) with alerts, {counters.get('alerts', 0)} alert event(s), "
        f"{counters.get('events', 0)} other event(s), {len(devices)} device(s) seen\n"
        f"        {len(summary.read_files)} file(s), {summary.lines:,} lines, {summary.records:,} records, "
        f"{summary.bad:,} unreadable lines, {summary.seconds:.2f} s ({rate:,.0f} lines/s)\n")


def _report(summary: Any, pipeline: Any, *, quiet: bool) -> None:
    """Errors, bad-line warnings (with samples) and the summary line, on stderr."""
    for report in summary.files:
        if report.error:
            click.echo(f"netwatch: {report.error}", err=True)
        if report.bad:
            samples = "; ".join(f"line {n}: {text!r}" for n, text in report.bad_samples[:3])
            click.echo(f"netwatch: warning: {report.path}: {report.bad:,} line(s) not readable as {report.format}, "
                       f"e.g. {samples}", err=True)
        if report.untimed:
            click.echo(f"netwatch: warning: {report.path}: {report.untimed:,} record(s) without a readable time; "
                       "the file's modification time is used for them", err=True)
    if quiet:
        return
    counters = summary.counters
    devices = sum(1 for d in pipeline.inventory.devices() if any(c.alert for c in d.apps.values()))
    formats = sorted({f.format for f in summary.read_files if f.format})
    click.echo(f"netwatch: {counters.get('alerts', 0)} alert(s) from {devices} device(s); {summary.lines:,} lines "
               f"in {len(summary.read_files)} file(s) ({', '.join(formats) or 'no known format'}), "
               f"{summary.records:,} records, {summary.bad:,} unreadable, {summary.seconds:.2f} s", err=True)
