"""Files reach storage only encrypted; downloads decrypt and verify every chunk.

Run against local disk and against the real S3 server (moto over HTTP).
"""

import io
import os

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent, Outcome
from projects import crypto, services, storage
from projects.downloads import FILE_ALTERED
from projects.models import ProjectFile, ProjectKey
from projects.tests.factories import PDF

pytestmark = pytest.mark.django_db

MARKER = b"MARKER-plaintext-c0ffee-"


@pytest.fixture
def local_storage(settings, tmp_path):
    storages = {**settings.STORAGES}
    storages["default"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": tmp_path / "disk"},
    }
    settings.STORAGES = storages
    return tmp_path / "disk"


@pytest.fixture(params=["disk", "s3"])
def where(request):
    """The storage under test: local disk, or a fresh bucket on the S3 server."""
    if request.param == "disk":
        request.getfixturevalue("local_storage")
    else:
        request.getfixturevalue("s3_storage")
    return request.param


def raw_read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def raw_write(name: str, content: bytes) -> None:
    """Replace the stored object's bytes behind the app's back."""
    default_storage.delete(name)
    assert default_storage.save(name, SimpleUploadedFile("x", content)) == name


@pytest.fixture
def owner(client):
    user = UserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def project(owner):
    return services.project_create(actor=owner, name="Encrypted estimate")


def upload(client, project, content, filename="plans.pdf") -> ProjectFile:
    response = client.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": SimpleUploadedFile(filename, content)},
    )
    assert response.status_code == 302, response.content[:500]
    return ProjectFile.objects.get(project=project, name=filename)


def download(client, item, api=False):
    name = "api:file-download" if api else "projects:file-download"
    return client.get(reverse(name, args=[item.project_id, item.pk]))


def big_pdf(size: int) -> bytes:
    body = (MARKER * (size // len(MARKER) + 1))[: size - len(PDF)]
    return PDF + body


def test_stored_bytes_hold_no_plaintext_and_download_returns_original(
    client, project, where
):
    """The raw object (disk or bucket) has no trace of a known marker, is as
    long as the sealed format says, and a member downloads the original."""
    content = big_pdf(300_000)
    item = upload(client, project, content)
    stored = raw_read(item.blob.name)
    assert MARKER not in stored
    assert b"%PDF" not in stored
    assert stored.startswith(crypto.MAGIC)
    assert len(stored) == crypto.sealed_size(len(content))
    assert item.encryption == storage.FORMAT
    response = download(client, item)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == content
    api = download(client, item, api=True)
    assert b"".join(api.streaming_content) == content


def test_disk_never_sees_plaintext_anywhere(client, project, local_storage):
    """Nothing under the storage folder contains the marker, in any file."""
    upload(client, project, big_pdf(150_000))
    files = [p for p in local_storage.rglob("*") if p.is_file()]
    assert files
    assert not any(MARKER in p.read_bytes() for p in files)


def test_each_project_has_its_own_wrapped_data_key(client, owner):
    """Two projects, two data keys, stored only wrapped under the active KEK."""
    first = services.project_create(actor=owner, name="One")
    second = services.project_create(actor=owner, name="Two")
    upload(client, first, big_pdf(5000))
    upload(client, second, big_pdf(5000))
    rows = list(ProjectKey.objects.order_by("created_at"))
    assert len(rows) == 2
    assert rows[0].wrapped != rows[1].wrapped
    assert all(len(bytes(r.wrapped)) == 12 + 32 + 16 for r in rows)


def test_a_byte_flipped_in_the_first_chunk_is_refused(client, project, where):
    """The download is refused before any byte is sent; the audit trail says so."""
    item = upload(client, project, big_pdf(20_000))
    stored = bytearray(raw_read(item.blob.name))
    stored[crypto.HEADER + 100] ^= 0x01
    raw_write(item.blob.name, bytes(stored))

    response = download(client, item)
    assert response.status_code == 409
    assert FILE_ALTERED.split(".")[0].encode() in response.content
    api = download(client, item, api=True)
    assert api.status_code == 409
    assert api.json()["detail"] == FILE_ALTERED
    failures = AuditEvent.objects.filter(
        event_type="file.download", outcome=Outcome.ERROR, target_id=str(item.pk)
    )
    assert failures.count() == 2
    assert failures.first().error_code == "integrity"
    assert not AuditEvent.objects.filter(
        event_type="file.download", outcome=Outcome.SUCCESS
    ).exists()


def test_a_byte_flipped_later_stops_the_stream_before_that_chunk(
    client, project, where
):
    """Chunks before the altered one are delivered (each verified); the altered
    chunk and everything after it are not: the body ends short of its length."""
    content = big_pdf(5 * crypto.CHUNK + 123)
    item = upload(client, project, content)
    stored = bytearray(raw_read(item.blob.name))
    stored[crypto.HEADER + 3 * crypto.SEALED_CHUNK + 7] ^= 0x80
    raw_write(item.blob.name, bytes(stored))

    response = download(client, item)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(content)
    assert body == content[: 3 * crypto.CHUNK]
    failure = AuditEvent.objects.get(
        event_type="file.download", outcome=Outcome.ERROR, target_id=str(item.pk)
    )
    assert "chunk 3" in failure.error_description


def test_truncated_reordered_and_swapped_objects_are_refused(client, project):
    """Cutting the last chunk, swapping two chunks, or serving another file's
    object under this file's name all fail authentication."""
    content = big_pdf(3 * crypto.CHUNK + 10)
    item = upload(client, project, content, "a.pdf")
    other = upload(client, project, big_pdf(3 * crypto.CHUNK + 10), "b.pdf")
    original = raw_read(item.blob.name)
    header, s = crypto.HEADER, crypto.SEALED_CHUNK
    chunks = [original[header + i * s : header + (i + 1) * s] for i in range(4)]

    raw_write(item.blob.name, original[: header + 3 * s])
    body = b"".join(download(client, item).streaming_content)
    assert len(body) < len(content)

    raw_write(item.blob.name, original[:header] + chunks[1] + chunks[0] + chunks[2])
    assert download(client, item).status_code == 409

    raw_write(item.blob.name, raw_read(other.blob.name))
    assert download(client, item).status_code == 409
    assert (
        AuditEvent.objects.filter(
            event_type="file.download", outcome=Outcome.ERROR
        ).count()
        == 3
    )


def test_a_file_of_another_project_cannot_be_decrypted_here(client, owner):
    """Data keys are per project: project B's key does not open A's object."""
    first = services.project_create(actor=owner, name="A")
    second = services.project_create(actor=owner, name="B")
    a = upload(client, first, big_pdf(4000), "a.pdf")
    b = upload(client, second, big_pdf(4000), "b.pdf")
    raw_write(b.blob.name, raw_read(a.blob.name))
    assert download(client, b).status_code == 409


def test_large_upload_streams_in_chunks_and_round_trips(client, project, settings):
    """A 2 MB upload (spooled to disk by Django) round-trips byte for byte."""
    content = PDF + os.urandom(2 * 1024 * 1024 - len(PDF) - 1)
    item = upload(client, project, content)
    chunks = list(download(client, item).streaming_content)
    assert b"".join(chunks) == content
    assert max(len(c) for c in chunks) <= crypto.CHUNK


def test_a_missing_object_is_a_clear_error_not_a_500(client, project, where):
    """The row is there but storage lost the object: 409 with the message,
    on the page and in the API, and the audit trail records it."""
    item = upload(client, project, big_pdf(5000))
    default_storage.delete(item.blob.name)
    assert download(client, item).status_code == 409
    api = download(client, item, api=True)
    assert api.status_code == 409
    assert api.json()["detail"] == FILE_ALTERED
    assert (
        AuditEvent.objects.filter(
            event_type="file.download", outcome=Outcome.ERROR, target_id=str(item.pk)
        ).count()
        == 2
    )


def test_files_stored_before_encryption_are_served_then_encrypted(
    client, project, owner, where
):
    """A file from before encryption still downloads; files_encrypt seals it
    under the project key, removes the plaintext object, and it still
    downloads the same."""
    content = big_pdf(70_000)
    item = ProjectFile(
        project=project,
        name="old.pdf",
        kind="pdf",
        content_type="application/pdf",
        size=len(content),
        sha256="-",
        uploaded_by=owner,
    )
    item.blob.save("upload", SimpleUploadedFile("x", content), save=False)
    item.save()
    old_name = item.blob.name
    assert b"".join(download(client, item).streaming_content) == content

    out = io.StringIO()
    call_command("files_encrypt", stdout=out)
    assert "1 plaintext files encrypted" in out.getvalue()
    item.refresh_from_db()
    assert item.encryption == storage.FORMAT
    assert not default_storage.exists(old_name)
    assert MARKER not in raw_read(item.blob.name)
    assert b"".join(download(client, item).streaming_content) == content
