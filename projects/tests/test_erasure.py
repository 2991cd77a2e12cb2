"""Secure deletion: every object version goes, a project's key is destroyed
first, a certificate records it all, and restoring an older backup does not
bring erased data back."""

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from backups import services as backup_services
from conftest import new_key
from projects import keys, services
from projects.models import (
    ErasureCertificate,
    ErasureMethod,
    Project,
    ProjectFile,
    ProjectKey,
)
from projects.storage import raw_chunks
from projects.tests.factories import PDF, stored_file

pytestmark = pytest.mark.django_db(transaction=True)


def versions(s3_client, bucket, key):
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=key)
    return page.get("Versions", []) + page.get("DeleteMarkers", [])


@pytest.fixture
def versioned(s3_storage, s3_client):
    s3_client.put_bucket_versioning(
        Bucket=s3_storage, VersioningConfiguration={"Status": "Enabled"}
    )
    return s3_storage


def test_deleting_a_file_removes_every_version_and_certifies_it(
    client, versioned, s3_client
):
    """With versioning on, an older version and the current one both go; the
    certificate lists each removed version and the audit trail has it."""
    owner = UserFactory()
    client.force_login(owner)
    project = services.project_create(actor=owner, name="Versioned")
    item = stored_file(project, content=PDF + b"v1")
    # An older version of the object exists (as after an overwrite).
    s3_client.put_object(Bucket=versioned, Key=item.blob.name, Body=b"old bytes")
    assert len(versions(s3_client, versioned, item.blob.name)) == 2

    response = client.post(reverse("projects:file-delete", args=[project.pk, item.pk]))
    assert response.status_code == 302
    assert versions(s3_client, versioned, item.blob.name) == []
    certificate = ErasureCertificate.objects.get(subject_id=str(item.pk))
    assert certificate.method == ErasureMethod.DELETE
    assert certificate.requested_by == owner
    assert len(certificate.objects_removed) == 2
    assert all(o.startswith(item.blob.name + "@") for o in certificate.objects_removed)
    assert certificate.completed_at is not None
    event = AuditEvent.objects.get(event_type="erasure.certificate")
    assert event.details["certificate"] == str(certificate.pk)
    assert event.details["objects_removed"] == 2


def test_deleting_a_project_destroys_its_key_then_rows_and_objects(
    client, versioned, s3_client
):
    """The data key row is gone, a tombstone is in the ledger outside the
    database, every object version is deleted, and the certificate says
    cryptographic erase."""
    owner = UserFactory()
    client.force_login(owner)
    project = services.project_create(actor=owner, name="Crypto-erased")
    items = [stored_file(project, name=f"p{i}.pdf") for i in range(3)]
    names = [i.blob.name for i in items]
    wrapped = bytes(ProjectKey.objects.get(pk=project.pk).wrapped)

    response = client.post(reverse("projects:delete", args=[project.pk]))
    assert response.status_code == 302
    assert not ProjectKey.objects.filter(pk=project.pk).exists()
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not ProjectFile.objects.filter(pk__in=[i.pk for i in items]).exists()
    for name in names:
        assert versions(s3_client, versioned, name) == []
    ledger = keys.ledger_entries("project")
    assert [e["id"] for e in ledger] == [str(project.pk)]
    certificate = ErasureCertificate.objects.get(subject_id=str(project.pk))
    assert certificate.method == ErasureMethod.CRYPTO_ERASE
    assert certificate.subject_label == "Crypto-erased"
    assert certificate.requested_by_label == owner.email
    assert sorted(certificate.objects_planned) == sorted(names)
    assert len(certificate.objects_removed) == 3
    assert certificate.key_destroyed.startswith(keys.keyring().active_id + ":")
    assert wrapped.hex() not in json.dumps(certificate.objects_removed)


def test_staff_see_and_download_the_certificate(client, otp_login):
    """The admin lists certificates and serves one as a JSON document; the
    download is audited; nobody can delete a certificate."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="For the auditor")
    stored_file(project)
    certificate = services.project_delete(actor=owner, project=project)
    staff = UserFactory(is_staff=True, is_superuser=True)
    otp_login(client, staff)

    listing = client.get(reverse("admin:projects_erasurecertificate_changelist"))
    assert listing.status_code == 200
    assert b"For the auditor" in listing.content
    url = reverse("admin:projects_erasurecertificate_download", args=[certificate.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    document = json.loads(response.content)
    assert document["method"] == "crypto-erase"
    assert document["subject"]["label"] == "For the auditor"
    assert document["requested_by"] == owner.email
    assert len(document["objects_removed"]) == 1
    assert AuditEvent.objects.filter(
        event_type="erasure.certificate.download", actor=staff
    ).exists()
    delete = reverse("admin:projects_erasurecertificate_delete", args=[certificate.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ErasureCertificate.objects.filter(pk=certificate.pk).exists()
    client.force_login(UserFactory())
    assert client.get(url).status_code == 302


def test_restoring_an_older_backup_does_not_bring_an_erased_project_back(
    client, backup_settings
):
    """Back up, erase a project and a file, restore the backup: the erased
    project, its key, its rows and its objects stay gone, and so does the
    file (the ledger is re-applied), while what nobody erased comes back
    readable."""
    owner = UserFactory()
    client.force_login(owner)
    erased = services.project_create(actor=owner, name="To be erased")
    kept = services.project_create(actor=owner, name="Kept")
    secret = PDF + b"erase-me-marker" * 500
    gone = stored_file(erased, content=secret)
    stays = stored_file(kept, content=PDF + b"keep-me")
    dropped = stored_file(kept, name="dropped.pdf", content=PDF + b"drop-me")
    dropped_id, dropped_name = dropped.pk, dropped.blob.name
    erased_id = erased.pk  # Django clears a deleted instance's pk
    backup_set = backup_services.backup_create()

    services.project_delete(actor=owner, project=erased)
    services.project_file_delete(actor=owner, item=dropped)
    assert not ProjectKey.objects.filter(pk=erased_id).exists()

    backup_services.backup_restore(set_id=backup_set.pk, copy=1)

    assert not Project.objects.filter(pk=erased_id).exists()
    assert not ProjectKey.objects.filter(pk=erased_id).exists()
    assert not ProjectFile.objects.filter(pk=gone.pk).exists()
    storage = ProjectFile._meta.get_field("blob").storage
    assert not storage.exists(gone.blob.name)
    # A file deleted since the backup stays deleted too.
    assert not ProjectFile.objects.filter(pk=dropped_id).exists()
    assert not storage.exists(dropped_name)
    event = AuditEvent.objects.get(event_type="erasure.reapply")
    assert event.details["keys_destroyed"] == 1
    assert event.details["ledger_entries"] == 2
    # The project nobody erased is back and readable.
    response = client.get(reverse("projects:file-download", args=[kept.pk, stays.pk]))
    assert b"".join(response.streaming_content) == PDF + b"keep-me"


def test_an_old_wrapped_key_is_useless_once_its_kek_is_retired(settings):
    """After keys_rotate and removing the old KEK from the keyring, a wrapped
    key copied out of an older backup no longer unwraps: erasure then reaches
    backups that are read outside the restore path too."""
    old, new = new_key(), new_key()
    settings.KREO_KEYRING = f"old:{old}"
    settings.KREO_ACTIVE_KEY_ID = "old"
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Rotated")
    item = stored_file(project, content=PDF + b"rotate-me")
    from_old_backup = ProjectKey.objects.get(pk=project.pk)
    old_wrapped = bytes(from_old_backup.wrapped)

    settings.KREO_KEYRING = f"new:{new},old:{old}"
    settings.KREO_ACTIVE_KEY_ID = "new"
    keys.data_keys_rotate()
    settings.KREO_KEYRING = f"new:{new}"

    assert b"".join(services_blob(item)) == PDF + b"rotate-me"
    from_old_backup.kek_id, from_old_backup.wrapped = "old", old_wrapped
    with pytest.raises(keys.KeyError_, match="not in KREO_KEYRING"):
        keys.data_key_unwrap(from_old_backup)
    assert old_wrapped not in b"".join(raw_chunks(item.blob))


def services_blob(item):
    from projects.storage import blob_chunks

    return blob_chunks(ProjectFile.objects.get(pk=item.pk))


def test_a_rolled_back_erasure_leaves_no_tombstone_behind(settings):
    """An erasure whose transaction rolls back (here: an outer one) keeps its
    tombstone only until the ledger is settled; settling drops tombstones of
    projects that still exist once they are an hour old, keeps the others."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Stays")
    erased = services.project_create(actor=owner, name="Goes")
    project_id, erased_id = project.pk, erased.pk
    services.project_delete(actor=owner, project=erased)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.project_delete(actor=owner, project=project)
        raise RuntimeError("rolled back")
    assert Project.objects.filter(pk=project_id).exists()
    assert len(keys.ledger_entries("project")) == 2
    assert keys.ledger_settle() == 0  # too recent: it may be mid-erasure
    later = timezone.now() + timedelta(hours=2)
    assert keys.ledger_settle(now=later) == 1
    assert [e["id"] for e in keys.ledger_entries("project")] == [str(erased_id)]


def test_the_project_admin_cannot_delete_a_file_around_the_erasure_path(
    client, otp_login
):
    """A file row deleted as an inline of its project would skip the
    tombstone, the object versions and the certificate: the inline offers no
    delete box, and a forged one deletes nothing."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Inline")
    item = stored_file(project)
    staff = UserFactory(is_staff=True, is_superuser=True)
    otp_login(client, staff)
    url = reverse("admin:projects_project_change", args=[project.pk])
    page = client.get(url)
    assert page.status_code == 200
    (files,) = [
        inline
        for inline in page.context["inline_admin_formsets"]
        if inline.formset.model is ProjectFile
    ]
    prefix = files.formset.prefix
    assert f'name="{prefix}-0-DELETE"'.encode() not in page.content
    form = {
        "name": project.name,
        "description": project.description,
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "1",
        f"{prefix}-0-id": str(item.pk),
        f"{prefix}-0-project": str(project.pk),
        f"{prefix}-0-name": item.name,
        f"{prefix}-0-DELETE": "on",
    }
    client.post(url, form)
    assert ProjectFile.objects.filter(pk=item.pk).exists()
    assert not ErasureCertificate.objects.filter(subject_id=str(item.pk)).exists()
