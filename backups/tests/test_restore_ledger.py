"""A restore reads the erasure ledger before it touches anything: with the
ledger unreachable it refuses and changes nothing; with the ledger lost
half-way it still removes what was erased; erasures made while it runs are
applied too."""

import socket
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.models import AuditEvent, Outcome
from backups import databases, services
from conftest import S3_ENDPOINT
from projects import keys
from projects import services as project_services
from projects.models import Project, ProjectFile, ProjectKey

pytestmark = pytest.mark.django_db(transaction=True)


def _cut_ledger(settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = f"http://127.0.0.1:{port}"


@pytest.fixture
def erased_since_backup(seeded, ledger_bucket):
    """A backup of three projects, then one of them erased."""
    backup_set = services.backup_create()
    owner = seeded["owner"]
    item = seeded["files"][0]
    erased = item.project
    # Read before the deletion: Django clears a deleted instance's pk.
    case = {
        "set": backup_set,
        "owner": owner,
        "project_id": erased.pk,
        "file_id": item.pk,
        "blob": item.blob.name,
    }
    project_services.project_delete(actor=owner, project=erased, staff=True)
    assert case["project_id"] is not None and case["file_id"] is not None
    return case


def _still_erased(case) -> None:
    assert not Project.objects.filter(pk=case["project_id"]).exists()
    assert not ProjectKey.objects.filter(pk=case["project_id"]).exists()
    assert not ProjectFile.objects.filter(pk=case["file_id"]).exists()
    assert not default_storage.exists(case["blob"])


def test_an_unreachable_ledger_refuses_the_restore_before_it_starts(
    erased_since_backup, settings
):
    """With the ledger down, backup_restore refuses naming the ledger and
    restores nothing: a project made after the backup (which a restore would
    remove) is still there, the erased one is not back, the refusal is
    audited; once the ledger answers the same restore runs and keeps the
    erased project erased."""
    case = erased_since_backup
    newer = project_services.project_create(actor=case["owner"], name="After")
    _cut_ledger(settings)

    with pytest.raises(CommandError) as refused:
        call_command("backup_restore", id=case["set"].pk, copy=1, yes=True)
    assert services.RESTORE_NEEDS_LEDGER in str(refused.value)
    with pytest.raises(keys.LedgerError) as direct:
        services.backup_restore(set_id=case["set"].pk, copy=1)
    assert str(direct.value) == services.RESTORE_NEEDS_LEDGER

    assert Project.objects.filter(pk=newer.pk).exists()
    assert Project.objects.count() == 3
    _still_erased(case)
    failures = AuditEvent.objects.filter(
        event_type="backup.restore", outcome=Outcome.FAILURE
    )
    assert failures.count() == 2
    assert {e.error_code for e in failures} == {"erasure_ledger"}
    assert not AuditEvent.objects.filter(
        event_type="backup.restore", outcome=Outcome.SUCCESS
    ).exists()

    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = S3_ENDPOINT
    services.backup_restore(set_id=case["set"].pk, copy=1)
    assert not Project.objects.filter(pk=newer.pk).exists()
    assert Project.objects.count() == 2
    _still_erased(case)


def test_a_ledger_lost_during_the_restore_still_removes_the_erased_project(
    erased_since_backup, settings
):
    """The ledger is read, then S3 goes away while the database is being
    restored: the tombstones read first are applied, so the erased project,
    its key, rows and objects stay gone; the restore says the ledger could not
    be read again and the audit trail records it."""
    case = erased_since_backup
    said = []

    def progress(message: str) -> None:
        said.append(message)
        if message.startswith("restoring the database"):
            _cut_ledger(settings)

    services.backup_restore(set_id=case["set"].pk, copy=1, progress=progress)

    assert any(m.startswith("restoring the database") for m in said)
    _still_erased(case)
    assert Project.objects.count() == 2
    assert said[-1] == services.RESTORE_LEDGER_STALE.format(count=1)
    reapply = AuditEvent.objects.get(event_type="erasure.reapply")
    assert reapply.details["ledger_current"] is False
    assert reapply.details["keys_destroyed"] == 1
    restore = AuditEvent.objects.get(event_type="backup.restore")
    assert restore.details["erasures"]["ledger_current"] is False


def test_an_erasure_made_during_the_restore_is_applied_too(
    erased_since_backup, settings
):
    """A project erased after the ledger was first read (while the restore
    runs) comes back with the backup, and the second reading of the ledger
    removes it: the first reading is not the only one."""
    case = erased_since_backup
    late = Project.objects.exclude(pk=case["project_id"]).order_by("name").first()

    def progress(message: str) -> None:
        if message.startswith("erasure ledger read"):
            project_services.project_delete(
                actor=case["owner"], project=late, staff=True
            )

    services.backup_restore(set_id=case["set"].pk, copy=1, progress=progress)

    _still_erased(case)
    assert not Project.objects.filter(pk=late.pk).exists()
    assert not ProjectKey.objects.filter(pk=late.pk).exists()
    assert Project.objects.count() == 1
    reapply = AuditEvent.objects.get(event_type="erasure.reapply")
    assert reapply.details["ledger_entries"] == 2
    assert reapply.details["ledger_current"] is True


def _rolled_back(kind: str, object_id, *, hours: float) -> None:
    """A tombstone ``hours`` old of an erasure that rolled back: the project
    or file is still live, only the tombstone is left (not yet settled)."""
    at = (timezone.now() - timedelta(hours=hours)).isoformat()
    body = {"kind": kind, "id": str(object_id), "at": at}
    keys.ledger().record(kind=kind, object_id=object_id, body=body)


def test_a_restore_leaves_out_tombstones_of_erasures_that_rolled_back(
    erased_since_backup, seeded
):
    """Tombstones past settling's grace whose project or file is still live
    are no erasure (settling would withdraw them): the restore keeps that
    project with its key and that file with its bytes, and erases only what
    was erased."""
    case = erased_since_backup
    live_project, live_file = seeded["files"][1].project, seeded["files"][2]
    _rolled_back("project", live_project.pk, hours=2)
    _rolled_back("file", live_file.pk, hours=3)
    content = b"".join(default_storage.open(live_file.blob.name, "rb").chunks())

    services.backup_restore(set_id=case["set"].pk, copy=1)

    _still_erased(case)
    assert Project.objects.filter(pk=live_project.pk).exists()
    assert ProjectKey.objects.filter(pk=live_project.pk).exists()
    assert ProjectFile.objects.filter(pk=live_file.pk).exists()
    stored = b"".join(default_storage.open(live_file.blob.name, "rb").chunks())
    assert stored == content
    reapply = AuditEvent.objects.get(event_type="erasure.reapply")
    assert reapply.details["ledger_entries"] == 1
    assert reapply.details["ledger_current"] is True


def test_a_restore_into_another_database_leaves_the_live_files_alone(
    erased_since_backup, seeded, tmp_path
):
    """A drill restores the database alone into another database, while an
    erasure of a live file is in flight (its tombstone is minutes old): the
    tombstone is applied to the restored database, but the live file storage,
    which the restore did not write, keeps the live file's object."""
    case = erased_since_backup
    live_file = seeded["files"][2]
    name = live_file.blob.name
    content = b"".join(default_storage.open(name, "rb").chunks())
    _rolled_back("file", live_file.pk, hours=0.1)
    target = tmp_path / "drill.sqlite3"

    services.backup_restore(
        set_id=case["set"].pk,
        copy=2,
        target_db=f"sqlite:///{target}",
        restore_files=False,
    )

    assert b"".join(default_storage.open(name, "rb").chunks()) == content
    assert ProjectFile.objects.filter(pk=live_file.pk).exists()
    alias = databases.register_alias(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": str(target)}
    )
    try:
        restored = set(ProjectFile.objects.using(alias).values_list("pk", flat=True))
    finally:
        databases.drop_alias(alias)
    assert live_file.pk not in restored
    assert case["file_id"] not in restored
    assert len(restored) == 1
    reapply = AuditEvent.objects.get(event_type="erasure.reapply")
    assert reapply.details["objects_removed"] == 0


def test_no_settling_while_a_restore_rewrites_the_live_database(erased_since_backup):
    """Mid-restore the erased project is back in the live database, its
    tombstone older than any grace: settling then (another pod's purge) would
    withdraw the tombstone for good. The restore's mark makes it skip."""
    from projects import keys

    case = erased_since_backup
    settled = []

    def progress(message: str) -> None:
        if message.startswith("restoring files from"):
            assert Project.objects.filter(pk=case["project_id"]).exists()
            settled.append(keys.ledger_settle(grace_seconds=0))

    services.backup_restore(set_id=case["set"].pk, copy=1, progress=progress)

    assert settled == [0]
    _still_erased(case)
    ids = {t.id for t in keys.ledger().tombstones("project")}
    assert str(case["project_id"]) in ids
    assert keys.ledger_settle(grace_seconds=0) == 0  # the mark is gone, nothing stale
