"""The erasure ledger in a shared S3 bucket: every pod writes and sees the same
tombstones, a restore on another host re-applies them, a tombstone can be
neither overwritten nor deleted, an erasure without its tombstone is refused,
and a rolled-back erasure is withdrawn by a void marker."""

import io
import json
import logging
import socket
import uuid
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from backups import services as backup_services
from conftest import S3_ENDPOINT
from kreo.tests.test_settings import LEDGER_BUCKET, PRODUCTION_ENV, deploy_s3, manage
from projects import keys, services
from projects.ledger import S3Ledger
from projects.models import ErasureCertificate, Project, ProjectFile, ProjectKey
from projects.storage import blob_chunks
from projects.tests.factories import PDF, stored_file

pytestmark = pytest.mark.django_db(transaction=True)


def stored_keys(s3_client, bucket, prefix):
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return sorted(v["Key"] for v in page.get("Versions", []))


def as_pod(settings, tmp_path, name):
    """Settings of another pod: same bucket, a folder (and process) of its own."""
    settings.KREO_KEY_LEDGER_DIR = tmp_path / f"{name}-ledger"


def test_a_tombstone_goes_to_the_bucket_locked_and_reads_back(
    ledger_bucket, s3_client, settings
):
    """Erasing a project writes one encrypted, retention-locked object to the
    ledger bucket and nothing to the folder; the ledger reads it back."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="To the bucket")
    stored_file(project)
    kek = ProjectKey.objects.get(pk=project.pk).kek_id
    project_id = project.pk

    services.project_delete(actor=owner, project=project)

    found = stored_keys(s3_client, ledger_bucket, "kreo/tombstones/")
    assert len(found) == 1
    assert found[0].startswith(f"kreo/tombstones/project/{project_id}/")
    head = s3_client.head_object(Bucket=ledger_bucket, Key=found[0])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + timedelta(days=399)
    entries = keys.ledger_entries("project")
    assert [e["id"] for e in entries] == [str(project_id)]
    assert entries[0]["key"].startswith(f"{kek}:")
    assert not settings.KREO_KEY_LEDGER_DIR.exists()


def test_a_tombstone_is_locked_in_the_one_app_lock_mode(
    ledger_bucket, s3_client, settings
):
    """The ledger decides Object Lock through kreo.s3.retention_params: the
    mode is KREO_S3_LOCK_MODE, as for backups and audit archives; the
    ledger's own mode setting is gone."""
    assert not hasattr(settings, "KREO_KEY_LEDGER_LOCK_MODE")
    settings.KREO_S3_LOCK_MODE = "GOVERNANCE"
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Governed")
    services.project_delete(actor=owner, project=project)
    [found] = stored_keys(s3_client, ledger_bucket, "kreo/tombstones/")
    head = s3_client.head_object(Bucket=ledger_bucket, Key=found)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + timedelta(days=399)


def test_two_pods_see_each_others_tombstones(ledger_bucket, settings, tmp_path):
    """A project erased on pod A and a file deleted on pod B: each pod's
    ledger lists both, although neither has the other's folder."""
    owner = UserFactory()
    erased = services.project_create(actor=owner, name="Erased on A")
    kept = services.project_create(actor=owner, name="Kept")
    item = stored_file(kept, name="dropped.pdf")
    expected = {("project", str(erased.pk)), ("file", str(item.pk))}

    services.project_delete(actor=owner, project=erased)
    as_pod(settings, tmp_path, "pod-b")
    services.project_file_delete(actor=owner, item=item)
    on_b = {(e["kind"], e["id"]) for e in keys.ledger_entries()}

    settings.KREO_KEY_LEDGER_DIR = tmp_path / "pod-a-ledger"
    on_a = {(e["kind"], e["id"]) for e in keys.ledger_entries()}
    assert on_a == on_b == expected
    # Without the bucket, pod B's own folder knows nothing of either.
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    as_pod(settings, tmp_path, "pod-b")
    assert keys.ledger_entries() == []


def test_a_restore_on_a_second_host_keeps_an_erased_project_erased(
    client, ledger_bucket, backup_settings, settings, tmp_path
):
    """Back up, erase a project on pod A, restore the backup on a host whose
    only ledger is the bucket (an empty folder of its own): the project, its
    key, rows and objects stay gone and its file cannot be read, while the
    project nobody erased comes back readable."""
    owner = UserFactory()
    client.force_login(owner)
    erased = services.project_create(actor=owner, name="Erased on pod A")
    kept = services.project_create(actor=owner, name="Kept")
    gone = stored_file(erased, content=PDF + b"erase-me" * 300)
    stays = stored_file(kept, content=PDF + b"keep-me")
    erased_id, gone_id, gone_name = erased.pk, gone.pk, gone.blob.name
    backup_set = backup_services.backup_create()
    services.project_delete(actor=owner, project=erased)

    as_pod(settings, tmp_path, "restore-host")
    backup_services.backup_restore(set_id=backup_set.pk, copy=1)

    assert not settings.KREO_KEY_LEDGER_DIR.exists()
    assert not Project.objects.filter(pk=erased_id).exists()
    assert not ProjectKey.objects.filter(pk=erased_id).exists()
    assert not ProjectFile.objects.filter(pk=gone_id).exists()
    assert not ProjectFile._meta.get_field("blob").storage.exists(gone_name)
    with pytest.raises(keys.KeyError_, match="destroyed"):
        keys.data_key_get(erased_id)
    download = reverse("projects:file-download", args=[erased_id, gone_id])
    assert client.get(download).status_code == 404
    event = AuditEvent.objects.get(event_type="erasure.reapply")
    assert event.details["keys_destroyed"] == 1
    response = client.get(reverse("projects:file-download", args=[kept.pk, stays.pk]))
    assert b"".join(response.streaming_content) == PDF + b"keep-me"


def test_a_tombstone_is_never_overwritten_nor_deleted_nor_hidden(
    ledger_bucket, s3_client
):
    """Writing over a tombstone is refused and leaves it as it was; deleting
    its locked version is refused by the bucket; a delete marker does not hide
    it from the ledger."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Locked")
    project_id = project.pk
    services.project_delete(actor=owner, project=project)
    (name,) = stored_keys(s3_client, ledger_bucket, "kreo/tombstones/")
    original = s3_client.get_object(Bucket=ledger_bucket, Key=name)["Body"].read()

    store = keys.ledger()
    forged = json.dumps({"kind": "project", "id": str(uuid.uuid4())}).encode()
    with pytest.raises(keys.LedgerError) as refused:
        store.put_new(name, forged, locked=True)
    assert str(refused.value) == keys.TOMBSTONE_EXISTS.format(name=name)
    body = s3_client.get_object(Bucket=ledger_bucket, Key=name)["Body"].read()
    assert body == original

    version = s3_client.head_object(Bucket=ledger_bucket, Key=name)["VersionId"]
    with pytest.raises(s3_client.exceptions.ClientError) as denied:
        s3_client.delete_object(Bucket=ledger_bucket, Key=name, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    s3_client.delete_object(Bucket=ledger_bucket, Key=name)  # a delete marker
    assert [e["id"] for e in keys.ledger_entries()] == [str(project_id)]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_erasure_is_refused_while_the_ledger_is_unreachable(ledger_bucket, settings):
    """With the ledger's S3 server down, deleting a project or a file fails
    with a clear message before anything is erased: key, rows, objects,
    certificate and audit trail are as they were, the file still reads."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Survives the outage")
    item = stored_file(project, content=PDF + b"still-here")
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = f"http://127.0.0.1:{_closed_port()}"

    with pytest.raises(keys.LedgerError) as refused:
        services.project_delete(actor=owner, project=project)
    assert str(refused.value) == keys.LEDGER_UNREACHABLE
    with pytest.raises(keys.LedgerError, match="cannot be reached"):
        services.project_file_delete(actor=owner, item=item)

    assert Project.objects.filter(pk=project.pk).exists()
    assert ProjectKey.objects.filter(pk=project.pk).exists()
    assert b"".join(blob_chunks(ProjectFile.objects.get(pk=item.pk))) == (
        PDF + b"still-here"
    )
    assert not ErasureCertificate.objects.exists()
    assert not AuditEvent.objects.filter(
        event_type__in=["project.delete", "file.delete"], outcome="success"
    ).exists()
    refusals = AuditEvent.objects.filter(
        event_type__in=["project.delete", "file.delete"], error_code="erasure_ledger"
    )
    assert refusals.count() == 2
    with pytest.raises(keys.LedgerError) as restore:
        keys.after_restore()
    assert str(restore.value) == keys.RESTORE_LEDGER_UNREACHABLE

    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = S3_ENDPOINT
    project_id = project.pk
    services.project_delete(actor=owner, project=project)
    assert [e["id"] for e in keys.ledger_entries()] == [str(project_id)]


def test_settling_voids_a_rolled_back_erasure_and_keeps_its_tombstone(
    ledger_bucket, s3_client, settings, tmp_path
):
    """An erasure rolled back by an outer transaction leaves a tombstone; once
    it is past the grace period, settling writes a void marker (the locked
    tombstone stays), the ledger no longer lists it, a restore leaves the
    project alone, a second pod settling voids nothing more, and the project
    can still be erased for real later."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Stays")
    erased = services.project_create(actor=owner, name="Goes")
    project_id, erased_id = project.pk, erased.pk
    services.project_delete(actor=owner, project=erased)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.project_delete(actor=owner, project=project)
        raise RuntimeError("rolled back")
    assert len(keys.ledger_entries("project")) == 2

    assert keys.ledger_settle() == 0  # too recent: it may be mid-erasure
    later = timezone.now() + timedelta(hours=2)
    assert keys.ledger_settle(now=later) == 1
    assert [e["id"] for e in keys.ledger_entries()] == [str(erased_id)]
    assert len(stored_keys(s3_client, ledger_bucket, "kreo/tombstones/")) == 2
    (void,) = stored_keys(s3_client, ledger_bucket, "kreo/voids/")
    assert void.startswith(f"kreo/voids/project/{project_id}/")
    as_pod(settings, tmp_path, "pod-b")
    assert keys.ledger_settle(now=later) == 0

    summary = keys.after_restore()
    assert summary["ledger_entries"] == 1
    assert Project.objects.filter(pk=project_id).exists()

    services.project_delete(actor=owner, project=Project.objects.get(pk=project_id))
    assert {e["id"] for e in keys.ledger_entries()} == {
        str(erased_id),
        str(project_id),
    }


@pytest.mark.parametrize("other", ["BACKUP_S3_BUCKET", "AUDIT_ARCHIVE_S3_BUCKET"])
def test_the_ledger_refuses_a_bucket_it_would_share(ledger_bucket, settings, other):
    """A ledger in the backup or audit archive bucket would travel with the
    data: erasures are refused and the deploy check names the problem."""
    setattr(settings, other, ledger_bucket)
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Not erased")
    with pytest.raises(keys.LedgerError, match="needs a bucket of its own"):
        services.project_delete(actor=owner, project=project)
    assert Project.objects.filter(pk=project.pk).exists()
    errors = [e for e in run_checks(include_deployment_checks=True)]
    assert any(e.id == "projects.E003" and ledger_bucket in e.msg for e in errors), (
        errors
    )


def test_the_ledger_refuses_the_file_storage_bucket(
    ledger_bucket, s3_storage, settings
):
    """The file storage bucket is backed up: it cannot hold the ledger."""
    settings.KREO_KEY_LEDGER_S3_BUCKET = s3_storage
    with pytest.raises(keys.LedgerError, match="file storage bucket"):
        keys.ledger()
    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger_bucket
    assert isinstance(keys.ledger(), S3Ledger)


def test_a_folder_ledger_moves_into_the_bucket(ledger_bucket, settings):
    """Tombstones written to the folder before the bucket existed move into
    it unchanged, leave the folder, and a second run moves nothing."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Erased before the move")
    folder = settings.KREO_KEY_LEDGER_DIR
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    services.project_delete(actor=owner, project=project)
    before = keys.ledger_entries()
    assert len(before) == 1

    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger_bucket
    assert keys.ledger_entries() == []
    assert keys.ledger_import(folder) == 1
    assert keys.ledger_entries() == before
    assert list(folder.glob("*.json")) == []
    assert keys.ledger_import(folder) == 0
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    with pytest.raises(keys.LedgerError, match="Set KREO_KEY_LEDGER_S3_BUCKET"):
        keys.ledger_import(folder)


def test_the_ledger_import_command_moves_a_folder_once(ledger_bucket, settings):
    """``manage.py ledger_import <folder>`` moves the folder's tombstones into
    the bucket and says how many; run again it moves none and duplicates
    nothing; without a bucket, or with no such folder, it fails naming why."""
    owner = UserFactory()
    first = services.project_create(actor=owner, name="Erased on the folder")
    second = services.project_create(actor=owner, name="Also on the folder")
    erased = {str(first.pk), str(second.pk)}
    folder = settings.KREO_KEY_LEDGER_DIR
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    services.project_delete(actor=owner, project=first)
    services.project_delete(actor=owner, project=second)
    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger_bucket

    out = io.StringIO()
    call_command("ledger_import", str(folder), stdout=out)
    assert f"2 tombstone(s) moved from {folder} into bucket {ledger_bucket}" in (
        out.getvalue()
    )
    assert {e["id"] for e in keys.ledger_entries()} == erased
    assert list(folder.glob("*.json")) == []
    again = io.StringIO()
    call_command("ledger_import", str(folder), stdout=again)
    assert "0 tombstone(s) moved" in again.getvalue()
    assert len(keys.ledger_entries()) == 2

    with pytest.raises(CommandError, match="no-such-folder: nothing to import"):
        call_command("ledger_import", str(folder.parent / "no-such-folder"))
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    with pytest.raises(CommandError) as refused:
        call_command("ledger_import", str(folder))
    assert str(refused.value) == keys.LEDGER_IMPORT_NEEDS_BUCKET
    assert keys.ledger_entries() == []


def test_production_takes_the_bucket_in_place_of_the_folder(s3_client):
    """Production refuses to start with neither ledger, starts with the bucket
    alone, and its deploy check refuses a bucket shared with the archives."""
    without = {k: v for k, v in PRODUCTION_ENV.items() if k != "KREO_KEY_LEDGER_DIR"}
    refused = manage("check", env=without)
    assert refused.returncode == 1
    assert "KREO_KEY_LEDGER_DIR" in refused.stderr
    bucket = {
        **without,
        **deploy_s3(s3_client),
        "KREO_KEY_LEDGER_S3_BUCKET": LEDGER_BUCKET,
    }
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=bucket)
    assert done.returncode == 0, done.stderr
    archive = PRODUCTION_ENV["AUDIT_ARCHIVE_S3_BUCKET"]
    shared = manage(
        "check", "--deploy", env={**without, "KREO_KEY_LEDGER_S3_BUCKET": archive}
    )
    assert shared.returncode != 0
    assert "projects.E003" in shared.stderr


STRAYS = (
    "kreo/tombstones/",  # the empty "folder" object an S3 console makes
    "kreo/tombstones/project/",
    "kreo/tombstones/notes.txt",
    "kreo/tombstones/user/{id}/20260101T000000.000000Z-abcdef.json",
    "kreo/tombstones/project/not-a-uuid/20260101T000000.000000Z-abcdef.json",
    "kreo/tombstones/project/{id}/yesterday-abcdef.json",
    "kreo/tombstones/project/{id}/20260101T000000.000000Z-abcdef.json/extra",
)


def test_stray_keys_under_tombstones_are_skipped_not_fatal(
    ledger_bucket, s3_client, backup_settings, settings, tmp_path, caplog
):
    """Objects under ``tombstones/`` that are no tombstone (a console folder,
    a stray upload, a foreign kind, a non-UUID id, a bad stamp), present or
    deleted (their old versions still listed), are logged and left out:
    listing, settling, a restore and an import all work and see only the
    real tombstones."""
    # Its own level: an earlier test's worker may have raised the root's.
    caplog.set_level(logging.WARNING, logger="projects.ledger")
    owner = UserFactory()
    erased = services.project_create(actor=owner, name="Really erased")
    live = services.project_create(actor=owner, name="Live")
    erased_id = erased.pk
    backup_set = backup_services.backup_create()
    services.project_delete(actor=owner, project=erased)
    for stray in STRAYS:
        key = stray.format(id=live.pk)
        s3_client.put_object(Bucket=ledger_bucket, Key=key, Body=b"")
        if stray.endswith("/"):
            s3_client.delete_object(Bucket=ledger_bucket, Key=key)

    assert [e["id"] for e in keys.ledger_entries()] == [str(erased_id)]
    assert keys.ledger_settle(now=timezone.now() + timedelta(hours=2)) == 0
    backup_services.backup_restore(set_id=backup_set.pk, copy=1)
    assert not Project.objects.filter(pk=erased_id).exists()
    assert Project.objects.filter(pk=live.pk).exists()
    folder = tmp_path / "old-folder-ledger"
    folder.mkdir()
    assert keys.ledger_import(folder) == 0
    skipped = [r.getMessage() for r in caplog.records if "not a tombstone" in r.msg]
    assert "erasure ledger: kreo/tombstones/ is not a tombstone, skipped" in skipped


def test_deleting_a_void_reinstates_its_tombstone(ledger_bucket, s3_client):
    """Voids are the one thing an operator may delete: in the versioned bucket
    that leaves a delete marker, and the tombstone is in force again (settling
    may void it afresh, and then it is withdrawn again)."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Voided by mistake")
    project_id = project.pk
    with pytest.raises(RuntimeError), transaction.atomic():
        services.project_delete(actor=owner, project=project)
        raise RuntimeError("rolled back")
    later = timezone.now() + timedelta(hours=2)
    assert keys.ledger_settle(now=later) == 1
    assert keys.ledger_entries() == []
    (void,) = stored_keys(s3_client, ledger_bucket, "kreo/voids/")

    s3_client.delete_object(Bucket=ledger_bucket, Key=void)

    assert [e["id"] for e in keys.ledger_entries()] == [str(project_id)]
    assert keys.ledger_settle(now=later) == 1
    assert keys.ledger_entries() == []


def _tied_overwrite(s3_client, bucket):
    """A tombstone and a forged later version of its key, stored within the
    same second (LastModified has one-second resolution), or None."""
    tombstone = keys.ledger_record(kind="file", object_id=uuid.uuid4(), details={})
    forged = json.dumps({"kind": "file", "id": "forged"}).encode()
    s3_client.put_object(Bucket=bucket, Key=tombstone.name, Body=forged)
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=tombstone.name)
    if len({v["LastModified"] for v in page["Versions"]}) == 1:
        return tombstone
    return None


def test_a_later_version_in_the_same_second_does_not_replace_a_tombstone(
    ledger_bucket, s3_client
):
    """A version written over a tombstone within the same second ties on
    LastModified: the ledger still reads the first one written."""
    for _attempt in range(5):
        if (tombstone := _tied_overwrite(s3_client, ledger_bucket)) is not None:
            break
    else:
        pytest.fail("no two versions stored within the same second")

    entries = [e for e in keys.ledger_entries() if e["id"] == tombstone.id]
    assert entries and entries[0]["kind"] == "file"
    (listed,) = [t for t in keys.ledger().tombstones() if t.name == tombstone.name]
    assert listed.version == tombstone_first_version(s3_client, ledger_bucket, listed)


def tombstone_first_version(s3_client, bucket, tombstone) -> str:
    page = s3_client.list_object_versions(Bucket=bucket, Prefix=tombstone.name)
    return page["Versions"][-1]["VersionId"]  # listed newest first
