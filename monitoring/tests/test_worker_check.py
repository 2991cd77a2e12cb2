"""The Celery worker check pings real workers through the configured broker."""

import pytest
from celery.contrib.testing.worker import start_worker

from kreo.celery import app

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "w" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _worker_detail(client):
    return client.get("/readyz", headers=AUTH).json()["detail"]["celery_worker"]


def test_worker_check_follows_the_workers(client, settings):
    """No worker: unavailable. A worker serving every queue: ok. One serving
    only the default queue: the backups queue is named as served by none."""
    if not settings.REDIS_URL:
        pytest.skip("the embedded default's filesystem broker has no remote control")
    settings.MONITORING_TOKEN = TOKEN
    default = app.conf.task_default_queue
    backups = next(q.name for q in app.conf.task_queues if q.name != default)
    assert _worker_detail(client)["ok"] is False
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=[default, backups],
    ):
        up = _worker_detail(client)
    assert (up["ok"], up["error"]) == (True, "")
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=[default],
    ):
        partial = _worker_detail(client)
    assert partial["ok"] is False
    assert backups in partial["error"]
