"""Stored file bytes: encrypted on the way in, decrypted and verified on the way out.

Objects reach storage (local disk or S3, whose server-side encryption stays
on too) only as ``KREOSEAL`` objects (``projects.crypto``, ``kreo/sealed.py``)
under the project's data key. Objects written before it (``KREOF1``) still
open; ``storage_reseal`` moves them over (``projects.reseal``).
"""

import logging
from collections.abc import Iterator

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage
from django.db.models.fields.files import FieldFile
from storages.utils import clean_name

from projects import crypto, keys

CHUNK = crypto.SEALED_CHUNK
# ProjectFile.encryption: the format its object was written in.
FORMAT = "kreoseal1"
LEGACY_FORMAT = "kreo-f1"
MISSING = "The stored object of this file is missing."
STORAGE_DOWN = (
    "File storage is not answering at the moment, so nothing was stored or "
    "read. Nothing is wrong with your files; try again in a few minutes."
)
# Seconds a client is asked to wait (Retry-After) when S3 is down.
RETRY_AFTER = 30
# What S3 says when the object itself is not there. NoSuchBucket (also a 404)
# is a broken deployment, not a lost file.
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
# Everything boto3 raises when S3 cannot be reached or does not answer well.
_S3_ERRORS = (ClientError, BotoCoreError, S3UploadFailedError)

logger = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """S3 did not answer, or answered with an error other than "no such object".

    An outage, never an integrity failure: the stored object may be intact.
    """


def is_missing(exc: Exception) -> bool:
    """Whether S3 said the object is not there (NoSuchKey / 404)."""
    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _MISSING_CODES or (status == 404 and code != "NoSuchBucket")


def outage(action: str, key: str, exc: Exception) -> StorageUnavailable:
    """Log one outage line and return the error to raise."""
    logger.error("S3 outage: %s of %s failed: %r", action, key, exc)
    return StorageUnavailable(STORAGE_DOWN)


class _OutageAware:
    """An S3 body whose read errors (connection lost, timeout) are outages."""

    def __init__(self, body, key: str):
        self._body, self._key = body, key

    def read(self, size: int = -1) -> bytes:
        try:
            return self._body.read(size)
        except _S3_ERRORS as exc:
            raise outage("read", self._key, exc) from exc

    def close(self) -> None:
        self._body.close()


def _open_raw(blob):
    """A binary file object over the stored bytes; the S3 body streams.

    On S3, one GET (django-storages' file object would send a HEAD first,
    then download the whole object before the first read). A missing object
    raises FileIntegrityError; any other S3 error, or none at all (connection
    refused, timeout), raises StorageUnavailable.
    """
    storage = blob.storage
    if hasattr(storage, "bucket"):
        key = storage._normalize_name(clean_name(blob.name))
        try:
            return _OutageAware(storage.bucket.Object(key).get()["Body"], key)
        except _S3_ERRORS as exc:
            if is_missing(exc):
                raise crypto.FileIntegrityError(MISSING) from exc
            raise outage("download", key, exc) from exc
    try:
        return storage.open(blob.name, "rb")
    except FileNotFoundError as exc:
        raise crypto.FileIntegrityError(MISSING) from exc


def raw_head(blob, size: int) -> bytes:
    """The first ``size`` bytes of the stored object (one ranged GET on S3)."""
    storage = blob.storage
    if hasattr(storage, "bucket"):
        key = storage._normalize_name(clean_name(blob.name))
        try:
            got = storage.bucket.Object(key).get(Range=f"bytes=0-{size - 1}")
            return got["Body"].read()
        except _S3_ERRORS as exc:
            if is_missing(exc):
                raise crypto.FileIntegrityError(MISSING) from exc
            raise outage("read", key, exc) from exc
    try:
        with storage.open(blob.name, "rb") as handle:
            return handle.read(size)
    except FileNotFoundError as exc:
        raise crypto.FileIntegrityError(MISSING) from exc


def raw_chunks(blob: FieldFile, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """Yield the stored bytes of ``blob`` without holding the file in memory."""
    handle = _open_raw(blob)
    try:
        while chunk := handle.read(chunk_size):
            yield chunk
    finally:
        handle.close()


def _decrypted(data_key: bytes, item, handle) -> Iterator[bytes]:
    try:
        yield from crypto.decrypt_chunks(data_key, item.id, handle)
    finally:
        handle.close()


def _save(item, chunks: Iterator[bytes], key: str | None = None) -> None:
    """Write the object; an S3 failure raises StorageUnavailable.

    A PUT either stores the whole object or nothing (a multipart upload that
    fails is aborted by boto3), so no partial object is left behind. But a
    PUT that timed out may still be carried out by S3 later, so the key (random,
    chosen before the PUT) is named in the outage line: if it turns up in the
    bucket, it is an object without a row, to be removed.
    """
    field = item.blob.field
    key = key or field.generate_filename(item, "upload")
    try:
        stored = item.blob.storage.save(
            key, File(crypto.reader(chunks)), max_length=field.max_length
        )
    except _S3_ERRORS as exc:
        where = f"project {item.project_id} file {item.id} key {key}"
        raise outage("upload", where, exc) from exc
    item.blob = stored


def blob_store(item, source: Iterator[bytes], key: str | None = None) -> None:
    """Encrypt ``source`` under the project's data key into ``item.blob``,
    at ``key`` (by default a new random one).

    Raises StorageUnavailable when S3 cannot store it.
    """
    if not settings.KREO_FILE_ENCRYPTION:
        # Only the benchmark's baseline (production pins encryption on).
        _save(item, source, key)
        item.encryption = ""
        return
    data_key = keys.data_key_create(item.project)
    _save(item, crypto.encrypt_chunks(data_key, item.id, source), key)
    item.encryption = FORMAT


def blob_chunks(item) -> Iterator[bytes]:
    """Yield the plaintext of ``item``, each chunk verified before it is yielded.

    Raises keys.KeyError_ (key destroyed or unknown KEK) or
    crypto.FileIntegrityError (altered object) before or during the stream.
    """
    if not item.encryption:
        # Stored before encryption was introduced.
        return raw_chunks(item.blob)
    data_key = keys.data_key_get(item.project_id)
    return _decrypted(data_key, item, _open_raw(item.blob))


def _s3_client(storage: Storage):
    connection = getattr(storage, "connection", None)
    return connection.meta.client if connection is not None else None


def blob_delete(storage: Storage, name: str) -> list[str]:
    """Delete ``name`` and, where the bucket keeps versions, every version.

    Returns what was removed: the key, or ``key@version`` for each version and
    delete marker.
    """
    if not name:
        return []
    client = _s3_client(storage)
    if client is None:
        existed = storage.exists(name)
        storage.delete(name)
        return [name] if existed else []
    bucket = storage.bucket_name
    removed = []
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=name):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            if entry["Key"] != name:
                continue
            client.delete_object(Bucket=bucket, Key=name, VersionId=entry["VersionId"])
            removed.append(f"{name}@{entry['VersionId']}")
    if not removed:
        storage.delete(name)
    return removed


def blob_delete_all_versions(name: str) -> list[str]:
    from projects.models import ProjectFile

    return blob_delete(ProjectFile._meta.get_field("blob").storage, name)


def legacy_encrypt(item) -> list[str]:
    """Encrypt a file stored before encryption; remove every plaintext version.

    The new object is written first, then the row points at it, then the old
    object goes: an interruption leaves either the old or the new one in use.
    """
    old = item.blob.name
    blob_store(item, raw_chunks(item.blob))
    item.save(update_fields=["blob", "encryption"])
    return blob_delete(item.blob.storage, old)


def thumbnail_store(item, data: bytes, *, context: bytes) -> str:
    """Seal ``data`` (a thumbnail of ``item``) under the project's data key with
    ``context``, at a new random key beside the project's files; return the key.

    Raises StorageUnavailable when S3 cannot store it.
    """
    data_key = keys.data_key_create(item.project)
    field = item.thumbnail.field
    key = field.generate_filename(item, "thumbnail")
    sealed = crypto.encrypt_chunks(data_key, item.id, [data], context=context)
    try:
        return item.thumbnail.storage.save(
            key, File(crypto.reader(sealed)), max_length=field.max_length
        )
    except _S3_ERRORS as exc:
        where = f"project {item.project_id} thumbnail of {item.id} key {key}"
        raise outage("upload", where, exc) from exc


def thumbnail_chunks(item, *, context: bytes) -> Iterator[bytes]:
    """Yield the plaintext of ``item``'s thumbnail, verified chunk by chunk.

    Raises as ``blob_chunks`` does.
    """
    data_key = keys.data_key_get(item.project_id)
    handle = _open_raw(item.thumbnail)
    try:
        yield from crypto.decrypt_chunks(
            data_key,
            item.id,
            handle,
            context=context,
            name=f"thumbnail of file {item.id}",
        )
    finally:
        handle.close()
