import uuid
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit import chain, keys
from audit.models import AuditEvent
from conftest import REGION, S3_ENDPOINT, make_bucket


@pytest.fixture
def attacker_sql(superuser_sql_or_none):
    """Run SQL as the attacker: a PostgreSQL superuser with the triggers off,
    or on SQLite (no triggers) the application's own connection."""
    if superuser_sql_or_none is not None:
        return lambda sql, args=None: superuser_sql_or_none(sql, args, bypass=True)

    def run(sql, args=None):
        with connection.cursor() as cursor:
            cursor.execute(sql, args)

    return run


@pytest.fixture
def superuser_sql_or_none(request):
    if connection.vendor != "postgresql":
        return None
    return request.getfixturevalue("superuser_sql")


@pytest.fixture
def sealed_now(settings):
    """Seal events as soon as they are recorded."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    return settings


@pytest.fixture
def superuser_sql():
    """Run SQL on the test database as a PostgreSQL superuser (the attacker)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    params = connection.get_connection_params()
    conn = psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        user="postgres",
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )

    def run(sql, args=None, bypass=False):
        """``bypass`` disables triggers for this session first (superuser only)."""
        with conn.cursor() as cursor:
            if bypass:
                cursor.execute("SET session_replication_role = replica")
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None

    yield run
    conn.close()


def verify_output(*args):
    """Run audit_verify; return (ok, text)."""
    from io import StringIO

    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return False, out.getvalue() + str(exc)
    return True, out.getvalue()


def make_old_events(
    n: int, days_ago: int = 40, details=None, *, legacy: bool = False
) -> None:
    """Insert ``n`` keyed events dated ``days_ago`` days back, in id order;
    ``details(i)`` gives each one's details (``{"i": i}`` by default);
    ``legacy``: hashed only, as written before event MACs."""
    start = timezone.now() - timedelta(days=days_ago)
    batch = []
    for i in range(n):
        event = AuditEvent(
            occurred_at=start + timedelta(milliseconds=i),
            event_type="file.download",
            outcome="success",
            actor_label=f"user{i % 50}@example.test",
            source_ip="198.51.100.7",
            method="GET",
            path=f"/projects/{i}/",
            details=details(i) if details else {"i": i},
        )
        if legacy:
            event.content_hash = chain.content_hash(chain.event_values(event))
        else:
            chain.sign_event(event, *keys.event_key_current())
        batch.append(event)
    AuditEvent.objects.bulk_create(batch, batch_size=500)


@pytest.fixture
def archive_bucket(settings, s3_client):
    bucket = make_bucket(s3_client, f"kreo-audit-{uuid.uuid4().hex[:12]}")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.AUDIT_ARCHIVE_S3_REGION = REGION
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    settings.AUDIT_SEAL_BATCH = 500
    settings.AUDIT_ARCHIVE_MAX_EVENTS = 1000
    return bucket
