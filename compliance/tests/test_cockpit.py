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


# --- the cockpit in the admin ---------------------------------------------


def _staff(groups=(), *, staff=True):
    from django.contrib.auth.models import Group

    from accounts.tests.factories import UserFactory

    user = UserFactory(is_staff=staff)
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def evidence_run(db):
    moment = timezone.now() - timedelta(hours=1)
    earlier = moment - timedelta(days=1)
    run_at(earlier, {"backup-age": CheckStatus.FAIL})
    return run_at(
        moment,
        {"backup-age": CheckStatus.PASS},
        evidence={"backup-age": {"set_id": 41, "age_hours": 3.5, "copies": [1, 2, 3]}},
    )


def test_auditor_sees_status_mapping_evidence_and_charts(
    client, otp_login, evidence_run
):
    """An auditor sees each control with its status, ISO and SOC 2 mapping and
    last evidence, five charts, and a drill-down with the history and the full
    evidence."""
    from django.urls import reverse

    from kreo.permissions import AUDITOR_GROUP

    otp_login(client, _staff([AUDITOR_GROUP]))
    page = client.get(reverse("admin:compliance_cockpit"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-control="backup-age" data-status="pass"' in html
    assert 'data-iso27001="A.8.13"' in html and 'data-soc2="A1.2 CC7.2"' in html
    assert "&quot;age_hours&quot;: 3.5" in html
    assert html.count('class="compliance-chart"') == 5 and "Run checks now" in html
    detail = client.get(reverse("admin:compliance_control", args=["backup-age"]))
    text = detail.content.decode()
    assert detail.status_code == 200
    assert text.count("<tr data-result=") == 2
    assert '"copies": [\n    1,' in text.replace("&quot;", '"')
    missing = client.get(reverse("admin:compliance_control", args=["no-such"]))
    assert missing.status_code == 404
    runs_page = client.get(reverse("admin:compliance_checkrun_changelist"))
    assert runs_page.status_code == 200 and b"Run checks now" in runs_page.content
    result = evidence_run.results.get()
    change = client.get(
        reverse("admin:compliance_controlresult_change", args=[result.pk])
    )
    assert change.status_code == 200 and b"&quot;set_id&quot;: 41" in change.content
    assert b'name="_save"' not in change.content  # read-only: nothing to save


def test_cockpit_refused_outside_admin_and_auditor_groups(client, otp_login, db):
    """A signed-in user who is not staff is sent away; staff outside the Admin
    and Auditor groups are refused; staff of the Admin group get in."""
    from django.urls import reverse

    from kreo.permissions import ADMIN_GROUP

    url = reverse("admin:compliance_cockpit")
    client.force_login(_staff(staff=False))
    response = client.get(url)
    assert response.status_code in (302, 403)
    assert b"data-control" not in response.content
    client.logout()
    otp_login(client, _staff())
    assert client.get(url).status_code == 403
    assert (
        client.get(reverse("admin:compliance_checkrun_changelist")).status_code == 403
    )
    client.logout()
    otp_login(client, _staff([ADMIN_GROUP]))
    assert client.get(url).status_code == 200


def test_run_checks_now_needs_post_and_csrf(
    client, otp_login, db, django_capture_on_commit_callbacks
):
    """ "Run checks now" refuses GET and a POST without the CSRF token; a proper
    POST is audited and queues the task once."""
    import re

    from django.test import Client
    from django.urls import reverse

    from compliance import runs
    from kreo.permissions import AUDITOR_GROUP

    auditor = _staff([AUDITOR_GROUP])
    otp_login(client, auditor)
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies  # the verified session, now CSRF-checked
    url = reverse("admin:compliance_checkrun_run_now")
    assert strict.get(url).status_code == 405
    assert strict.post(url).status_code == 403
    page = strict.get(reverse("admin:compliance_cockpit")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    with django_capture_on_commit_callbacks() as queued:
        response = strict.post(url, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:compliance_cockpit")
    assert len(queued) == 1
    event = AuditEvent.objects.get(event_type=runs.RUN_REQUEST_EVENT)
    assert event.actor_id == auditor.pk and event.details["task_id"]
