"""Image thumbnails: made in a task after the upload commits, stored sealed
under the project's key, shown to members only, gone with their file.

The task runs in this process after commit (``mail_now``), as the mail tasks
of the invitations tests do.
"""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from accounts.tests.factories import PASSWORD, UserFactory
from kreo import sealed
from projects import thumbnails
from projects.models import ErasureCertificate, ProjectFile, Role
from projects.tests.factories import PDF, MembershipFactory

pytestmark = pytest.mark.django_db


def _png(width=640, height=400) -> bytes:
    image = Image.new("RGB", (width, height))
    image.putdata([(x % 256, y % 256, 90) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def owner(client):
    membership = MembershipFactory(role=Role.OWNER)
    client.login(username=membership.user.email, password=PASSWORD)
    return membership


def _upload(client, mail_now, project, name, content, content_type="image/png"):
    with mail_now():
        response = client.post(
            reverse("projects:file-upload", args=[project.pk]),
            {"file": SimpleUploadedFile(name, content, content_type=content_type)},
        )
    assert response.status_code == 302, response.content[:500]
    return ProjectFile.objects.get(project=project, name=name)


def _thumb(client, item):
    return client.get(
        reverse("projects:file-thumbnail", args=[item.project_id, item.pk])
    )


def _raw(item) -> bytes:
    with item.thumbnail.storage.open(item.thumbnail.name, "rb") as handle:
        return handle.read()


def test_an_uploaded_png_gets_a_sealed_thumbnail_shown_in_the_list(
    client, owner, mail_now
):
    """The task stores a KREOSEAL object (no PNG or WebP bytes at rest); the
    member gets a small WebP inline, sandboxed; the list shows it."""
    item = _upload(client, mail_now, owner.project, "site photo.png", _png())
    assert item.thumbnail.name.startswith(f"projects/{owner.project_id}/")
    raw = _raw(item)
    assert sealed.is_sealed(raw[:8])
    assert b"\x89PNG" not in raw and b"WEBP" not in raw
    response = _thumb(client, item)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert response["Content-Disposition"].startswith("inline")
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Cache-Control"] == "private, no-store"
    with Image.open(io.BytesIO(response.content)) as small:
        assert small.format == "WEBP"
        assert max(small.size) <= max(thumbnails.SIZE)
        assert small.size == (240, 150)  # the aspect ratio kept
    page = client.get(owner.project.get_absolute_url()).content.decode()
    src = reverse("projects:file-thumbnail", args=[owner.project_id, item.pk])
    assert f'<img src="{src}" alt=""' in page


def test_outsiders_and_visitors_get_no_thumbnail(client, owner, mail_now):
    """The same membership check as previews and downloads: 404 to another
    signed-in user, the sign-in page to a visitor."""
    item = _upload(client, mail_now, owner.project, "site.png", _png(50, 50))
    assert _thumb(client, item).status_code == 200
    client.logout()
    assert _thumb(client, item).status_code == 302
    client.login(username=UserFactory().email, password=PASSWORD)
    assert _thumb(client, item).status_code == 404


def test_a_corrupt_image_or_a_pdf_gets_no_thumbnail_and_the_list_still_works(
    client, owner, mail_now
):
    """PNG magic followed by garbage: the upload passes, no thumbnail and no
    error; the list shows the type; the thumbnail URL answers 404."""
    broken = _upload(
        client,
        mail_now,
        owner.project,
        "broken.png",
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\xff" * 300,
    )
    plan = _upload(client, mail_now, owner.project, "plan.pdf", PDF, "application/pdf")
    for item in (broken, plan):
        assert item.thumbnail.name == ""
        assert _thumb(client, item).status_code == 404
    page = client.get(owner.project.get_absolute_url())
    assert page.status_code == 200
    text = page.content.decode()
    assert '<span class="file-icon" aria-hidden="true">PNG</span>' in text
    assert '<span class="file-icon" aria-hidden="true">PDF</span>' in text
    assert "/thumbnail/" not in text


def test_a_file_object_put_in_the_thumbnails_place_is_not_served(
    client, owner, mail_now
):
    """The thumbnail is sealed with its own context: the file's own object
    (same key, same file id) copied over it does not open as a thumbnail."""
    item = _upload(client, mail_now, owner.project, "site.png", _png(60, 60))
    storage = item.thumbnail.storage
    with storage.open(item.blob.name, "rb") as handle:
        original = handle.read()
    storage.delete(item.thumbnail.name)
    storage.save(item.thumbnail.name, io.BytesIO(original))
    assert _thumb(client, item).status_code == 404


def test_making_it_twice_leaves_one_object(client, owner, mail_now):
    """A retried task keeps the thumbnail it has and writes nothing more."""
    item = _upload(client, mail_now, owner.project, "site.png", _png(60, 60))
    first = item.thumbnail.name
    assert thumbnails.thumbnail_make(file_id=item.pk) is True
    item.refresh_from_db()
    assert item.thumbnail.name == first
    _, names = item.thumbnail.storage.listdir(f"projects/{owner.project_id}")
    assert len(names) == 2  # the file and its thumbnail


def test_deleting_the_file_deletes_its_thumbnail(client, owner, mail_now):
    """The certificate plans and removes both objects; none is left."""
    item = _upload(client, mail_now, owner.project, "site.png", _png(60, 60))
    names = [item.blob.name, item.thumbnail.name]
    storage = item.thumbnail.storage
    with mail_now():
        response = client.post(
            reverse("projects:file-delete", args=[owner.project_id, item.pk])
        )
    assert response.status_code == 302
    certificate = ErasureCertificate.objects.get(subject_id=str(item.pk))
    assert sorted(certificate.objects_planned) == sorted(names)
    assert certificate.completed_at is not None
    assert not any(storage.exists(name) for name in names)


def test_erasing_the_project_makes_the_thumbnail_unreadable_and_removes_it(
    client, owner, mail_now
):
    """The key that sealed it is destroyed with the project's; the object
    goes with the project's files."""
    item = _upload(client, mail_now, owner.project, "site.png", _png(60, 60))
    thumb = item.thumbnail.name
    storage = item.thumbnail.storage
    with mail_now():
        response = client.post(
            reverse("projects:delete", args=[owner.project_id]),
            {"confirm": owner.project.name},
        )
    assert response.status_code == 302, response.content[:300]
    certificate = ErasureCertificate.objects.get(subject_id=str(owner.project_id))
    assert thumb in certificate.objects_planned
    assert not storage.exists(thumb)


def test_a_backup_carries_the_thumbnail_with_its_file(client, owner, mail_now):
    """Copies 1 and 2 list the storage objects to save from the snapshot's
    rows: a restored row names its thumbnail, so the thumbnail is saved too."""
    from backups import filesets

    item = _upload(client, mail_now, owner.project, "site photo.png", _png())
    pdf = _upload(client, mail_now, owner.project, "spec.pdf", PDF, "application/pdf")
    names = set(filesets.file_names("default"))
    assert {item.blob.name, item.thumbnail.name, pdf.blob.name} <= names
    assert "" not in names
