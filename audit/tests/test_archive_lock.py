"""Object Lock of archives: COMPLIANCE where the bucket locks, a warning
where it has none, and no archive at all when S3 will not say."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit import archive, chain, keys
from audit.models import ArchiveState, AuditArchive, AuditEvent
from audit.services import audit_seal
from audit.tests.conftest import make_old_events, verify_output
from conftest import REGION, make_locked_bucket

pytestmark = pytest.mark.django_db(transaction=True)

# The archiver may write and read, but not ask whether the bucket locks. On
# AWS the lock query is s3:GetBucketObjectLockConfiguration; moto authorises
# it as s3:ListBucket, so both are denied (no call of the archiver lists).
DENY_LOCK_QUERY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": ["s3:GetBucketObjectLockConfiguration", "s3:ListBucket"],
            "Resource": "*",
        },
    ],
}
# Requests moto serves before it checks credentials: the IAM set-up below.
SETUP_REQUESTS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def iam_s3():
    """A moto server of its own with IAM enforced, and the keys of an
    archiver whose policy denies the Object Lock query."""
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and moto
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's own
        )
        iam.create_user(UserName="archiver")
        iam.put_user_policy(
            UserName="archiver",
            PolicyName="archive-but-not-ask-lock",
            PolicyDocument=json.dumps(DENY_LOCK_QUERY),
        )
        keys = iam.create_access_key(UserName="archiver")["AccessKey"]
        yield url, keys["AccessKeyId"], keys["SecretAccessKey"]
    finally:
        server.terminate()
        server.wait(10)


def test_access_denied_on_lock_query_refuses_the_archive(
    iam_s3, archive_bucket, settings, monkeypatch
):
    """S3 answers AccessDenied to the Object Lock query: nothing is uploaded
    (not even unlocked), no event is removed, the archive stays pending, the
    command fails with a clear error and the failure is audited."""
    url, key_id, secret = iam_s3
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # pick up the keys
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = url
    client = archive.s3_client()
    client.create_bucket(
        Bucket=archive_bucket,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=True,
    )
    make_old_events(200)
    audit_seal()
    with pytest.raises(CommandError) as failed:
        call_command("audit_archive")
    message = str(failed.value)
    item = AuditArchive.objects.get()
    assert message.startswith(f"{item.key}: not archived: the Object Lock")
    assert "AccessDenied" in message and "no event removed" in message
    assert item.state == ArchiveState.PENDING and not item.object_lock
    assert AuditEvent.objects.filter(event_type="file.download").count() == 200
    versions = client.list_object_versions(Bucket=archive_bucket)
    assert "Versions" not in versions and "DeleteMarkers" not in versions
    assert client.list_multipart_uploads(Bucket=archive_bucket).get("Uploads") is None
    error = AuditEvent.objects.get(event_type="audit.archive")
    assert error.outcome == "error" and "AccessDenied" in error.error_description


def test_bucket_without_object_lock_archives_unlocked_with_a_warning(
    archive_bucket, s3_client, caplog
):
    """A bucket with no Object Lock configured is the one case of an archive
    without retention, and it is logged."""
    make_old_events(100)
    audit_seal()
    with caplog.at_level(logging.WARNING, logger="kreo.s3"):
        archive.run()
    item = AuditArchive.objects.get()
    assert item.state == ArchiveState.PURGED and not item.object_lock
    assert f"s3://{archive_bucket} has no Object Lock configured" in caplog.text
    head = s3_client.head_object(Bucket=archive_bucket, Key=item.key)
    assert "ObjectLockMode" not in head


@pytest.fixture
def locked_bucket(archive_bucket, s3_client, settings):
    bucket = make_locked_bucket(s3_client, "kreo-audit-lock")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    return bucket


def _retained_versions(s3_client, bucket: str, key: str) -> list[dict]:
    """The Object Lock of every version of ``key``."""
    # moto answers GetObjectRetention by version with a 500; HEAD says it.
    return [
        s3_client.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
        for v in s3_client.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    ]


def test_locked_bucket_retains_the_archive_version_in_compliance(
    locked_bucket, s3_client, settings
):
    """On a bucket with Object Lock, the archive's version and its manifest
    are retained in COMPLIANCE mode for AUDIT_ARCHIVE_LOCK_DAYS, and the
    trail still verifies."""
    make_old_events(100)
    audit_seal()
    archive.run()
    item = AuditArchive.objects.get()
    assert item.object_lock and item.state == ArchiveState.PURGED
    soon = timezone.now() + timedelta(days=settings.AUDIT_ARCHIVE_LOCK_DAYS - 1)
    for key in (item.key, item.manifest_key):
        (head,) = _retained_versions(s3_client, locked_bucket, key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > soon
    ok, text = verify_output()
    assert ok, text


def test_multipart_archive_is_retained_too(locked_bucket, s3_client, settings):
    """An archive past the 8 MiB part size goes up in parts (moto drops the
    lock given at multipart start) and its version is still retained in
    COMPLIANCE mode."""
    settings.AUDIT_ARCHIVE_MAX_EVENTS = 5000
    start = timezone.now() - timedelta(days=40)
    events = []
    for i in range(4000):
        event = AuditEvent(
            occurred_at=start + timedelta(milliseconds=i),
            event_type="file.download",
            outcome="success",
            details={"i": i, "note": os.urandom(2560).hex()},
        )
        chain.sign_event(event, *keys.event_key_current())
        events.append(event)
    AuditEvent.objects.bulk_create(events, batch_size=500)
    audit_seal()
    archive.run()
    item = AuditArchive.objects.get()
    assert item.size > archive.PART and item.state == ArchiveState.PURGED
    (head,) = _retained_versions(s3_client, locked_bucket, item.key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
