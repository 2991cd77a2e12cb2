"""The system checks behind /readyz's detail and /metrics' system figures:
backup age and the last drill, audit anchors."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from audit import anchors
from audit.services import audit_record, audit_seal
from backups.models import BackupSet, RestoreDrill, SetState
from monitoring import health

pytestmark = pytest.mark.django_db
TOKEN = "s" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def token(settings):
    settings.MONITORING_TOKEN = TOKEN


def _detail(client, name):
    return client.get("/readyz", headers=AUTH).json()["detail"][name]


def _gauges(client) -> dict:
    text = client.get("/metrics", headers=AUTH).content.decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def _backup(hours_ago: float, state=SetState.GOOD) -> BackupSet:
    """A catalogue row as backup_now leaves it (the copies are not read here)."""
    at = timezone.now() - timedelta(hours=hours_ago)
    return BackupSet.objects.create(created_at=at, finished_at=at, state=state)


def test_an_old_backup_is_reported_and_a_fresh_one_is_not(client, settings):
    """Past BACKUP_MAX_AGE_HOURS the newest good set is named stale; a newer
    incomplete set does not count; a fresh good one clears it."""
    _backup(settings.BACKUP_MAX_AGE_HOURS + 4)
    _backup(1, state=SetState.INCOMPLETE)
    old = _detail(client, "backup_age")
    assert old["ok"] is False
    assert "the newest good backup is" in old["error"]
    age = _gauges(client)["kreo_backup_age_seconds"]
    assert age == pytest.approx((settings.BACKUP_MAX_AGE_HOURS + 4) * 3600, abs=120)

    _backup(1)
    fresh = _detail(client, "backup_age")
    assert (fresh["ok"], fresh["error"]) == (True, "")
    assert _gauges(client)["kreo_backup_age_seconds"] < 3700


def test_a_failed_drill_is_a_warning_and_a_metric(client):
    """The last drill failing is said (without making readiness fail), and
    /metrics shows it as 0."""
    good = _backup(1)
    RestoreDrill.objects.create(backup_set=good, started_at=timezone.now(), ok=False)
    detail = _detail(client, "backup_age")
    assert health.DRILL_FAILED in detail["error"]
    assert client.get("/readyz").status_code == 200
    assert _gauges(client)["kreo_backup_drill_last_ok"] == 0
    RestoreDrill.objects.create(backup_set=good, started_at=timezone.now(), ok=True)
    assert _gauges(client)["kreo_backup_drill_last_ok"] == 1
    assert _detail(client, "backup_age")["error"] == ""


def test_seals_not_anchored_are_reported_until_anchored(client, settings):
    """A seal no anchor outside the database pins is named; once the anchor
    is written the check is healthy."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    audit_record(event_type="test.anchor")
    assert audit_seal() > 0
    behind = _detail(client, "audit_anchors")
    assert behind["ok"] is False
    assert "is not anchored outside the database" in behind["error"]
    assert anchors.anchor_write() is not None
    assert _detail(client, "audit_anchors")["ok"] is True


def test_an_old_anchor_is_reported(client, settings):
    """Anchoring that stopped (the newest anchor older than three periods)
    is reported even with every seal anchored."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    audit_record(event_type="test.anchor")
    audit_seal()
    anchors.anchor_write()
    settings.AUDIT_ANCHOR_SECONDS = 0
    stale = _detail(client, "audit_anchors")
    assert stale["ok"] is False
    assert "the newest anchor is" in stale["error"]
