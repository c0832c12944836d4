"""`netwatch report`: an HTML page and a Markdown summary from events or the sensor database."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from netwatch.atomic import write_atomically

from .data import ReportInputError, load


def _fail(message: str) -> None:
    click.echo(f"netwatch: {message}", err=True)
    sys.exit(2)


@click.command("report")
@click.argument("inputs", nargs=-1)
@click.option("--db", type=click.Path(dir_okay=False), default=None, help="A sensor state database (sensor --db).")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the self-contained HTML page to FILE.")
@click.option("--markdown", "md_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the Markdown summary to FILE ('-' for standard output); the chart goes beside it "
                   "as FILE.svg.")
@click.option("--title", default="netwatch report: devices contacting banned apps", show_default=True)
def report(inputs: tuple[str, ...], db: str | None, html_out: Path | None, md_out: Path | None, title: str) -> None:
    """Summarise netwatch events for people: apps x devices, timeline, evidence, blind spots.

    INPUTS are jsonl files written by `netwatch scan --format jsonl`, `netwatch logs` or the sensor
    ('-' for standard input; .gz is fine); --db reads a sensor database instead or as well.
    Exit status: 0 written, 2 usage, input or output error.
    """
    if not inputs and db is None:
        _fail("give jsonl files of netwatch events, or --db with a sensor database")
    if html_out is None and md_out is None:
        _fail("give --html FILE and/or --markdown FILE")
    try:
        data = load(list(inputs), db)
    except ReportInputError as exc:
        _fail(str(exc))
    if data.events == 0 and not data.contacts and not data.devices:
        _fail(f"no netwatch events in {', '.join(data.sources)}"
              + (f" ({data.skipped:,} line(s) skipped, e.g. {data.skipped_examples[0]})" if data.skipped else ""))
    from .chart import timeline_svg
    from .html import render_html
    from .markdown import render_markdown

    try:
        svg = timeline_svg(data)
    except RuntimeError as exc:  # matplotlib missing
        _fail(str(exc))
    try:
        if html_out is not None:
            write_atomically(html_out, render_html(data, svg, title=title))
        if md_out is not None:
            chart_file = None
            if svg and str(md_out) != "-":
                chart_path = md_out.with_name(md_out.name + ".svg")
                write_atomically(chart_path, '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + svg)
                chart_file = chart_path.name
            text = render_markdown(data, title=title, chart_file=chart_file)
            if str(md_out) == "-":
                click.echo(text, nl=False)
            else:
                write_atomically(md_out, text)
    except OSError as exc:
        _fail(f"cannot write {exc.filename}: {exc.strerror or exc}")
    if data.skipped:
        click.echo(f"netwatch: warning: {data.skipped:,} line(s) were not netwatch events and were skipped "
                   f"(e.g. {data.skipped_examples[0]})", err=True)
