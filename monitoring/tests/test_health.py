"""/healthz (liveness) and /readyz (readiness, detail for staff or a token)."""

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import UserFactory
from kreo.models import Heartbeat
from kreo.services import heartbeat_record
from monitoring import health

pytestmark = pytest.mark.django_db
TOKEN = "t" * 40


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_down(settings) -> None:
    """The shared cache at a Redis address nobody answers on (refused)."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CACHES = {
        "default": {"BACKEND": "kreo.cache.RedisCache", "LOCATION": url},
        "ratelimit": {"BACKEND": "kreo.cache.RedisCounterCache", "LOCATION": url},
    }


def test_healthz_is_cheap_and_says_nothing(client, django_assert_num_queries):
    """Liveness answers "ok" with no database query and no detail."""
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_readyz_names_database_cache_and_storage(client):
    """With everything up /readyz is 200 and each readiness check is "ok";
    an anonymous caller gets states only, no detail."""
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    for name in ("database", "cache", "storage"):
        assert body["checks"][name] == "ok"
    assert "detail" not in body


def test_readyz_fails_while_redis_is_unreachable_and_recovers(
    client, settings, redis_url
):
    """A Redis nobody answers on makes /readyz 503 naming the cache; the
    real Redis back, it is 200 again."""
    working = settings.CACHES
    _redis_down(settings)
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["cache"] == "unavailable"
    assert down.json()["checks"]["database"] == "ok"
    settings.CACHES = {
        **working,
        "default": {"BACKEND": "kreo.cache.RedisCache", "LOCATION": redis_url},
    }
    up = client.get("/readyz")
    assert up.status_code == 200
    assert up.json()["checks"]["cache"] == "ok"


def test_storage_unreachable_makes_readyz_fail(client, settings):
    """File storage at an S3 endpoint nobody answers on is not ready."""
    from botocore.config import Config

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "kreo-files",
                "endpoint_url": f"http://127.0.0.1:{_closed_port()}",
                "access_key": "test",
                "secret_key": "test",
                "region_name": "eu-west-2",
                "client_config": Config(retries={"max_attempts": 1}),
            },
        },
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable"
    assert response.json()["checks"]["database"] == "ok"


def test_a_missing_bucket_makes_readyz_fail(client, settings, s3_storage):
    """The storage's bucket gone (or never created) is not ready, though the
    S3 endpoint answers."""
    assert client.get("/readyz").json()["checks"]["storage"] == "ok"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {
                **settings.STORAGES["default"]["OPTIONS"],
                "bucket_name": "kreo-no-such-bucket",
            },
        },
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unavailable"


def test_staff_see_every_check_with_its_error(client, otp_login):
    """Staff get each check's result: no worker, no heartbeat and no backup
    are named, and they do not change readiness."""
    otp_login(client, UserFactory(is_staff=True))
    response = client.get("/readyz")
    assert response.status_code == 200
    detail = response.json()["detail"]
    assert set(detail) == {*health.READINESS, *health.SYSTEM}
    assert detail["beat_heartbeat"]["ok"] is False
    assert health.NO_HEARTBEAT in detail["beat_heartbeat"]["error"]
    assert detail["backup_age"]["ok"] is False
    assert health.NO_BACKUP in detail["backup_age"]["error"]
    assert detail["celery_worker"]["ok"] is False
    assert detail["database"] == {**detail["database"], "ok": True, "error": ""}


def test_detail_for_a_token_not_for_a_wrong_one_or_a_plain_user(client, settings):
    settings.MONITORING_TOKEN = TOKEN
    good = client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "detail" in good.json()
    wrong = client.get("/readyz", headers={"Authorization": "Bearer " + "x" * 40})
    assert "detail" not in wrong.json()
    client.force_login(UserFactory())
    assert "detail" not in client.get("/readyz").json()


def test_beat_heartbeat_fresh_then_stale(client, settings):
    """A heartbeat written by the beat task is healthy; one older than three
    beats is reported stale with its age."""
    settings.MONITORING_TOKEN = TOKEN
    auth = {"Authorization": f"Bearer {TOKEN}"}
    heartbeat_record(component=health.HEARTBEAT_COMPONENT)
    fresh = client.get("/readyz", headers=auth).json()["detail"]["beat_heartbeat"]
    assert fresh["ok"] is True
    Heartbeat.objects.filter(component=health.HEARTBEAT_COMPONENT).update(
        beat_at=timezone.now() - timedelta(seconds=4 * settings.KREO_HEARTBEAT_SECONDS)
    )
    stale = client.get("/readyz", headers=auth).json()["detail"]["beat_heartbeat"]
    assert stale["ok"] is False
    assert "last heartbeat is" in stale["error"]


def test_seal_lag_reported_until_the_sealer_catches_up(client, settings):
    """An audit event left unsealed past the sealing budget is seal lag; once
    the sealer has folded it into a seal the check is healthy again."""
    from audit.services import audit_record, audit_seal

    settings.MONITORING_TOKEN = TOKEN
    auth = {"Authorization": f"Bearer {TOKEN}"}
    audit_record(event_type="test.lag")
    settings.AUDIT_SEAL_INTERVAL_SECONDS = 0
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    lag = client.get("/readyz", headers=auth).json()["detail"]["seal_lag"]
    assert lag["ok"] is False
    assert "unsealed audit event" in lag["error"]
    assert audit_seal() > 0
    settings.AUDIT_SEAL_DELAY_SECONDS = 5
    assert client.get("/readyz", headers=auth).json()["detail"]["seal_lag"]["ok"]
