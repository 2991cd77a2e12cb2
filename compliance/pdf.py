"""The evidence pack's PDF report: a Django template rendered by WeasyPrint.

WeasyPrint lays out HTML and CSS, inline SVG included, so the cockpit's
charts (``compliance.charts.chart_svgs``) go in as they are drawn for the
page; no third-party script, no network (every URL fetch is refused).
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

TEMPLATE = "compliance/pack/report.html"


def _no_fetch(url: str, *args, **kwargs):
    raise ValueError(f"the report fetches nothing ({url})")


def report_pdf(context: dict) -> bytes:
    """The report's PDF bytes for the context ``compliance.pack`` builds."""
    import weasyprint

    # The SVG is drawn by compliance.charts from our own figures, escaped there.
    charts = [(title, mark_safe(svg)) for title, svg in context.get("charts", [])]  # noqa: S308  # nosec B308 B703
    html = render_to_string(TEMPLATE, {**context, "charts": charts})
    return weasyprint.HTML(string=html, url_fetcher=_no_fetch).write_pdf()
