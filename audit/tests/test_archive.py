"""Archival to the S3 server: encrypted, verified, resumable."""

import json
from urllib.parse import urlparse

import pytest
from django.db import connection

from audit import archive
from audit.models import ArchiveState, AuditArchive, AuditEvent
from audit.services import audit_record, audit_seal
from audit.tests.conftest import make_old_events, verify_output
from audit.tests.s3proxy import Relay
from conftest import S3_ENDPOINT

pytestmark = pytest.mark.django_db(transaction=True)


def test_old_events_archived_encrypted_and_verified(archive_bucket, s3_client):
    """Events past retention move to S3 encrypted with a manifest; recent ones
    stay; the trail still verifies over archive plus hot store."""
    make_old_events(2500)
    recent = audit_record(event_type="file.download", actor_label="recent@x.test")
    audit_seal()
    summary = archive.run()
    assert summary["purged"] == 2500
    assert list(AuditEvent.objects.values_list("id", flat=True)) == [recent.pk]
    archives = list(AuditArchive.objects.order_by("first_id"))
    assert [a.state for a in archives] == [ArchiveState.PURGED] * 3
    assert sum(a.count for a in archives) == 2500
    body = s3_client.get_object(Bucket=archive_bucket, Key=archives[0].key)
    assert body["ServerSideEncryption"] == "AES256"
    raw = body["Body"].read()
    assert b"example.test" not in raw and b"file.download" not in raw
    manifest = json.loads(
        s3_client.get_object(Bucket=archive_bucket, Key=archives[0].manifest_key)[
            "Body"
        ].read()
    )
    assert manifest["count"] == archives[0].count == 1000
    assert manifest["sha256"] == archives[0].sha256
    assert manifest["seal_at_cut"]["seq"] == archives[0].last_seal
    ok, text = verify_output()
    assert ok, text
    assert "3 archives" in text and "2501 events" in text
    ok, text = verify_output("--hot-only")
    assert ok, text
    assert "0 archives" in text and "0 problems" in text


def _jump_event_ids(to: int) -> None:
    """The next event id is ``to``, as after rolled-back inserts or a restore
    whose rows carried large ids."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), %s)",
                [to - 1],
            )
        else:
            cursor.execute(
                "UPDATE sqlite_sequence SET seq = %s WHERE name = 'audit_auditevent'",
                [to - 1],
            )


@pytest.mark.timeout(120)
def test_purge_handles_ids_far_apart(archive_bucket):
    """Ids 2**40 apart inside one archive: the purge walks the rows that
    exist, not the id range (which would take for ever), and removes them."""
    make_old_events(10)
    _jump_event_ids(2**40)
    make_old_events(10, days_ago=39)
    audit_seal()
    summary = archive.run()
    assert summary["purged"] == 20
    assert not AuditEvent.objects.exists()
    ok, text = verify_output()
    assert ok, text


def test_tampered_archive_fails_verification(archive_bucket, s3_client):
    """A byte changed in an archive object is reported."""
    make_old_events(600)
    audit_seal()
    archive.run()
    item = AuditArchive.objects.get()
    raw = bytearray(
        s3_client.get_object(Bucket=archive_bucket, Key=item.key)["Body"].read()
    )
    raw[80] ^= 1
    s3_client.put_object(Bucket=archive_bucket, Key=item.key, Body=bytes(raw))
    ok, text = verify_output()
    assert not ok
    assert f"{item.key}: chunk 0 failed authentication" in text


def test_s3_outage_half_way_loses_nothing_and_next_run_finishes(
    archive_bucket, settings
):
    """The S3 server goes away after the first of three archives: the rest
    stay in the hot store, and the next run archives them."""
    target = urlparse(S3_ENDPOINT)
    relay = Relay(target.hostname, target.port).start()
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = relay.url
    make_old_events(2500)
    audit_seal()

    def cut_after_first(item):
        relay.stop()

    with pytest.raises(Exception):  # noqa: B017 - whatever botocore raises
        archive.run(progress=cut_after_first)
    states = dict(AuditArchive.objects.values_list("first_id", "state"))
    assert sorted(states.values()) == [
        ArchiveState.PENDING,
        ArchiveState.PENDING,
        ArchiveState.PURGED,
    ]
    assert AuditEvent.objects.count() == 1500
    relay.start()
    summary = archive.run()
    assert summary["purged"] == 1500
    assert AuditEvent.objects.count() == 0
    ok, text = verify_output()
    assert ok, text
    assert "2500 events" in text
    relay.stop()


def test_outage_during_read_back_keeps_rows(archive_bucket, settings):
    """Rows are not removed when the archive cannot be read back."""
    target = urlparse(S3_ENDPOINT)
    relay = Relay(target.hostname, target.port).start()
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = relay.url
    make_old_events(300)
    audit_seal()
    archive.plan()
    item = AuditArchive.objects.get()
    client = archive.s3_client()
    archive.upload(item, client)
    relay.stop()
    with pytest.raises(archive.ArchiveError):
        archive.read_back(item, client)
    item.refresh_from_db()
    assert item.state == ArchiveState.UPLOADED
    assert AuditEvent.objects.count() == 300
    relay.start()
    archive.run()
    assert AuditEvent.objects.count() == 0
    relay.stop()


def test_archive_not_purged_when_hot_rows_disagree_with_seals(
    archive_bucket, superuser_sql
):
    """A row altered before archival makes the read-back fail: nothing is
    removed from the hot store, and the run says which event."""
    make_old_events(200)
    audit_seal()
    victim = AuditEvent.objects.order_by("id")[50].pk
    superuser_sql(
        "UPDATE audit_auditevent SET actor_label = 'x' WHERE id = %s",
        [victim],
        bypass=True,
    )
    with pytest.raises(archive.ArchiveError, match=f"event {victim} differs"):
        archive.run()
    assert AuditEvent.objects.count() == 200
    assert AuditArchive.objects.get().state == ArchiveState.UPLOADED
