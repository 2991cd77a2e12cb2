"""The cockpit's series and charts, and who may see the cockpit."""

from datetime import UTC, datetime, time, timedelta
from xml.etree import ElementTree as ET  # noqa: S405 - our own markup  # nosec B405

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from backups.models import BackupSet, SetState
from compliance import charts, series
from compliance.models import CheckRun, CheckStatus, ControlResult
from monitoring.models import Alert, AlertState

SVG = "{http://www.w3.org/2000/svg}"


def at(day, hour=12):
    return datetime.combine(day, time(hour), tzinfo=UTC)


def run_at(moment, statuses: dict, evidence: dict | None = None) -> CheckRun:
    run = CheckRun.objects.create(
        started_at=moment, finished_at=moment, trigger="schedule"
    )
    for control_id, status in statuses.items():
        ControlResult.objects.create(
            run=run,
            control_id=control_id,
            checked_at=moment,
            status=status,
            summary=f"{control_id} {status}",
            evidence=(evidence or {}).get(control_id, {"seeded": True}),
        )
    return run


@pytest.fixture
def seeded(db):
    """Five days of activity ending three days ago."""
    start = timezone.localdate() - timedelta(days=7)
    days = [start + timedelta(days=n) for n in range(5)]
    run_at(
        at(days[0]),
        {
            "a": CheckStatus.PASS,
            "b": CheckStatus.PASS,
            "c": CheckStatus.FAIL,
            "d": CheckStatus.NOT_APPLICABLE,
        },
    )
    # Day 2: no run at all. Day 3: a failing run, then a passing one.
    run_at(at(days[2], 8), {"a": CheckStatus.FAIL, "b": CheckStatus.FAIL})
    run_at(
        at(days[2], 20),
        {"a": CheckStatus.PASS, "b": CheckStatus.PASS, "2fa": CheckStatus.PASS},
        evidence={"2fa": {"twofa_adoption": 0.625, "staff": 1.0}},
    )
    BackupSet.objects.create(
        created_at=at(days[0], 5), finished_at=at(days[0], 6), state=SetState.GOOD
    )
    BackupSet.objects.create(
        created_at=at(days[3], 5), finished_at=at(days[3], 6), state=SetState.FAILED
    )
    for hour in (1, 2, 3):
        AuditEvent.objects.create(
            occurred_at=at(days[1], hour),
            event_type="auth.login.failure",
            outcome="failure",
            actor_label="x@example.test",
        )
    AuditEvent.objects.create(
        occurred_at=at(days[1], 4), event_type="auth.login.success", outcome="success"
    )
    Alert.objects.create(
        rule="brute_force",
        severity="high",
        subject_kind="ip",
        subject="192.0.2.1",
        summary="seeded",
        first_seen=at(days[0]),
        last_seen=at(days[0]),
        state=AlertState.RESOLVED,
        resolved_at=at(days[2]),
    )
    return days


def test_series_follow_the_seeded_activity(seeded):
    """Each day's figures are what the seeded rows say; a day without data is
    a gap, never a zero."""
    days = seeded
    data = series.daily(start=days[0], end=days[-1])
    assert [v for _, v in data["pass_rate"]] == [round(2 / 3, 4), None, 1.0, None, None]
    assert [v for _, v in data["twofa_adoption"]] == [None, None, 0.625, None, None]
    # Good backup finished 06:00 on day 1; a failed set does not count.
    assert [v for _, v in data["backup_age_hours"]] == [18.0, 42.0, 66.0, 90.0, 114.0]
    assert [v for _, v in data["failed_signins"]] == [0, 3, 0, 0, 0]
    assert [v for _, v in data["alerts_opened"]] == [1, 0, 0, 0, 0]
    assert [v for _, v in data["alerts_closed"]] == [0, 0, 1, 0, 0]


def test_charts_parse_and_plot_the_series(seeded):
    """Every chart is well-formed SVG with a title and description, and its
    plotted points are exactly the series' values (gaps left out)."""
    days = seeded
    data = series.daily(start=days[0], end=days[-1])
    found = charts.chart_svgs(start=days[0], end=days[-1])
    assert len(found) == 5
    plotted = {}
    for title, markup in found:
        root = ET.fromstring(markup)  # noqa: S314 - our own markup  # nosec B314
        assert root.tag == f"{SVG}svg"
        assert root.find(f"{SVG}title").text == title
        assert root.find(f"{SVG}desc").text.startswith(title)
        for node in root.iter():
            if node.get("data-series"):
                plotted.setdefault(node.get("data-series"), []).append(
                    (node.get("data-date"), float(node.get("data-value")))
                )
    expected = {
        key: [(d.isoformat(), float(v)) for d, v in values if v is not None]
        for key, values in data.items()
    }
    assert plotted == expected
    assert ("2fa" not in plotted) and len(plotted["pass_rate"]) == 2
