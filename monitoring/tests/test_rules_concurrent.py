"""Two rule runs at once (a slow run still going when beat sends the next)
read each event once and raise one alert."""

import threading

import pytest
from django.db import connection, connections

from monitoring import services
from monitoring.models import Alert, RuleCursor
from monitoring.tests.test_rules import _fail

pytestmark = pytest.mark.django_db(transaction=True)


def test_overlapping_runs_read_each_event_once(client, rules_now):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update) are PostgreSQL's")
    for _ in range(12):
        _fail(client, "victim@example.test")
    results, errors = [], []

    def run():
        try:
            results.append(services.rules_run(batch_size=2))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [], errors
    assert sum(r["opened"] for r in results) == 1
    assert Alert.objects.filter(rule="brute_force").count() == 1
    read = sum(r["events"] for r in results)
    assert RuleCursor.objects.get().events_read == read
    assert read in (12, 13)  # 13 when a run also read the alert's own event
