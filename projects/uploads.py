"""What a project file may be: its name, its size, and its type read from its bytes.

Image, PDF and Office types are recognised by ``filetype`` (magic numbers);
it knows no CAD or plain-text formats, so DWG, DXF, IFC and CSV are checked by
the small rules below. The extension must agree with the bytes.
"""

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import IO

import filetype
from django.conf import settings
from django.core.exceptions import ValidationError

from projects.validators import has_control_characters

NAME_EMPTY = "The file name is empty."
NAME_PATH = "The file name must not contain a path (/, \\ or ..)."
NAME_CONTROL = "The file name contains control characters."
NAME_TOO_LONG = "The file name is longer than 255 characters."
TYPE_UNKNOWN_EXTENSION = "Files of this type are not accepted. Accepted: {accepted}."
TYPE_MISMATCH = "The file's contents are not a {expected} file."
TOO_LARGE = "The file is larger than the {limit} limit."
EMPTY_FILE = "The file is empty."


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    extensions: tuple[str, ...]
    content_type: str


KINDS = (
    Kind("pdf", "PDF", (".pdf",), "application/pdf"),
    Kind("png", "PNG image", (".png",), "image/png"),
    Kind("jpeg", "JPEG image", (".jpg", ".jpeg"), "image/jpeg"),
    Kind("tiff", "TIFF image", (".tif", ".tiff"), "image/tiff"),
    Kind("webp", "WebP image", (".webp",), "image/webp"),
    Kind("dwg", "DWG drawing", (".dwg",), "image/vnd.dwg"),
    Kind("dxf", "DXF drawing", (".dxf",), "image/vnd.dxf"),
    Kind("ifc", "IFC model", (".ifc",), "application/x-step"),
    Kind(
        "xlsx",
        "Excel workbook",
        (".xlsx",),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    Kind("xls", "Excel 97-2003 workbook", (".xls",), "application/vnd.ms-excel"),
    Kind(
        "docx",
        "Word document",
        (".docx",),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    Kind("csv", "CSV spreadsheet", (".csv",), "text/csv"),
)
BY_EXTENSION = {ext: kind for kind in KINDS for ext in kind.extensions}
ACCEPTED = ", ".join(sorted(BY_EXTENSION))

_FILETYPE_KINDS = {
    "pdf": "pdf",
    "png": "png",
    "jpg": "jpeg",
    "tif": "tiff",
    "webp": "webp",
    "xls": "xls",
    "xlsx": "xlsx",
    "docx": "docx",
}
_DWG = re.compile(rb"^AC10[0-3]\d")
_DXF = re.compile(rb"^\s*0\s*\r?\n\s*SECTION\s*\r?\n")
_HEAD = 8192


def sanitize_name(raw: str) -> str:
    """Return a display-safe file name, or raise ValidationError.

    A name with a path in it is refused, not silently trimmed: whoever sent it
    meant something other than a file name.
    """
    name = unicodedata.normalize("NFKC", raw or "").strip()
    if not name:
        raise ValidationError(NAME_EMPTY, code="name_empty")
    if "/" in name or "\\" in name or name in {".", ".."} or ".." in name.split("."):
        raise ValidationError(NAME_PATH, code="name_path")
    if has_control_characters(name):
        raise ValidationError(NAME_CONTROL, code="name_control")
    if len(name) > 255:
        raise ValidationError(NAME_TOO_LONG, code="name_too_long")
    return name


def kind_for_name(name: str) -> Kind:
    dot = name.rfind(".")
    kind = BY_EXTENSION.get(name[dot:].lower()) if dot > 0 else None
    if kind is None:
        raise ValidationError(
            TYPE_UNKNOWN_EXTENSION.format(accepted=ACCEPTED), code="type_unknown"
        )
    return kind


def kind_of_head(head: bytes) -> str | None:
    """The kind that a file's first bytes show (its name is not consulted)."""
    return _sniff(io.BytesIO(head))


def _sniff(stream: IO[bytes]) -> str | None:
    stream.seek(0)
    head = stream.read(_HEAD)
    stream.seek(0)
    if _DWG.match(head):
        return "dwg"
    if head.startswith(b"ISO-10303-21;"):
        return "ifc"
    if _DXF.match(head):
        return "dxf"
    guess = filetype.guess(head)
    if guess is not None:
        found = _FILETYPE_KINDS.get(guess.extension)
        if found is None and guess.extension == "zip":
            found = _office_zip(stream)
        return found
    if head.startswith(b"PK\x03\x04"):
        return _office_zip(stream)
    if _is_text(head):
        return "csv"
    return None


def _office_zip(stream: IO[bytes]) -> str | None:
    try:
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return None
    finally:
        stream.seek(0)
    if any(n.startswith("xl/") for n in names):
        return "xlsx"
    if any(n.startswith("word/") for n in names):
        return "docx"
    return None


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


def _human(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size} bytes"


def size_limit_text() -> str:
    """The upload limit as a person reads it ("100 MB")."""
    return _human(settings.KREO_MAX_UPLOAD_BYTES)


def check_size(size: int) -> None:
    limit = settings.KREO_MAX_UPLOAD_BYTES
    if size > limit:
        raise ValidationError(TOO_LARGE.format(limit=_human(limit)), code="too_large")
    if size == 0:
        raise ValidationError(EMPTY_FILE, code="empty")


def inspect(stream: IO[bytes], *, name: str, size: int) -> Kind:
    """Return the file's kind, or raise ValidationError with a clear message."""
    check_size(size)
    kind = kind_for_name(name)
    if _sniff(stream) != kind.name:
        raise ValidationError(
            TYPE_MISMATCH.format(expected=kind.label), code="type_mismatch"
        )
    return kind
