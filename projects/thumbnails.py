"""Small previews of uploaded images, made in a task and stored sealed.

A thumbnail is a ``KREOSEAL`` object under the project's data key, like the
file itself, with its own context (``THUMBNAIL_CONTEXT`` + the file's id), so
the two objects cannot stand in for each other. It lives and dies with its
file: the row names it (``ProjectFile.thumbnail``), and every erasure path
deletes it with the file's object; a project's erasure destroys the key that
sealed both.

Only files whose first bytes show PNG, JPEG or WebP are decoded, and only up
to ``MAX_PIXELS``: Pillow refuses larger images before decoding them. An
image Pillow cannot read leaves the file without a thumbnail; the list then
shows the file type instead.
"""

from __future__ import annotations

import io
import logging
import uuid
import warnings

from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable
from PIL import Image, ImageOps

from projects import crypto, keys, storage
from projects.uploads import kind_of_head

logger = logging.getLogger(__name__)

IMAGE_KINDS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
SIZE = (240, 240)
CONTENT_TYPE = "image/webp"
THUMBNAIL_CONTEXT = b"kreo-thumbnail\x00"
# Larger images are not decoded (a decompression bomb needs no more bytes
# than a photo): 40 megapixels covers phone and camera photos.
MAX_PIXELS = 40_000_000
# Files larger than this are not read for a thumbnail.
MAX_SOURCE_BYTES = 50 * 1024 * 1024


def context(file_id) -> bytes:
    return THUMBNAIL_CONTEXT + uuid.UUID(str(file_id)).bytes


def wanted(item) -> bool:
    """Whether a thumbnail is made for ``item`` (by its sniffed kind and size)."""
    return item.kind in IMAGE_KINDS and item.size <= MAX_SOURCE_BYTES


def render(data: bytes) -> bytes | None:
    """A WebP of at most SIZE from an image's bytes, or None if it is not one
    Pillow reads as the kind its first bytes show."""
    expected = IMAGE_KINDS.get(kind_of_head(data[:4096]) or "")
    if expected is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _render(data, expected)
    except Exception:  # noqa: BLE001 - untrusted bytes: any failure, no thumbnail
        return None


def _render(data: bytes, expected: str) -> bytes | None:
    with Image.open(io.BytesIO(data), formats=[expected]) as image:
        if image.width * image.height > MAX_PIXELS:
            return None
        image.draft("RGB", SIZE)  # JPEG: decode at a reduced scale
        small = ImageOps.exif_transpose(image)
        small.thumbnail(SIZE)
        if small.mode not in ("RGB", "RGBA"):
            small = small.convert("RGBA")
        out = io.BytesIO()
        small.save(out, "WEBP", quality=80)
    return out.getvalue()


def thumbnail_queue(item) -> None:
    """Queue the thumbnail task for an image once the upload commits; a down
    broker is logged (the list shows the file type instead)."""
    if not wanted(item):
        return
    from projects import tasks

    def send():
        try:
            tasks.thumbnail_make.delay(file_id=str(item.pk))
        except BrokerUnavailable as exc:
            logger.error("thumbnail task of %s not queued: %s", item.pk, exc)

    transaction.on_commit(send)


def thumbnail_make(*, file_id) -> bool:
    """Make and store the thumbnail of one file; return whether it has one.

    The object is written first, then named in the row; if
    the file was erased meanwhile (or already has one), the object just
    written is deleted again, so nothing outlives its file.
    """
    from projects.models import ProjectFile

    item = ProjectFile.objects.select_related("project").filter(pk=file_id).first()
    if item is None or not wanted(item):
        return False
    if item.thumbnail:
        return True
    try:
        data = b"".join(storage.blob_chunks(item))
    except (crypto.FileIntegrityError, keys.KeyError_) as exc:
        logger.warning("thumbnail of %s not made: %s", file_id, exc)
        return False
    small = render(data)
    if small is None:
        logger.info("thumbnail of %s not made: not a readable image", file_id)
        return False
    name = storage.thumbnail_store(item, small, context=context(item.pk))
    # The UPDATE waits for an erasure that holds the row (erasure reads the
    # names under a row lock), then finds no row.
    kept = ProjectFile.objects.filter(pk=item.pk, thumbnail="").update(thumbnail=name)
    if not kept:
        storage.blob_delete(item.blob.storage, name)
        return False
    return True


def thumbnail_bytes(item) -> bytes:
    """The thumbnail's image bytes, verified; raises as ``blob_chunks`` does."""
    return b"".join(storage.thumbnail_chunks(item, context=context(item.pk)))
