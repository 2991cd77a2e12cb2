"""A member's path through the pages: create, upload, download, rename, share."""

import hashlib

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.html import escape

from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent
from projects import services, uploads
from projects.models import Membership, Project, ProjectFile, Role
from projects.tests.factories import PDF, PNG, MembershipFactory, stored_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(client):
    user = UserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def project(owner):
    return services.project_create(actor=owner, name="Riverside depot")


def upload(client, project, filename, content, **extra):
    url = reverse("projects:file-upload", args=[project.pk])
    return client.post(url, {"file": SimpleUploadedFile(filename, content), **extra})


def test_sign_in_and_create_a_project(client):
    """A user signs in with email and password, creates a project, lands on it."""
    user = UserFactory(email="Estimator@Example.test")
    response = client.post(
        reverse("accounts:login"),
        {"username": "estimator@example.test", "password": PASSWORD},
    )
    assert response.status_code == 302
    response = client.post(
        reverse("projects:create"),
        {"name": "  Hospital wing  ", "description": ""},
        follow=True,
    )
    project = Project.objects.get()
    assert project.name == "Hospital wing"
    assert Membership.objects.get(project=project).user == user
    assert Membership.objects.get(project=project).role == Role.OWNER
    assert response.redirect_chain[-1][0] == project.get_absolute_url()
    assert b"Hospital wing" in response.content


def test_project_list_shows_only_my_projects(client, owner, project):
    other = services.project_create(actor=UserFactory(), name="Someone else's job")
    response = client.get(reverse("projects:list"))
    assert project.name.encode() in response.content
    assert other.name.encode() not in response.content


def test_upload_then_download_returns_the_same_bytes(client, project):
    """The bytes that go up come back down, as an attachment that cannot render."""
    content = PDF + b"x" * 200_000
    response = upload(client, project, "Ground floor.pdf", content)
    assert response.status_code == 302
    item = ProjectFile.objects.get()
    assert item.name == "Ground floor.pdf"
    assert item.sha256 == hashlib.sha256(content).hexdigest()
    assert "Ground floor" not in item.blob.name, "storage key holds user input"
    response = client.get(reverse("projects:file-download", args=[project.pk, item.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == content
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Cache-Control"] == "private, no-store"
    types = list(
        AuditEvent.objects.exclude(event_type__startswith="page.")
        .exclude(event_type__startswith="record.")  # field changes, beside them
        .values_list("event_type", flat=True)
    )
    assert types == ["project.create", "file.upload", "file.download"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("plan.pdf", PNG, uploads.TYPE_MISMATCH.format(expected="PDF")),
        ("photo.png", PDF, uploads.TYPE_MISMATCH.format(expected="PNG image")),
        ("takeoff.xlsx", b"just text, not a workbook", "not a Excel workbook"),
        ("run.exe", b"MZ\x90\x00", "Files of this type are not accepted"),
        ("notes", PDF, "Files of this type are not accepted"),
        ("empty.pdf", b"", uploads.EMPTY_FILE),
    ],
)
def test_upload_refuses_bad_files_and_stores_nothing(
    client, project, name, content, message
):
    """A file whose bytes do not match its type is refused with a clear message."""
    response = upload(client, project, name, content)
    assert response.status_code == 400
    assert escape(message).encode() in response.content
    assert not ProjectFile.objects.exists()
    assert not AuditEvent.objects.filter(event_type="file.upload").exists()


def test_upload_with_a_path_in_the_name_is_refused(client, project):
    """An explicit name that tries to climb out of the project is a 400."""
    response = upload(client, project, "plan.pdf", PDF, name="../../etc/passwd.pdf")
    assert response.status_code == 400
    assert uploads.NAME_PATH.encode() in response.content
    assert not ProjectFile.objects.exists()


def test_path_in_the_multipart_filename_never_reaches_storage(client, project):
    """Django strips directories from the multipart filename; the key is random."""
    response = upload(client, project, "../../../../tmp/evil.pdf", PDF)
    assert response.status_code == 302
    item = ProjectFile.objects.get()
    assert item.name == "evil.pdf"
    assert item.blob.name.startswith(f"projects/{project.pk}/")
    assert ".." not in item.blob.name


def test_upload_over_the_limit_is_413_and_stores_nothing(client, project, settings):
    settings.KREO_MAX_UPLOAD_BYTES = 50_000
    response = upload(client, project, "big.pdf", PDF + b"0" * 60_000)
    assert response.status_code == 413
    assert b"larger than the" in response.content
    assert not ProjectFile.objects.exists()


def test_body_far_over_the_limit_is_refused_before_it_is_read(
    client, project, settings
):
    """The size middleware answers 413 from Content-Length alone."""
    settings.KREO_MAX_UPLOAD_BYTES = 1000
    url = reverse("projects:file-upload", args=[project.pk])
    response = client.generic(
        "POST",
        url,
        b"x",
        CONTENT_TYPE="application/octet-stream",
        CONTENT_LENGTH=str(5 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert b"larger than the 1000 bytes limit. Nothing was saved." in response.content
    # Refused before sign-in is read: the page does not offer to "Sign in".
    assert b"Sign in" not in response.content


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("drawing.dwg", b"AC1032\x00\x00\x00\x00\x06\x01" + b"\x00" * 64),
        ("model.ifc", b"ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION(('ViewDefinition'));"),
        ("site.dxf", b"  0\r\nSECTION\r\n  2\r\nHEADER\r\n  0\r\nENDSEC\r\n"),
        ("quantities.csv", "item,qty,rate\nconcrete,12.5,£95\n".encode()),
        ("photo.png", PNG),
    ],
)
def test_accepted_drawing_and_document_types(client, project, name, content):
    assert upload(client, project, name, content).status_code == 302
    assert ProjectFile.objects.get().name == name


def test_xlsx_is_recognised_inside_its_zip(client, project, tmp_path):
    import zipfile

    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    assert upload(client, project, "book.xlsx", path.read_bytes()).status_code == 302
    assert ProjectFile.objects.get().kind == "xlsx"
    # The same zip named as a Word document is refused.
    response = upload(client, project, "book.docx", path.read_bytes())
    assert response.status_code == 400


def test_rename_keeps_the_type(client, project, owner):
    item = stored_file(project, uploaded_by=owner)
    url = reverse("projects:file-rename", args=[project.pk, item.pk])
    response = client.post(url, {"name": "Level 2.pdf"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.name == "Level 2.pdf"
    response = client.post(url, {"name": "Level 2.exe"})
    assert response.status_code == 400
    response = client.post(url, {"name": "..\\secrets.pdf"})
    assert response.status_code == 400
    assert uploads.NAME_PATH.encode() in response.content
    item.refresh_from_db()
    assert item.name == "Level 2.pdf"


def test_deleting_a_file_removes_its_stored_object(
    client, project, owner, django_capture_on_commit_callbacks
):
    item = stored_file(project, uploaded_by=owner)
    key = item.blob.name
    assert default_storage.exists(key)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("projects:file-delete", args=[project.pk, item.pk])
        )
    assert response.status_code == 302
    assert not ProjectFile.objects.exists()
    assert not default_storage.exists(key)


@pytest.mark.django_db(transaction=True)
def test_deleting_a_project_removes_rows_and_objects(client, owner):
    project = services.project_create(actor=owner, name="Short-lived")
    keys = [stored_file(project, name=f"f{i}.pdf").blob.name for i in range(3)]
    response = client.post(reverse("projects:delete", args=[project.pk]))
    assert response.status_code == 302
    assert not Project.objects.exists()
    assert not ProjectFile.objects.exists()
    assert not any(default_storage.exists(key) for key in keys)


def test_owner_manages_members(client, project, owner):
    """Inviting never joins anyone; a member's role changes and they leave."""
    colleague = UserFactory(email="qs@example.test")
    url = reverse("projects:members", args=[project.pk])
    response = client.post(url, {"email": "QS@example.test", "role": "viewer"})
    assert response.status_code == 302
    assert not Membership.objects.filter(user=colleague).exists()
    membership = Membership.objects.create(
        project=project, user=colleague, role=Role.VIEWER
    )
    response = client.post(url, {"email": "qs@example.test", "role": "viewer"})
    assert response.status_code == 400
    assert b"already a member" in response.content
    response = client.post(url, {"email": "nobody@example.test", "role": "viewer"})
    assert response.status_code == 302
    role_url = reverse("projects:member-role", args=[project.pk, membership.pk])
    client.post(role_url, {"role": "editor"})
    membership.refresh_from_db()
    assert membership.role == Role.EDITOR
    remove_url = reverse("projects:member-remove", args=[project.pk, membership.pk])
    client.post(remove_url)
    assert not Membership.objects.filter(user=colleague).exists()


def test_the_last_owner_cannot_leave_or_be_demoted(client, project, owner):
    """A project always keeps an owner, so it never becomes unmanageable."""
    mine = Membership.objects.get(project=project, user=owner)
    role_url = reverse("projects:member-role", args=[project.pk, mine.pk])
    response = client.post(role_url, {"role": "viewer"}, follow=True)
    assert services.LAST_OWNER.encode() in response.content
    remove_url = reverse("projects:member-remove", args=[project.pk, mine.pk])
    response = client.post(remove_url, follow=True)
    assert services.LAST_OWNER.encode() in response.content
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_member_of_another_project_cannot_reach_this_ones_file(client, project):
    """A file id from another project is not found, even for its own members."""
    other_owner = UserFactory()
    other = services.project_create(actor=other_owner, name="Other")
    foreign = stored_file(other)
    url = reverse("projects:file-download", args=[project.pk, foreign.pk])
    assert client.get(url).status_code == 404


def test_malformed_ids_are_404_not_500(client, owner):
    assert client.get("/projects/not-a-uuid/").status_code == 404
    assert (
        client.get("/projects/00000000-0000-0000-0000-000000000000/").status_code == 404
    )
    response = client.get("/api/projects/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert response.json()["detail"] == "Project not found."


def test_viewer_sees_no_management_controls(client, project):
    viewer = UserFactory()
    MembershipFactory(project=project, user=viewer, role=Role.VIEWER)
    client.force_login(viewer)
    response = client.get(project.get_absolute_url())
    assert response.status_code == 200
    assert b"Upload a file" not in response.content
    assert b"Manage members" not in response.content
    assert b"Delete project" not in response.content
