"""Copy 3: copy 1's artifacts in S3 (eu-west-2), multipart, server-side
encrypted, under Object Lock retention in compliance mode where the bucket
has Object Lock enabled."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from kreo import s3 as kreo_s3

PART = 8 * 1024 * 1024
CHECKSUM_MISMATCH = "S3 object {key} does not match what was uploaded."


class OffsiteError(Exception):
    """S3 cannot be reached or refused the request."""


def client():
    return kreo_s3.client(
        settings.BACKUP_S3_ENDPOINT_URL, settings.BACKUP_S3_REGION_NAME
    )


def prefix_for(set_id: int) -> str:
    return f"{settings.BACKUP_S3_PREFIX}{set_id:08d}/"


def lock_enabled(s3, bucket: str) -> bool:
    try:
        config = s3.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in (
            "ObjectLockConfigurationNotFoundError",
            "NoSuchObjectLockConfiguration",
        ):
            return False
        raise
    lock = config.get("ObjectLockConfiguration", {})
    return lock.get("ObjectLockEnabled") == "Enabled"


def upload(
    set_id: int, files: list[Path], checksums: dict[str, str]
) -> tuple[str, dt.datetime | None]:
    """Upload ``files`` under the set's prefix; check each one's SHA-256 back.

    Returns the prefix and the retention date (None without Object Lock).
    Raises ``OffsiteError`` when S3 is unreachable or refuses.
    """
    bucket = settings.BACKUP_S3_BUCKET
    prefix = prefix_for(set_id)
    try:
        s3 = client()
        locked = lock_enabled(s3, bucket)
        until = (
            timezone.now() + dt.timedelta(days=settings.BACKUP_S3_LOCK_DAYS)
            if locked
            else None
        )
        transfer = TransferConfig(
            multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=2
        )
        for path in files:
            key = prefix + path.name
            extra = {
                "ServerSideEncryption": "AES256",
                "Metadata": {"sha256": checksums.get(path.name, "")},
            }
            if locked:
                extra["ObjectLockMode"] = "COMPLIANCE"
                extra["ObjectLockRetainUntilDate"] = until
            with open(path, "rb") as source:
                s3.upload_fileobj(source, bucket, key, ExtraArgs=extra, Config=transfer)
            expected = checksums.get(path.name)
            if expected and sha256_object(key) != expected:
                raise OffsiteError(CHECKSUM_MISMATCH.format(key=key))
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        raise OffsiteError(str(exc)) from exc
    return prefix, until


def stream(key: str) -> Iterator[bytes]:
    try:
        body = client().get_object(Bucket=settings.BACKUP_S3_BUCKET, Key=key)["Body"]
        yield from body.iter_chunks(1024 * 1024)
    except (BotoCoreError, ClientError) as exc:
        raise OffsiteError(str(exc)) from exc


def sha256_object(key: str) -> str:
    digest = hashlib.sha256()
    for piece in stream(key):
        digest.update(piece)
    return digest.hexdigest()


def read_small(key: str) -> bytes:
    return b"".join(stream(key))


def delete_prefix(set_id: int) -> bool:
    """Delete the set's objects; False while any is still under retention."""
    bucket = settings.BACKUP_S3_BUCKET
    s3 = client()
    kept = False
    try:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=prefix_for(set_id))
        for version in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
            try:
                s3.delete_object(
                    Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"]
                )
            except ClientError:
                kept = True  # locked: expires by itself
    except (BotoCoreError, ClientError) as exc:
        raise OffsiteError(str(exc)) from exc
    return not kept
