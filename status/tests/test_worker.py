"""The notification path as it runs: committed update, a real Celery worker."""

import pytest
from celery.contrib.testing.worker import start_worker

from kreo.celery import app as celery_app
from status.models import Delivery, IncidentStatus, Subscriber
from status.tests import factories

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def test_a_worker_mails_each_update_once(components, smtp):
    """Two updates committed: the worker mails each once, to the subscriber
    of the affected component only."""
    Subscriber.objects.create(
        kind="email", email="w@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    other = Subscriber.objects.create(
        kind="email", email="x@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    other.components.set([components["backups"]])
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        factories.incident(
            components=[components["web"]],
            updates=[
                (IncidentStatus.INVESTIGATING, "Slow pages."),
                (IncidentStatus.RESOLVED, "Fast again."),
            ],
        )
        messages = smtp.wait_for(2, seconds=60)
    assert [m["To"] for m in messages] == ["w@example.com", "w@example.com"]
    bodies = sorted(smtp.body(m) for m in messages)
    assert "Fast again." in bodies[0] or "Fast again." in bodies[1]
    assert Delivery.objects.filter(sent_at__isnull=False).count() == 2
