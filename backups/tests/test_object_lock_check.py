"""Deploy check kreo.W020/E020: every app bucket meant to be locked has
Object Lock configured, asked of the real S3 server (moto)."""

import uuid

from django.core.checks import run_checks

from backups.tests.conftest import S3_ENDPOINT
from kreo.checks import object_lock_check

REGION = "eu-west-2"


def _bucket(s3_client, locked: bool) -> str:
    name = f"kreo-check-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=locked,
    )
    return name


def _point_all_at(settings, backup: str, audit: str, ledger: str) -> None:
    settings.BACKUP_S3_BUCKET, settings.BACKUP_S3_ENDPOINT_URL = backup, S3_ENDPOINT
    settings.AUDIT_ARCHIVE_S3_BUCKET = audit
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = S3_ENDPOINT
    for name in ("BACKUP_S3_REGION", "AUDIT_ARCHIVE_S3_REGION"):
        setattr(settings, name, REGION)
    settings.KREO_KEY_LEDGER_S3_REGION = REGION


def test_locked_buckets_pass_and_an_unlocked_one_is_named(settings, s3_client):
    locked, unlocked = _bucket(s3_client, True), _bucket(s3_client, False)
    _point_all_at(settings, locked, locked, "")
    assert object_lock_check() == []
    _point_all_at(settings, locked, unlocked, locked)
    (warning,) = object_lock_check()
    assert warning.id == "kreo.W020"
    assert unlocked in warning.msg and "AUDIT_ARCHIVE_S3_BUCKET" in warning.msg


def test_s3_that_cannot_be_asked_is_an_error(settings, s3_client):
    """An unreachable endpoint (or AccessDenied) is not taken for 'no lock'."""
    locked = _bucket(s3_client, True)
    _point_all_at(settings, locked, "", "")
    settings.BACKUP_S3_ENDPOINT_URL = "http://127.0.0.1:9"
    (error,) = object_lock_check()
    assert error.id == "kreo.E020"
    assert locked in error.msg and "BACKUP_S3_BUCKET" in error.msg


def test_the_check_runs_with_deploy_only(settings, s3_client):
    _point_all_at(settings, _bucket(s3_client, False), "", "")
    ids = {m.id for m in run_checks(include_deployment_checks=True)}
    assert "kreo.W020" in ids
    assert "kreo.W020" not in {m.id for m in run_checks()}
