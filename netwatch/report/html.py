"""The self-contained HTML report: one file, no scripts, no fetches, readable on screen and on paper.

Everything that came from traffic (host names, names, vendors, file names) goes through
`html.escape`; a Content-Security-Policy that allows no scripts and no network backs that up.
Table cells carry `data-*` attributes with the raw numbers, so a reader (or a test) can check the
page against its input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from netwatch import __version__

from .data import Contact, ReportData

CSS = """
:root { --ink: #1d2733; --muted: #5b6876; --line: #d9dee4; --alert: #b42318; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 1180px; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 150px;
        background: var(--bg); }
.card .num { display: block; font-size: 24px; font-weight: 600; }
.card.alert .num { color: var(--alert); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.matrix td.hit { background: #fde7e4; color: var(--alert); font-weight: 600; text-align: center; }
.matrix td.none { color: #c3c9d0; text-align: center; }
code, .name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; overflow-wrap: anywhere; }
figure { margin: 8px 0; } figure svg { width: 100%; height: auto; }
.note { color: var(--muted); font-size: 13px; }
.device { break-inside: avoid; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; } table, figure, .card { break-inside: avoid; }
  .card { background: none; } a { color: inherit; text-decoration: none; }
  @page { size: A4 landscape; margin: 14mm; }
}
"""


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _device_cell(data: ReportData, device_id: str) -> str:
    device = data.devices[device_id]
    extra = ", ".join(device.ips[:3])
    vendor = f" [{_e(device.vendor)}]" if device.vendor else ""
    return (f'<span class="name">{_e(device.hostname or device.id)}</span>'
            + (f"<br><small>{_e(device.id)}{vendor} {_e(extra)}</small>" if device.hostname or extra else ""))


def _evidence(contact: Contact) -> str:
    return ", ".join(f"{_e(kind)}={count}" for kind, count in sorted(contact.evidence.items()) if count)


def _samples_table(data: ReportData, contacts: list[Contact]) -> str:
    rows = []
    for contact in contacts:
        for sample in contact.samples:
            rows.append(
                f"<tr><td>{_e(fmt_time(sample.ts))}</td><td>{_e(contact.app_name)}</td><td>{_e(sample.evidence)}</td>"
                f'<td class="name">{_e(sample.name)}</td><td><code>{_e(sample.rule)}</code></td>'
                f"<td>{_e(sample.confidence)}</td><td><code>{_e(sample.source)}</code></td></tr>")
    if not rows:
        return ""
    return ("<table><thead><tr><th>time</th><th>app</th><th>evidence</th><th>name</th><th>rule</th>"
            "<th>confidence</th><th>source</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def render_html(data: ReportData, chart_svg: str | None, *, title: str) -> str:
    apps = data.apps()
    flagged = data.flagged_devices()
    summary = data.app_summary()
    versions = ", ".join(sorted(data.signature_versions)) or "unknown"
    policies = ", ".join(sorted(data.policies)) or "unknown"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Time range covered: <b data-metric="first-seen">{_e(fmt_time(data.first_ts))}</b> to '
        f'<b data-metric="last-seen">{_e(fmt_time(data.last_ts))}</b> · signatures <code data-metric="signatures">'
        f"{_e(versions)}</code> · policy {_e(policies)}</p>",
        f'<p class="meta">Generated {_e(fmt_time(datetime.now(UTC).timestamp()))} by netwatch {_e(__version__)} '
        f"from {_e(', '.join(data.sources) or 'no input')}</p></header>",
        '<section id="summary"><div class="cards">',
        _card("flagged-devices", len(flagged), "devices with alerts", alert=True),
        _card("apps", len(apps), "banned apps contacted", alert=True),
        _card("alert-contacts", sum(c.count for c in data.contacts.values()), "alert contacts"),
        _card("devices", len(data.devices), "devices seen"),
        _card("blind-spots", len({s.device for s in data.blind_spots.values()}), "devices with blind spots"),
        "</div></section>",
    ]
    parts.append('<section id="apps"><h2>Apps</h2>')
    if summary:
        parts.append('<table class="apps"><thead><tr><th>app</th><th class="n">devices</th><th class="n">contacts</th>'
                     "<th>first seen</th><th>last seen</th></tr></thead><tbody>")
        for row in summary:
            parts.append(
                f'<tr data-app="{_e(row["app"])}"><td>{_e(row["app_name"])}</td>'
                f'<td class="n" data-devices="{row["devices"]}">{row["devices"]}</td>'
                f'<td class="n" data-contacts="{row["contacts"]}">{row["contacts"]}</td>'
                f"<td>{_e(fmt_time(row['first_seen']))}</td><td>{_e(fmt_time(row['last_seen']))}</td></tr>")
        parts.append("</tbody></table>")
    else:
        parts.append("<p>No device contacted an app of the policy in this data.</p>")
    parts.append("</section>")
    if flagged:
        parts.append('<section id="matrix"><h2>Apps × devices</h2><table class="matrix"><thead><tr><th>device</th>')
        parts += [f'<th data-app="{_e(app)}">{_e(name)}</th>' for app, name in apps]
        parts.append("</tr></thead><tbody>")
        for device in flagged:
            parts.append(f'<tr data-device="{_e(device)}"><th>{_device_cell(data, device)}</th>')
            for app, _ in apps:
                contact = data.contacts.get((device, app))
                if contact is None:
                    parts.append(f'<td class="none" data-device="{_e(device)}" data-app="{_e(app)}" '
                                 'data-count="0">·</td>')
                else:
                    parts.append(
                        f'<td class="hit" data-device="{_e(device)}" data-app="{_e(app)}" '
                        f'data-count="{contact.count}" title="{_e(fmt_time(contact.first_seen))} to '
                        f'{_e(fmt_time(contact.last_seen))}">{contact.count}</td>')
            parts.append("</tr>")
        parts.append("</tbody></table><p class=\"note\">Each cell counts the contacts (DNS queries, TLS/QUIC "
                     "server names, HTTP hosts, connections to resolved addresses) on which netwatch alerted.</p>"
                     "</section>")
    if chart_svg:
        shown = min(len(flagged), 40)
        note = f" (the {shown} busiest of {len(flagged)} devices)" if len(flagged) > shown else ""
        dropped = (f" {data.timeline_dropped:,} later contacts are not drawn (the chart keeps the first "
                   f"{len(data.timeline):,})." if data.timeline_dropped else "")
        parts.append(f'<section id="timeline"><h2>Timeline</h2><figure>{chart_svg}<figcaption class="note">'
                     f"Each dot is a contact; contacts close in time share a dot{note}.{dropped}</figcaption>"
                     "</figure></section>")
    if flagged:
        parts.append('<section id="devices"><h2>Devices</h2>')
        for device in flagged:
            record = data.devices[device]
            contacts = [data.contacts[(device, app)] for app, _ in apps if (device, app) in data.contacts]
            macs, ips = ", ".join(record.macs) or "-", ", ".join(record.ips) or "-"
            parts.append(f'<div class="device" data-device="{_e(device)}"><h3>{_e(record.label)}</h3>'
                         f'<p class="meta">MAC {_e(macs)} · IP {_e(ips)} · vendor {_e(record.vendor or "-")}</p>')
            parts.append('<table><thead><tr><th>app</th><th class="n">contacts</th><th>evidence</th>'
                         "<th>confidence</th><th>first seen</th><th>last seen</th></tr></thead><tbody>")
            for contact in contacts:
                parts.append(f"<tr><td>{_e(contact.app_name)}</td><td class=\"n\">{contact.count}</td>"
                             f"<td>{_evidence(contact)}</td><td>{_e(contact.confidence)}</td>"
                             f"<td>{_e(fmt_time(contact.first_seen))}</td><td>{_e(fmt_time(contact.last_seen))}</td></tr>")
            parts.append("</tbody></table>")
            parts.append(_samples_table(data, contacts))
            parts.append("</div>")
        parts.append("</section>")
    parts.append(_blind_spots(data))
    parts.append(_vendor_contacts(data))
    parts.append(_about(data))
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _card(metric: str, value: int, label: str, *, alert: bool = False) -> str:
    return (f'<div class="card{" alert" if alert and value else ""}"><span class="num" data-metric="{metric}">'
            f"{value:,}</span>{_e(label)}</div>")


def _blind_spots(data: ReportData) -> str:
    out = ['<section id="blind-spots"><h2>Blind spots</h2>']
    if not data.blind_spots:
        out.append("<p>No device used encrypted DNS or Encrypted Client Hello in this data.</p>")
    else:
        out.append("<p class=\"note\">These devices hid some names from the network: encrypted DNS (DNS over "
                   "HTTPS/TLS/QUIC) or Encrypted Client Hello. Their app contacts may be incomplete.</p>")
        out.append("<table><thead><tr><th>device</th><th>kind</th><th>via</th><th class=\"n\">events</th>"
                   "<th>first seen</th></tr></thead><tbody>")
        for spot in sorted(data.blind_spots.values(), key=lambda s: (s.device, s.kind, s.via or "")):
            kind = {"encrypted_dns": "encrypted DNS", "ech": "Encrypted Client Hello"}.get(spot.kind, spot.kind)
            out.append(f'<tr data-device="{_e(spot.device)}"><td>{_device_cell(data, spot.device)}</td>'
                       f"<td>{_e(kind)}</td>"
                       f'<td class="name">{_e(spot.via)}</td><td class="n">{spot.count}</td>'
                       f"<td>{_e(fmt_time(spot.first_seen))}</td></tr>")
        out.append("</tbody></table>")
    out.append("</section>")
    return "".join(out)


def _vendor_contacts(data: ReportData) -> str:
    if not data.vendor_contacts:
        return ""
    out = ['<section id="vendor-contacts"><h2>Vendor contacts (recorded, no alert)</h2><p class="note">Names of '
           "the apps' vendors or shared infrastructure below the alert threshold, or apps outside the policy: "
           "context, not evidence of a banned app.</p><table><thead><tr><th>device</th><th>vendor or app</th>"
           "<th class=\"n\">contacts</th><th>first seen</th><th>last seen</th><th>e.g.</th></tr></thead><tbody>"]
    for contact in sorted(data.vendor_contacts.values(), key=lambda c: (c.device, c.app)):
        example = contact.samples[0].name if contact.samples else None
        out.append(f"<tr><td>{_device_cell(data, contact.device)}</td><td>{_e(contact.app_name)}</td>"
                   f'<td class="n">{contact.count}</td><td>{_e(fmt_time(contact.first_seen))}</td>'
                   f'<td>{_e(fmt_time(contact.last_seen))}</td><td class="name">{_e(example)}</td></tr>')
    out.append("</tbody></table></section>")
    return "".join(out)


def _about(data: ReportData) -> str:
    out = ['<section id="about"><h2>About this report</h2><ul>',
           f"<li>Inputs: {_e(', '.join(data.sources))}; {data.events:,} events read.</li>",
           f"<li>Signature set(s): <code>{_e(', '.join(sorted(data.signature_versions)) or 'unknown')}</code>.</li>"]
    if data.skipped:
        examples = "; ".join(data.skipped_examples)
        out.append(f'<li data-metric="skipped">{data.skipped:,} input line(s) were not netwatch events and were '
                   f"skipped (e.g. {_e(examples)}).</li>")
    out += [f"<li>{_e(note)}</li>" for note in data.notes]
    out.append("<li>A contact is one observation of a name or address attributed to the app; the evidence "
               "samples show the rule that matched and where the packet or log line can be found again.</li>")
    out.append("</ul></section>")
    return "".join(out)
