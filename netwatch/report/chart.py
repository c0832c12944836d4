"""The per-device timeline of contacts, drawn by matplotlib as static SVG.

Why matplotlib: it is the most widely maintained Python plotting library, its SVG needs no
JavaScript and no network (the page stays self-contained and prints sharply), and text stays text
(`svg.fonttype: none`), so names in the chart can be searched and copied. The figure is built with
the object API (no pyplot global state), and mathtext is off: device names come from the network,
and a `$` in a DHCP host name must print as a dollar sign, not start a formula.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from .data import ReportData

MAX_DEVICES = 40
TIME_BUCKETS = 160  # contacts of one device and app closer than 1/160 of the range share one dot (about its width)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _label(text: str, limit: int = 36) -> str:
    text = _CONTROL.sub("?", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timeline_svg(data: ReportData) -> str | None:
    """An inline `<svg>` element, or None when there is nothing to draw."""
    if not data.timeline:
        return None
    try:
        import matplotlib
        from matplotlib import dates as mdates
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - a declared dependency of the report extra
        raise RuntimeError("netwatch report needs matplotlib: python3 -m pip install 'matplotlib>=3.8' "
                           "(or '.[report]' in a netwatch checkout)") from exc

    devices = data.flagged_devices()[:MAX_DEVICES]
    row = {device: i for i, device in enumerate(devices)}
    apps = data.apps()
    first = min(ts for ts, _, _ in data.timeline)
    bucket = max((max(ts for ts, _, _ in data.timeline) - first) / TIME_BUCKETS, 1e-6)
    dots: dict[str, dict[tuple[int, int], float]] = {}
    for ts, device, app in data.timeline:
        if device in row:
            dots.setdefault(app, {}).setdefault((row[device], int((ts - first) / bucket)), ts)
    style = {
        "svg.fonttype": "none", "svg.hashsalt": "netwatch", "text.parse_math": False, "font.size": 9,
        "font.family": "DejaVu Sans", "axes.spines.top": False, "axes.spines.right": False,
    }
    with matplotlib.rc_context(style):
        height = 1.3 + 0.32 * len(devices)
        fig = Figure(figsize=(10, height), dpi=96)
        ax = fig.add_subplot()
        colours = matplotlib.colormaps["tab10"].colors
        for index, (app, name) in enumerate(apps):
            points = dots.get(app)
            if not points:
                continue
            xs = [datetime.fromtimestamp(ts, UTC) for ts in points.values()]
            ys = [y for y, _ in points]
            ax.plot(xs, ys, linestyle="none", marker="o", markersize=6, markeredgewidth=0,
                    color=colours[index % len(colours)], label=_label(name, 24), zorder=3)
        ax.set_yticks(range(len(devices)), [_label(data.devices[d].label) for d in devices])
        ax.set_ylim(len(devices) - 0.5, -0.5)
        ax.grid(axis="x", color="#dddddd", zorder=0)
        for y in range(len(devices)):
            ax.axhline(y, color="#f0f0f0", linewidth=0.8, zorder=1)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        ax.set_xlabel("time (UTC)")
        ax.set_title("Contacts with banned apps per device", loc="left", fontsize=11)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, title="app")
        fig.subplots_adjust(left=0.28, right=0.82, top=1 - 0.45 / height, bottom=0.7 / height)
        out = io.StringIO()
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": "netwatch (matplotlib)"})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
