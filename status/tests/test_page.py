"""The public page: banner, components with 90-day bars, incidents, history."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from status import probes, selectors, services
from status.models import ComponentState, IncidentStatus, ProbeResult, Sample
from status.tests import factories

pytestmark = pytest.mark.django_db


def _samples(component, results, *, start=None):
    start = start or timezone.now() - timedelta(minutes=len(results) + 1)
    for i, result in enumerate(results):
        services.sample_record(
            component=component,
            outcome=probes.Outcome(result, 5, ""),
            at=start + timedelta(minutes=i),
        )


def test_operational_page_has_banner_bars_and_text(client, components):
    """All good: the green banner, six components, 90 bars each with a text
    equivalent, the 90-day percentage, no third-party script."""
    _samples(components["web"], [ProbeResult.OK] * 4)
    response = client.get(reverse("status:index"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "All Systems Operational" in html
    for name in ("Web app", "API", "Sign-in", "File storage", "Backups", "Email"):
        assert name in html
    assert html.count("<svg") == 6
    assert len(re.findall(r'<rect class="day-', html)) == 6 * 90
    today = timezone.now().date().isoformat()
    assert f"<title>{today}; 100.00% uptime</title>" in html
    assert "100.00% uptime" in html
    assert 'role="img"' in html and "Daily uptime of Web app as text" in html
    scripts = re.findall(r"<script[^>]*src=\"([^\"]+)\"", html)
    assert scripts and all(s.startswith("/static/") for s in scripts)
    assert 'name="viewport"' in html


def test_an_outage_colours_the_day_and_lowers_the_percentage(client, components):
    """Failures in a row: the banner says so, today's bar takes the worst state
    and the day's uptime counts the failed probes."""
    _samples(components["storage"], [ProbeResult.OK] * 5 + [ProbeResult.FAIL] * 5)
    html = client.get(reverse("status:index")).content.decode()
    assert "Major Service Outage" in html
    today = timezone.now().date().isoformat()
    assert f"{today}; 50.00% uptime; worst: major outage" in html
    row = selectors.uptime(components["storage"])
    assert row.percent == 50.0
    assert row.days[-1].css == ComponentState.MAJOR


def test_maintenance_does_not_count_against_uptime(client, components):
    """Failures inside a maintenance window leave the uptime at 100%."""
    storage = components["storage"]
    start = timezone.now() - timedelta(minutes=20)
    factories.maintenance(components=[storage], starts=start - timedelta(minutes=1))
    _samples(storage, [ProbeResult.FAIL] * 5, start=start)
    storage.refresh_from_db()
    assert storage.state == ComponentState.MAINTENANCE
    _samples(storage, [ProbeResult.OK] * 3, start=start - timedelta(hours=2))
    row = selectors.uptime(storage)
    assert row.percent == 100.0
    html = client.get(reverse("status:index")).content.decode()
    assert "Database upgrade" in html
    assert "maintenance (not counted)" in html
    assert Sample.objects.filter(component=storage).count() == 8


def test_an_incident_is_shown_escaped_with_a_permalink(client, components):
    """An update with HTML in it shows the characters typed, never markup;
    the incident has its own page."""
    item = factories.incident(
        components=[components["api"]],
        updates=[(IncidentStatus.INVESTIGATING, "<script>alert(1)</script> <b>x</b>")],
    )
    html = client.get(reverse("status:index")).content.decode()
    assert "Active incidents" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;x&lt;/b&gt;" in html
    assert "Partial System Outage" in html  # impact major
    page = client.get(item.get_absolute_url())
    assert page.status_code == 200
    assert "&lt;b&gt;x&lt;/b&gt;" in page.content.decode()
    assert client.get("/status/incidents/nosuch/").status_code == 404


def test_history_is_paginated(client, components):
    """Eleven incidents: ten on the first page, one on page 2, 404 past it."""
    for n in range(11):
        factories.incident(
            title=f"Incident {n}",
            updates=[(IncidentStatus.RESOLVED, "Fixed.")],
        )
    first = client.get(reverse("status:index")).content.decode()
    assert "Incident 10" in first and "Incident 0<" not in first
    assert 'href="/status/history/2/"' in first
    second = client.get(reverse("status:history", kwargs={"page": 2}))
    assert second.status_code == 200
    assert "Incident 0<" in second.content.decode()
    assert client.get(reverse("status:history", kwargs={"page": 3})).status_code == 404


def test_times_are_in_utc(client, components):
    factories.incident()
    html = client.get(reverse("status:index")).content.decode()
    assert re.search(
        r'<time datetime="[^"]+\+00:00">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', html
    )


def test_an_incident_colours_its_days_and_is_named_in_the_tooltip(client, components):
    """A major incident on the API: today's bar is at least partial outage,
    and the day's text names the incident, though every probe was good."""
    _samples(components["api"], [ProbeResult.OK] * 3)
    factories.incident(title="API 5xx", components=[components["api"]])
    row = selectors.uptime(components["api"])
    assert row.days[-1].css == ComponentState.PARTIAL
    assert row.percent == 100.0
    html = client.get(reverse("status:index")).content.decode()
    assert "100.00% uptime; incident: API 5xx" in html


def test_maintenance_set_afterwards_gives_the_time_back(client, components):
    """Failures first, the window written after (as staff do): the day is
    counted again without them; the window removed, they count again."""
    storage = components["storage"]
    start = timezone.now() - timedelta(minutes=30)
    _samples(storage, [ProbeResult.OK] * 2, start=start - timedelta(minutes=10))
    _samples(storage, [ProbeResult.FAIL] * 4, start=start + timedelta(minutes=1))
    assert selectors.uptime(storage).percent == pytest.approx(33.33)
    window = factories.maintenance(components=[storage], starts=start)
    services.maintenance_saved(actor=None, maintenance=window)
    assert selectors.uptime(storage).percent == 100.0
    services.maintenance_delete(actor=None, maintenance=window)
    assert selectors.uptime(storage).percent == pytest.approx(33.33)
