"""The rules as they run in production: the real ``celery beat`` sends the
"monitoring rules" entry, a real worker runs it and posts the signed webhook."""

import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from accounts.tests.factories import UserFactory
from audit.tests.test_anchors_beat import _beat
from kreo.schedule import sync_default_schedule
from kreo.testing.worker import WorkerProcess
from monitoring.models import Alert
from monitoring.tests.conftest import WEBHOOK_SECRET
from monitoring.tests.test_rules import _fail

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.celery
def test_beat_and_a_worker_raise_the_alert_and_post_it(
    client, rules_now, webhook, tmp_path
):
    """A brute force through the sign-in page; with no manual step, beat's
    rules entry raises the alert and the worker posts it, signed, within 60 s."""
    sync_default_schedule()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    assert PeriodicTask.objects.filter(
        name="monitoring rules", task="monitoring.tasks.rules_run"
    ).update(interval=every_second)
    PeriodicTask.objects.exclude(name="monitoring rules").update(enabled=False)
    UserFactory(email="victim@example.test")
    worker = WorkerProcess(
        tmp_path / "worker.log",
        MONITORING_RULES_SETTLE_SECONDS="0",
        MONITORING_WEBHOOK_URL=rules_now.MONITORING_WEBHOOK_URL,
        MONITORING_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    beat = _beat(tmp_path / "beat.log")
    try:
        for _ in range(10):
            _fail(client, "victim@example.test")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not webhook.requests:
            assert worker.alive(), worker.output()
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            time.sleep(0.5)
    finally:
        beat.terminate()
        beat.wait(30)
        worker.stop()
    logs = (tmp_path / "beat.log").read_text(errors="replace") + worker.output()
    assert "Sending due task monitoring rules" in logs
    alert = Alert.objects.get()
    assert (alert.rule, alert.subject) == ("brute_force", "victim@example.test")
    [message] = webhook.verified()
    assert f"alert #{alert.pk}" in message["text"]
