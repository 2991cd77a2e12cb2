"""With S3 configured, files live in the bucket, encrypted at rest, members-only."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.tests.factories import UserFactory
from projects import services
from projects.crypto import sealed_size
from projects.models import ProjectFile
from projects.tests.factories import PDF

pytestmark = pytest.mark.django_db


def test_uploaded_file_is_in_the_bucket_with_sse_not_on_disk(
    client, s3_storage, s3_client, settings, tmp_path
):
    """The object lands in the eu-west-2 bucket, encrypted by the app and with
    AES256 SSE; no local copy; members download the original bytes."""
    owner = UserFactory()
    client.force_login(owner)
    project = services.project_create(actor=owner, name="Tower crane pads")
    content = PDF + b"marker-7f3a" * 1000
    response = client.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": SimpleUploadedFile("pads.pdf", content)},
    )
    assert response.status_code == 302
    item = ProjectFile.objects.get()
    head = s3_client.head_object(Bucket=s3_storage, Key=item.blob.name)
    assert head["ServerSideEncryption"] == "AES256"
    # Encrypted before it left the app: a header and a tag per 64 KiB chunk.
    assert head["ContentLength"] == sealed_size(len(content))
    location = s3_client.get_bucket_location(Bucket=s3_storage)
    assert location["LocationConstraint"] == "eu-west-2"
    body = s3_client.get_object(Bucket=s3_storage, Key=item.blob.name)["Body"].read()
    assert b"marker-7f3a" not in body
    assert b"%PDF" not in body
    local = (
        [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
        if (settings.MEDIA_ROOT.exists())
        else []
    )
    assert not any(b"marker-7f3a" in p.read_bytes() for p in local)

    # Members download through the app; nobody else, and no public URL.
    url = reverse("projects:file-download", args=[project.pk, item.pk])
    assert b"".join(client.get(url).streaming_content) == content
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404
    acl = s3_client.get_object_acl(Bucket=s3_storage, Key=item.blob.name)
    public = [
        g
        for g in acl["Grants"]
        if g["Grantee"].get("URI", "").endswith(("AllUsers", "AuthenticatedUsers"))
    ]
    assert public == []


@pytest.mark.django_db(transaction=True)
def test_deleting_a_project_removes_its_objects_from_the_bucket(
    client, s3_storage, s3_client
):
    owner = UserFactory()
    client.force_login(owner)
    project = services.project_create(actor=owner, name="Demolition")
    for i in range(3):
        client.post(
            reverse("projects:file-upload", args=[project.pk]),
            {"file": SimpleUploadedFile(f"d{i}.pdf", PDF)},
        )
    listed = s3_client.list_objects_v2(Bucket=s3_storage).get("KeyCount")
    assert listed == 3
    client.post(reverse("projects:delete", args=[project.pk]))
    assert s3_client.list_objects_v2(Bucket=s3_storage).get("KeyCount") == 0
