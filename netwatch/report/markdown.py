"""The Markdown summary: the same numbers as the HTML page, for tickets, wikis and e-mail.

Values from traffic are escaped for Markdown and HTML (renderers such as GitHub's accept inline
HTML), so a host name cannot add links, images, table cells or markup.
"""

from __future__ import annotations

import re

from .data import ReportData
from .html import fmt_time

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def md(value: object) -> str:
    text = _CONTROL.sub(" ", "" if value is None else str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def render_markdown(data: ReportData, *, title: str, chart_file: str | None) -> str:
    apps = data.apps()
    flagged = data.flagged_devices()
    lines = [f"# {md(title)}", ""]
    lines.append(f"Time range covered: **{fmt_time(data.first_ts)}** to **{fmt_time(data.last_ts)}**  ")
    lines.append(f"Signatures: `{', '.join(sorted(data.signature_versions)) or 'unknown'}`; policy "
                 f"{md(', '.join(sorted(data.policies)) or 'unknown')}  ")
    lines.append(f"Inputs: {md(', '.join(data.sources))} ({data.events:,} events)")
    lines.append("")
    spots = len({s.device for s in data.blind_spots.values()})
    lines += [f"**{len(flagged)}** device(s) with alerts, **{len(apps)}** banned app(s) contacted, "
              f"**{sum(c.count for c in data.contacts.values()):,}** alert contacts, {len(data.devices)} device(s) "
              f"seen, {spots} device(s) with blind spots.", ""]
    lines += ["## Apps", ""]
    if apps:
        lines += _table(["app", "devices", "contacts", "first seen", "last seen"], [
            [md(r["app_name"]), str(r["devices"]), str(r["contacts"]), fmt_time(r["first_seen"]),
             fmt_time(r["last_seen"])] for r in data.app_summary()])
        lines += ["## Apps × devices", ""]
        rows = []
        for device in flagged:
            cells = [str(data.contacts[(device, app)].count) if (device, app) in data.contacts else "·"
                     for app, _ in apps]
            rows.append([md(data.devices[device].label), *cells])
        lines += _table(["device", *(md(name) for _, name in apps)], rows)
    else:
        lines += ["No device contacted an app of the policy in this data.", ""]
    if chart_file:
        lines += ["## Timeline", "", f"![Contacts with banned apps per device]({chart_file})", ""]
    if flagged:
        lines += ["## Evidence samples", ""]
        rows = []
        for device in flagged:
            for app, _ in apps:
                contact = data.contacts.get((device, app))
                for sample in contact.samples if contact else ():
                    rows.append([md(data.devices[device].label), md(contact.app_name), fmt_time(sample.ts),
                                 md(sample.evidence), md(sample.name), md(sample.rule), md(sample.source)])
        lines += _table(["device", "app", "time", "evidence", "name", "rule", "source"], rows)
    lines += ["## Blind spots", ""]
    if data.blind_spots:
        lines += _table(["device", "kind", "via", "events", "first seen"], [
            [md(data.devices[s.device].label), md(s.kind), md(s.via), str(s.count), fmt_time(s.first_seen)]
            for s in sorted(data.blind_spots.values(), key=lambda s: (s.device, s.kind, s.via or ""))])
    else:
        lines += ["No device used encrypted DNS or Encrypted Client Hello in this data.", ""]
    if data.skipped:
        lines += [f"{data.skipped:,} input line(s) were not netwatch events and were skipped.", ""]
    lines += [md(note) for note in data.notes]
    return "\n".join(lines).rstrip() + "\n"
