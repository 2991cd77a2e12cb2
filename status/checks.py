"""System checks of the status app."""

from django.conf import settings
from django.core.checks import Error

SHARED_BUCKET = (
    "STATUS_S3_BUCKET is also {name}: the static copy is public read, so it "
    "must have a bucket of its own, never one that holds data."
)
DATA_BUCKETS = (
    "AWS_STORAGE_BUCKET_NAME",
    "BACKUP_S3_BUCKET",
    "AUDIT_ARCHIVE_S3_BUCKET",
    "AUDIT_ANCHOR_S3_BUCKET",
    "KREO_KEY_LEDGER_S3_BUCKET",
)


def status_bucket_check(app_configs=None, **kwargs) -> list[Error]:
    """The public status bucket is never one of the data buckets."""
    bucket = settings.STATUS_S3_BUCKET
    if not bucket:
        return []
    return [
        Error(SHARED_BUCKET.format(name=name), id="status.E001")
        for name in DATA_BUCKETS
        if getattr(settings, name, "") == bucket
    ]
