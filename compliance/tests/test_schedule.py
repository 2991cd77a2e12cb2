"""The daily run of the checks: scheduled, stored, audited, and a control
that goes from pass to fail raised as one alert."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.conftest import mail_now, smtp  # noqa: F401 - fixtures
from audit.models import AuditEvent
from compliance import runs, tasks
from compliance.models import CheckRun, CheckStatus, ControlResult
from compliance.tests.seed import backup_set
from kreo.celery import app as celery_app
from kreo.schedule import sync_default_schedule
from monitoring.models import Alert

ONLY = ["backup-age"]


def test_beat_runs_the_checks_daily(db):
    """After migrate (and any later sync) beat has a daily "compliance checks"
    entry, editable in the admin, naming a task the worker knows."""
    from django_celery_beat.models import PeriodicTask

    sync_default_schedule()
    entry = PeriodicTask.objects.get(name="compliance checks")
    assert entry.task == "compliance.tasks.checks_run"
    assert entry.interval.every == 24 * 3600 and entry.enabled
    assert "compliance.tasks.checks_run" in celery_app.tasks


@pytest.fixture
def fresh_backup(db):
    return backup_set(timezone.now() - timedelta(hours=10))


def _run() -> CheckRun:
    run_id = tasks.checks_run.apply(kwargs={"only": ONLY}).get()
    return CheckRun.objects.get(pk=run_id)


def test_the_task_stores_results_and_is_audited(fresh_backup):
    """The task stores one result per control with time, status and evidence,
    and records the run in the audit trail."""
    run = _run()
    result = ControlResult.objects.get(run=run, control_id="backup-age")
    assert run.trigger == "schedule" and run.finished_at is not None
    assert result.status == CheckStatus.PASS
    assert result.evidence["set_id"] == fresh_backup.pk
    event = AuditEvent.objects.get(event_type=runs.RUN_EVENT, target_id=str(run.pk))
    assert event.actor_label == "compliance"
    assert event.details["statuses"] == {"pass": 1}


def test_pass_to_fail_raises_one_alert_fail_to_fail_none(
    fresh_backup,
    settings,
    smtp,  # noqa: F811 - the fixture
    mail_now,  # noqa: F811 - the fixture
):
    """A control that passed and now fails opens exactly one monitoring alert
    (audited as opened, mailed to the alert address); failing again the next
    day opens none."""
    settings.MONITORING_ALERT_EMAILS = ["soc@example.test"]
    _run()
    assert not Alert.objects.filter(rule=runs.REGRESSION_RULE).exists()
    settings.BACKUP_MAX_AGE_HOURS = 5  # the 10 h old backup is now too old
    with mail_now():
        failed = _run()
    [mail] = smtp.wait_for(1)
    assert smtp.to("soc@example.test") == [mail]
    assert "backup-age" in smtp.body(mail)
    alerts = Alert.objects.filter(rule=runs.REGRESSION_RULE)
    assert alerts.count() == 1
    alert = alerts.get()
    assert alert.subject == "backup-age" and alert.state == "open"
    assert alert.details["run"] == failed.pk
    assert "A.8.13" in alert.details["iso27001"]
    assert AuditEvent.objects.filter(
        event_type="monitoring.alert.open", target_id=str(alert.pk)
    ).exists()
    again = _run()
    assert ControlResult.objects.get(run=again).status == CheckStatus.FAIL
    assert Alert.objects.filter(rule=runs.REGRESSION_RULE).count() == 1
    assert Alert.objects.get().count == 1
    event = AuditEvent.objects.filter(event_type=runs.RUN_EVENT).order_by("-id")[0]
    assert event.details["regressions"] == []
