"""Reading stored file bytes as a stream, whatever the storage backend."""

from collections.abc import Iterator

from django.db.models.fields.files import FieldFile

CHUNK = 64 * 1024


def blob_chunks(blob: FieldFile, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """Yield the stored bytes of ``blob`` without holding the file in memory.

    django-storages' S3 file object downloads the whole object before the
    first read; its ``obj`` is the boto3 object, whose body streams.
    """
    handle = blob.storage.open(blob.name, "rb")
    s3_object = getattr(handle, "obj", None)
    if s3_object is not None:
        body = s3_object.get()["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()
        return
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def blob_delete(storage, name: str) -> None:
    if name:
        storage.delete(name)
