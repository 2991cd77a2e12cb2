"""Copy 3: copy 1's artifacts in S3 (eu-west-2), multipart, server-side
encrypted, under Object Lock retention (``KREO_S3_LOCK_MODE``, compliance by
default) where the bucket has Object Lock configured: kreo.s3 decides it,
and each object's retention is read back on the version uploaded (confirmed,
or set where the put left none); a copy 3 it cannot confirm fails.

Every object is read back by the version id its upload created: under Object
Lock anyone allowed to write may still put a delete marker or a newer version
over a key, and neither may hide or replace what the backup wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from kreo import s3 as kreo_s3

PART = 8 * 1024 * 1024
CHECKSUM_MISMATCH = "S3 object {key} does not match what was uploaded."
WRONG_REGION = (
    "The backup bucket {bucket} is in {found}, not in {expected} "
    "(BACKUP_S3_REGION): copy 3 refused."
)


class OffsiteError(Exception):
    """S3 cannot be reached or refused the request."""


def client():
    return kreo_s3.client(settings.BACKUP_S3_ENDPOINT_URL, settings.BACKUP_S3_REGION)


def prefix_for(set_id: int) -> str:
    return f"{settings.BACKUP_S3_PREFIX}{set_id:08d}/"


def bucket_region(s3, bucket: str) -> str:
    """The bucket's region as S3 reports it (an empty constraint is us-east-1)."""
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(
        location, location
    )


def region_problem(s3=None) -> str:
    """Why the bucket's region is refused, or "" when it is the expected one.

    Raises ``OffsiteError`` when S3 cannot say.
    """
    bucket, expected = settings.BACKUP_S3_BUCKET, settings.BACKUP_S3_REGION
    try:
        found = bucket_region(s3 or client(), bucket)
    except (BotoCoreError, ClientError) as exc:
        raise OffsiteError(str(exc)) from exc
    if found != expected:
        return WRONG_REGION.format(bucket=bucket, found=found, expected=expected)
    return ""


def upload(
    set_id: int, files: list[Path], checksums: dict[str, str]
) -> tuple[str, dt.datetime | None, dict[str, str]]:
    """Upload ``files`` under the set's prefix; check each one's SHA-256 back.

    Returns the prefix, the retention date (None without Object Lock) and the
    version id of each object written (``{name: version id}``; empty for a
    bucket without versioning). Raises ``OffsiteError`` when S3 is
    unreachable or refuses, or the bucket is not in ``BACKUP_S3_REGION``.
    """
    bucket = settings.BACKUP_S3_BUCKET
    prefix = prefix_for(set_id)
    versions: dict[str, str] = {}
    try:
        s3 = client()
        if problem := region_problem(s3):
            raise OffsiteError(problem)
        retention = kreo_s3.retention_params(
            s3, bucket, days=settings.BACKUP_S3_LOCK_DAYS
        )
        transfer = TransferConfig(
            multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=2
        )
        for path in files:
            key = prefix + path.name
            extra = {
                "ServerSideEncryption": "AES256",
                "Metadata": {"sha256": checksums.get(path.name, "")},
                **retention,
            }
            with open(path, "rb") as source:
                s3.upload_fileobj(source, bucket, key, ExtraArgs=extra, Config=transfer)
            # upload_fileobj does not return the version it made: the newest
            # one now, whose checksum is then checked, is the one recorded.
            version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
            if version and version != "null":
                versions[path.name] = version
            kreo_s3.confirm_retention(
                s3, bucket, key, versions.get(path.name), retention
            )
            expected = checksums.get(path.name)
            if expected and sha256_object(key, version) != expected:
                raise OffsiteError(CHECKSUM_MISMATCH.format(key=key))
    except (BotoCoreError, ClientError, Boto3Error, kreo_s3.RetentionError) as exc:
        raise OffsiteError(str(exc)) from exc
    return prefix, retention.get("ObjectLockRetainUntilDate"), versions


def stream(key: str, version: str | None = None) -> Iterator[bytes]:
    """The object's bytes: the given version, else the current one."""
    by_version = {"VersionId": version} if version else {}
    try:
        body = client().get_object(
            Bucket=settings.BACKUP_S3_BUCKET, Key=key, **by_version
        )["Body"]
        yield from body.iter_chunks(1024 * 1024)
    except (BotoCoreError, ClientError) as exc:
        raise OffsiteError(str(exc)) from exc


def sha256_object(key: str, version: str | None = None) -> str:
    digest = hashlib.sha256()
    for piece in stream(key, version):
        digest.update(piece)
    return digest.hexdigest()


def read_small(key: str, version: str | None = None) -> bytes:
    return b"".join(stream(key, version))


def history(prefix: str) -> dict[str, dict]:
    """Every version and delete marker under ``prefix``, by object name.

    ``{name: {"versions": [(id, modified)...], "markers": [...], "latest": id}}``
    with each list oldest first and ``latest`` the key's current entry (a
    delete marker's id when the key is hidden); ``name`` is the key without
    the prefix.
    """
    out: dict[str, dict] = {}
    try:
        pages = client().get_paginator("list_object_versions")
        for page in pages.paginate(Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix):
            for kind, entries in (
                ("versions", page.get("Versions", [])),
                ("markers", page.get("DeleteMarkers", [])),
            ):
                for entry in entries:
                    name = entry["Key"][len(prefix) :]
                    item = out.setdefault(
                        name, {"versions": [], "markers": [], "latest": ""}
                    )
                    item[kind].append((entry["VersionId"], entry["LastModified"]))
                    if entry.get("IsLatest"):
                        item["latest"] = entry["VersionId"]
    except (BotoCoreError, ClientError) as exc:
        raise OffsiteError(str(exc)) from exc
    # S3 lists each key's versions newest first (times may tie to the second).
    for item in out.values():
        item["versions"].reverse()
        item["markers"].reverse()
    return out


def written_versions(prefix: str) -> dict[str, str]:
    """The first version of each object under ``prefix``: the one the backup
    wrote (a later version or marker cannot displace it under Object Lock).
    Used when the catalogue does not know the versions (rebuilt, or older)."""
    return {
        name: item["versions"][0][0]
        for name, item in history(prefix).items()
        if item["versions"] and item["versions"][0][0] != "null"
    }


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
