"""Streaming a project file to its reader, decrypted and verified chunk by chunk.

The response streams, so its status is sent before the last chunk is read.
The choice: the header and the first chunk (64 KiB) are verified before the
response starts, so a destroyed key, a wrong header or an altered first chunk
is refused with a clear error and no body. Every later chunk is verified
before any of its bytes are sent; at the first one that fails the stream stops
short of its Content-Length (clients treat that as a failed download) and the
audit trail records the failure. Unauthenticated plaintext is never sent.

S3 down (anything but "no such object") is an outage, not an integrity
failure: 503 with Retry-After before the stream, a short stream after it,
and no integrity event either way.
"""

from collections.abc import Iterator

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils.http import content_disposition_header

from kreo.views import error_response
from projects import services, thumbnails
from projects.crypto import FileIntegrityError
from projects.keys import KeyError_
from projects.storage import (
    RETRY_AFTER,
    STORAGE_DOWN,
    StorageUnavailable,
    blob_chunks,
)
from projects.uploads import kind_of_head

FILE_ALTERED = (
    "This file failed its integrity check in storage and cannot be downloaded. "
    "The failure has been recorded; ask staff to restore it from a backup."
)
FILE_KEY_GONE = "This file cannot be decrypted: {reason}"
DOWNLOAD_CSP = "sandbox; default-src 'none'"
# Shown in the browser only when the first bytes say so, whatever the name or
# the stored content type claim; anything else is downloaded instead.
PREVIEW_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}


def _failed(request, item, code: str, exc: Exception) -> None:
    services.project_file_download_failed(
        actor=request.user,
        item=item,
        request=request,
        error_code=code,
        description=str(exc),
    )


def _guarded(request, item, first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    try:
        yield from rest
    except FileIntegrityError as exc:
        _failed(request, item, "integrity", exc)
    except StorageUnavailable:
        # Logged as an outage by projects.storage; the stream stops short of
        # its Content-Length, and the object is not suspected of anything.
        return


def storage_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: S3 is down, nothing is wrong with the file."""
    response = error_response(request, 503, STORAGE_DOWN)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


def file_response(request: HttpRequest, item, *, inline: bool = False) -> HttpResponse:
    """The file as a streamed attachment (or, with ``inline``, shown in the
    browser), or an error page / JSON error.

    Pages and API alike send it sandboxed: a browser that renders it (an SVG
    or HTML sent as a PDF, opened from an API link) runs no script in our origin.
    A preview is only for PDFs and images recognised from the first chunk's
    bytes; any other file is sent to its download instead.
    """
    try:
        chunks = blob_chunks(item)
        first = next(chunks, b"")
    except FileIntegrityError as exc:
        _failed(request, item, "integrity", exc)
        return error_response(request, 409, FILE_ALTERED)
    except KeyError_ as exc:
        _failed(request, item, "key", exc)
        return error_response(request, 410, FILE_KEY_GONE.format(reason=exc))
    except StorageUnavailable:
        return storage_unavailable(request)
    content_type = item.content_type
    if inline:
        content_type = PREVIEW_TYPES.get(kind_of_head(first) or "")
        if content_type is None:
            chunks.close()
            return redirect(
                "projects:file-download", project_id=item.project_id, file_id=item.pk
            )
    services.project_file_download_record(
        actor=request.user, item=item, request=request, inline=inline
    )
    response = StreamingHttpResponse(
        _guarded(request, item, first, chunks), content_type=content_type
    )
    response["Content-Length"] = str(item.size)
    response["Content-Disposition"] = content_disposition_header(not inline, item.name)
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    return response


def thumbnail_response(request: HttpRequest, item) -> HttpResponse:
    """The file's thumbnail, inline and sandboxed like a preview.

    Not audited: it is part of the file list a member already sees, and a
    list page would otherwise write an event per image. A file without one,
    or whose thumbnail cannot be read (key destroyed, object missing or
    altered), answers 404 and the list shows its type instead.
    """
    if not item.thumbnail:
        raise Http404("no thumbnail")
    try:
        data = thumbnails.thumbnail_bytes(item)
    except (FileIntegrityError, KeyError_) as exc:
        raise Http404("no readable thumbnail") from exc
    except StorageUnavailable:
        return storage_unavailable(request)
    response = HttpResponse(data, content_type=thumbnails.CONTENT_TYPE)
    response["Content-Disposition"] = content_disposition_header(
        False, f"{item.name}.thumbnail.webp"
    )
    response["Cache-Control"] = "private, no-store"
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    return response
