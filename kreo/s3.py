"""One way to build a boto3 S3 client for the app's own buckets (audit
archives, backups' copy 3, the erasure ledger); project files go through
django-storages, which builds its own.

``retention_params``/``confirm_retention`` are the one Object Lock decision
for every app bucket (backups' copy 3, audit archives, the erasure ledger).

Path-style addressing (MinIO and other S3-compatible servers), SigV4, short
connect timeout and standard retries, so an unreachable S3 fails in seconds.
"""

import datetime as dt
import logging

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

# S3 keeps retention dates to the second (some servers to the millisecond).
SLACK = dt.timedelta(seconds=2)

# Project files: seconds S3 may stay silent in one call before it is an
# outage. An upload makes two calls (HEAD for a free name, then PUT), each
# tried twice, so a hung S3 answers 503 within ~25 s: before gunicorn's
# worker timeout (30 s) and nginx's proxy_read_timeout (60 s), either of
# which would otherwise drop the connection. S3 answers a call (or a part of
# a multipart upload, 8 MB) in well under a second when it is up.
FILES_READ_TIMEOUT = 6


def config(*, read_timeout: int = 60, attempts: int = 2) -> Config:
    """The client settings; also the project files' (django-storages'
    ``client_config``), so an S3 outage answers 503 in seconds, not after
    botocore's default 60 s connect timeout and five tries."""
    return Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )


def client(
    endpoint_url: str, region: str, *, read_timeout: int = 60, attempts: int = 2
):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region,
        config=config(read_timeout=read_timeout, attempts=attempts),
    )


# Object Lock: the one place that decides whether, and how, an object the
# app writes to its own buckets is retained.

NO_LOCK_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}
)
LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
NOT_RETAINED = (
    "s3://{bucket}/{key} (version {version}) is not retained as asked "
    "({mode} until {until}): S3 answered mode {found_mode} until {found_until}."
)


class RetentionError(Exception):
    """S3 did not retain an object as asked."""


def retention_params(client, bucket: str, *, mode: str | None = None, days: int):
    """The ``ObjectLockMode``/``ObjectLockRetainUntilDate`` arguments for a
    put into ``bucket``, retained ``days`` days in ``mode`` (the one setting
    ``KREO_S3_LOCK_MODE``, COMPLIANCE by default).

    Only a bucket without Object Lock configured yields ``{}`` (no
    retention), logged as a warning and reported by the deploy check
    kreo.W020; any other S3 error (AccessDenied on the lock query, an
    outage) raises ``botocore.exceptions.ClientError``/``BotoCoreError``,
    so nothing is ever written unlocked because S3 could not be asked.
    """
    from django.conf import settings
    from django.utils import timezone

    mode = mode or settings.KREO_S3_LOCK_MODE
    if mode not in LOCK_MODES:
        raise ValueError(f"Object Lock mode {mode!r} is not one of {LOCK_MODES}")
    if not lock_configured(client, bucket):
        logger.warning(
            "s3://%s has no Object Lock configured: objects written there are "
            "not retained (deploy check kreo.W020)",
            bucket,
        )
        return {}
    return {
        "ObjectLockMode": mode,
        "ObjectLockRetainUntilDate": timezone.now() + dt.timedelta(days=days),
    }


def lock_configured(client, bucket: str) -> bool:
    """Whether ``bucket`` has Object Lock enabled; raises on any S3 error
    other than "no Object Lock configuration"."""
    try:
        config = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in NO_LOCK_CODES:
            return False
        raise
    lock = config.get("ObjectLockConfiguration", {})
    return lock.get("ObjectLockEnabled") == "Enabled"


def confirm_retention(
    client, bucket: str, key: str, version: str | None, params: dict
) -> None:
    """Check that the object's version is retained as ``params`` asked; set
    the retention where the put left none (some S3-compatible servers, moto
    among them, drop the lock of a multipart upload); raise
    ``RetentionError`` if S3 still does not report it.
    """
    if not params:
        return
    by_version = {"VersionId": version} if version else {}
    mode, until = params["ObjectLockMode"], params["ObjectLockRetainUntilDate"]

    def held() -> tuple[str | None, dt.datetime | None]:
        head = client.head_object(Bucket=bucket, Key=key, **by_version)
        return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")

    found_mode, found_until = held()
    if found_mode == mode and found_until and found_until >= until - SLACK:
        return
    client.put_object_retention(
        Bucket=bucket,
        Key=key,
        Retention={"Mode": mode, "RetainUntilDate": until},
        **by_version,
    )
    found_mode, found_until = held()
    if found_mode != mode or not found_until or found_until < until - SLACK:
        raise RetentionError(
            NOT_RETAINED.format(
                bucket=bucket,
                key=key,
                version=version or "current",
                mode=mode,
                until=until.isoformat(),
                found_mode=found_mode,
                found_until=found_until,
            )
        )
