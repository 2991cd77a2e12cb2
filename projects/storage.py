"""Stored file bytes: encrypted on the way in, decrypted and verified on the way out.

Objects reach storage (local disk or S3, whose server-side encryption stays
on too) only as ``projects.crypto`` ciphertext under the project's data key.
"""

from collections.abc import Iterator

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage
from django.db.models.fields.files import FieldFile
from storages.utils import clean_name

from projects import crypto, keys

CHUNK = crypto.SEALED_CHUNK
FORMAT = "kreo-f1"
MISSING = "The stored object of this file is missing."


def _open_raw(blob):
    """A binary file object over the stored bytes; the S3 body streams.

    On S3, one GET (django-storages' file object would send a HEAD first,
    then download the whole object before the first read). A missing object
    raises FileIntegrityError.
    """
    storage = blob.storage
    if hasattr(storage, "bucket"):
        key = storage._normalize_name(clean_name(blob.name))
        try:
            return storage.bucket.Object(key).get()["Body"]
        except ClientError as exc:
            raise crypto.FileIntegrityError(MISSING) from exc
    try:
        return storage.open(blob.name, "rb")
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


def blob_store(item, source: Iterator[bytes]) -> None:
    """Encrypt ``source`` under the project's data key into ``item.blob``."""
    if not settings.KREO_FILE_ENCRYPTION:
        # Only the benchmark's baseline (production pins encryption on).
        item.blob.save("upload", File(crypto.reader(source)), save=False)
        item.encryption = ""
        return
    data_key = keys.data_key_create(item.project)
    sealed = crypto.encrypt_chunks(data_key, item.id, source)
    item.blob.save("upload", File(crypto.reader(sealed)), save=False)
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
