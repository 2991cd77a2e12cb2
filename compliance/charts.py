"""The cockpit's charts as hand-built SVG, from ``compliance.series``.

No script and no third-party library: the markup is written here, so the
same charts render in the admin page and in the evidence pack's PDF. Each
chart carries a ``<title>`` and a ``<desc>`` (a sentence a screen reader
reads: the period, latest, lowest and highest value, days without data),
axis titles and tick labels, dark strokes that survive black-and-white
printing, and a second series told apart by its pattern as well as its
colour. A day without data (``None``) is a gap: the line breaks there and
no bar is drawn. Every plotted value is an element with ``data-series``,
``data-date`` and ``data-value``, so a test (or an auditor) reads the
figures back from the markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.utils.html import escape

from compliance import series as series_mod

WIDTH = 720
HEIGHT = 250
LEFT, RIGHT, TOP, BOTTOM = 64, 20, 34, 48
INK = "#1a1a1a"
GRID = "#c8c8c8"
COLOURS = ("#1f4e79", "#b8541a")
NO_DATA = "No data in this period."


@dataclass
class Chart:
    key: str
    title: str
    y_label: str
    kind: str  # "line" or "bar"
    lines: list[tuple[str, str, series_mod.Series]]  # (series key, label, data)
    share: bool = False  # values 0..1 shown as percent
    limit: tuple[float, str] | None = None  # a reference line (value, label)
    extra: dict = field(default_factory=dict)


def _fmt(value: float, share: bool) -> str:
    if share:
        return f"{value * 100:.0f}%"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.1f}"


def _nice_step(top: float) -> float:
    raw = top / 4 if top > 0 else 1
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _y_axis(chart: Chart, values: list[float]) -> tuple[float, list[float]]:
    if chart.share:
        return 1.0, [0, 0.25, 0.5, 0.75, 1.0]
    top = max(values + ([chart.limit[0]] if chart.limit else []) + [0])
    step = _nice_step(top or 1)
    ticks = [step * n for n in range(int(math.ceil((top or 1) / step)) + 1)]
    if len(ticks) < 2:
        ticks.append(step)
    return ticks[-1], ticks


def _describe(chart: Chart, days: list[date]) -> str:
    parts = [f"{chart.title}, {days[0]:%d %b %Y} to {days[-1]:%d %b %Y}."]
    for _key, label, data in chart.lines:
        known = [(d, v) for d, v in data if v is not None]
        gaps = len(data) - len(known)
        if not known:
            parts.append(f"{label}: no data.")
            continue
        values = [v for _, v in known]
        last_day, last = known[-1]
        parts.append(
            f"{label}: latest {_fmt(last, chart.share)} on {last_day:%d %b}, "
            f"lowest {_fmt(min(values), chart.share)}, "
            f"highest {_fmt(max(values), chart.share)}"
            + (f"; {gaps} day(s) without data." if gaps else ".")
        )
    if chart.limit:
        parts.append(f"Limit: {_fmt(chart.limit[0], chart.share)}.")
    return " ".join(parts)


def svg(chart: Chart) -> str:
    """The SVG markup of ``chart``."""
    days = [d for d, _ in chart.lines[0][2]]
    values = [v for _, _, data in chart.lines for _, v in data if v is not None]
    y_max, ticks = _y_axis(chart, values)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_w / max(len(days), 1)

    def x(i: int) -> float:
        return LEFT + (i + 0.5) * band

    def y(v: float) -> float:
        return TOP + plot_h * (1 - min(v, y_max) / y_max)

    uid = f"chart-{chart.key}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" class="compliance-chart" '
        f'aria-labelledby="{uid}-title {uid}-desc" '
        f'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<title id="{uid}-title">{escape(chart.title)}</title>',
        f'<desc id="{uid}-desc">{escape(_describe(chart, days))}</desc>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    # Grid and y axis.
    for tick in ticks:
        ty = y(tick)
        out.append(
            f'<line x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}" '
            f'stroke="{GRID}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" '
            f'fill="{INK}">{_fmt(tick, chart.share)}</text>'
        )
    out.append(
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" '
        f'stroke="{INK}" stroke-width="1.5"/>'
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" '
        f'y2="{TOP + plot_h}" stroke="{INK}" stroke-width="1.5"/>'
    )
    # X ticks: about eight labels whatever the period.
    every = max(1, math.ceil(len(days) / 8))
    for i, day in enumerate(days):
        if i % every:
            continue
        out.append(
            f'<line x1="{x(i):.1f}" y1="{TOP + plot_h}" x2="{x(i):.1f}" '
            f'y2="{TOP + plot_h + 4}" stroke="{INK}"/>'
            f'<text x="{x(i):.1f}" y="{TOP + plot_h + 17}" text-anchor="middle" '
            f'fill="{INK}">{day:%d %b}</text>'
        )
    # Axis titles.
    out.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" '
        f'fill="{INK}">Day ({escape(settings.TIME_ZONE)})</text>'
        f'<text transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="{INK}">{escape(chart.y_label)}</text>'
    )
    if chart.limit:
        value, label = chart.limit
        out.append(
            f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{y(value):.1f}" stroke="#a10000" stroke-width="1.5" '
            f'stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{y(value) - 5:.1f}" text-anchor="end" '
            f'fill="#a10000">{escape(label)}</text>'
        )
    if chart.kind == "bar":
        out += _bars(chart, x, y, band, TOP + plot_h)
    else:
        out += _lines(chart, x, y)
    out += _legend(chart)
    if not values:
        out.append(
            f'<text x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            f'text-anchor="middle" fill="{INK}" font-size="14">{NO_DATA}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _lines(chart: Chart, x, y) -> list[str]:
    out = []
    for n, (key, _label, data) in enumerate(chart.lines):
        colour = COLOURS[n % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if n else ""
        path, pen_down = [], False
        for i, (_day, value) in enumerate(data):
            if value is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x(i):.1f} {y(value):.1f}")
            pen_down = True
        if path:
            out.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}/>'
            )
        for i, (day, value) in enumerate(data):
            if value is None:
                continue
            out.append(
                f'<circle class="point" cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" '
                f'fill="{colour}" data-series="{key}" data-date="{day.isoformat()}" '
                f'data-value="{value}"><title>{day:%d %b %Y}: '
                f"{_fmt(value, chart.share)}</title></circle>"
            )
    return out


def _bars(chart: Chart, x, y, band: float, base: float) -> list[str]:
    out = []
    count = len(chart.lines)
    width = max(band * 0.8 / count, 1)
    for n, (key, label, data) in enumerate(chart.lines):
        colour = COLOURS[n % len(COLOURS)]
        fill = colour if n == 0 else "#ffffff"
        for i, (day, value) in enumerate(data):
            if value is None:
                continue
            left = x(i) - band * 0.4 + n * width
            top = y(value)
            out.append(
                f'<rect class="point" x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" '
                f'height="{base - top:.1f}" fill="{fill}" stroke="{colour}" '
                f'stroke-width="1" data-series="{key}" data-date="{day.isoformat()}" '
                f'data-value="{value}"><title>{day:%d %b %Y}: {escape(label)}, '
                f"{_fmt(value, chart.share)}</title></rect>"
            )
    return out


def _legend(chart: Chart) -> list[str]:
    out, left = [], LEFT
    for n, (_key, label, _data) in enumerate(chart.lines):
        colour = COLOURS[n % len(COLOURS)]
        if chart.kind == "bar":
            fill = colour if n == 0 else "#ffffff"
            mark = (
                f'<rect x="{left}" y="10" width="12" height="12" fill="{fill}" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if n else ""
            mark = (
                f'<line x1="{left}" y1="16" x2="{left + 18}" y2="16" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
        out.append(
            mark + f'<text x="{left + 24}" y="20" fill="{INK}">{escape(label)}</text>'
        )
        left += 34 + 7 * len(label)
    return out


def charts(*, start: date, end: date) -> list[Chart]:
    data = series_mod.daily(start=start, end=end)
    limit = settings.BACKUP_MAX_AGE_HOURS
    return [
        Chart(
            "pass-rate",
            "Controls passing",
            "Controls passing",
            "line",
            [("pass_rate", "Share passing", data["pass_rate"])],
            share=True,
        ),
        Chart(
            "backup-age",
            "Age of the latest good backup",
            "Hours",
            "line",
            [("backup_age_hours", "Age (hours)", data["backup_age_hours"])],
            limit=(float(limit), f"limit {limit} h"),
        ),
        Chart(
            "failed-signins",
            "Failed sign-ins per day",
            "Failed sign-ins",
            "bar",
            [("failed_signins", "Failed sign-ins", data["failed_signins"])],
        ),
        Chart(
            "twofa-adoption",
            "Two-factor adoption (active accounts)",
            "Accounts with 2FA",
            "line",
            [("twofa_adoption", "Share with 2FA", data["twofa_adoption"])],
            share=True,
        ),
        Chart(
            "alerts",
            "Alerts opened and closed per day",
            "Alerts",
            "bar",
            [
                ("alerts_opened", "Opened", data["alerts_opened"]),
                ("alerts_closed", "Closed", data["alerts_closed"]),
            ],
        ),
    ]


def chart_svgs(*, start: date, end: date) -> list[tuple[str, str]]:
    """(title, SVG markup) of every cockpit chart from ``start`` to ``end``."""
    return [(chart.title, svg(chart)) for chart in charts(start=start, end=end)]
