"""Restore from each copy: every table and every file identical."""

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.models import User
from audit.models import AuditEvent
from backups import databases, services
from backups.models import BackupSet
from backups.tests.conftest import current_stats, stored_bytes
from projects.models import Project, ProjectFile

AUDIT = "audit_auditevent"


def _wipe(names) -> None:
    """Lose the data a restore must bring back: projects, users and files."""
    for name in names:
        default_storage.delete(name)
    ProjectFile.objects.all().delete()
    Project.objects.all().delete()
    User.objects.exclude(email="owner@example.test").delete()


def _same_as_manifest(manifest: dict) -> None:
    stats = current_stats()
    for table, expected in manifest["tables"].items():
        if table == AUDIT:
            # The restore appends its own audit event to the restored trail.
            assert stats[table]["rows"] == expected["rows"] + 1
            continue
        assert stats[table] == expected, table


@pytest.mark.parametrize("copy", [1, 2, 3])
def test_restore_from_each_copy_brings_back_every_table_and_file(seeded, offsite, copy):
    """After losing projects, users and files, backup_restore --copy N --yes
    gives every table the manifest's row count and checksum, and every file
    its bytes."""
    names = [f.blob.name for f in seeded["files"]]
    before_files = stored_bytes(names)
    backup_set = services.backup_create()
    _wipe(names)
    assert Project.objects.count() == 0

    call_command("backup_restore", id=backup_set.pk, copy=copy, yes=True)

    _same_as_manifest(backup_set.manifest)
    assert stored_bytes(names) == before_files
    assert Project.objects.count() == 3
    # The catalogue survives the restore: the set is still listed as good.
    assert BackupSet.objects.get(pk=backup_set.pk).state == "good"
    assert AuditEvent.objects.filter(event_type="backup.restore").count() == 1


def test_restore_refuses_without_yes(seeded):
    """backup_restore without --yes changes nothing and says why."""
    backup_set = services.backup_create()
    Project.objects.all().delete()
    with pytest.raises(CommandError, match="--yes"):
        call_command("backup_restore", id=backup_set.pk, copy=1)
    assert Project.objects.count() == 0


def test_logical_copy_restores_into_another_engine(seeded, tmp_path):
    """The logical copy loads into a fresh SQLite file (from PostgreSQL or
    SQLite alike) with every table's checksum equal to the manifest's."""
    backup_set = services.backup_create()
    target = tmp_path / "other.sqlite3"
    services.backup_restore(
        set_id=backup_set.pk,
        copy=2,
        target_db=f"sqlite:///{target}",
        restore_files=False,
    )
    alias = databases.register_alias(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": str(target)}
    )
    try:
        stats = databases.table_stats(alias)
    finally:
        databases.drop_alias(alias)
    assert stats == backup_set.manifest["tables"]


def test_logical_copy_restores_into_postgresql(seeded, pg_scratch_url):
    """The logical copy loads into an empty PostgreSQL database, checksums equal."""
    backup_set = services.backup_create()
    services.backup_restore(
        set_id=backup_set.pk, copy=2, target_db=pg_scratch_url, restore_files=False
    )
    name = pg_scratch_url.rsplit("/", 1)[1]
    alias = databases.register_alias(
        {"ENGINE": "django.db.backends.postgresql", "NAME": name} | _pg_credentials()
    )
    try:
        stats = databases.table_stats(alias)
    finally:
        databases.drop_alias(alias)
    assert stats == backup_set.manifest["tables"]


def test_native_copy_refuses_another_engine(seeded, tmp_path):
    """Copy 1 is a native dump: restoring it into another engine is refused."""
    backup_set = services.backup_create()
    other = (
        f"sqlite:///{tmp_path / 'x.sqlite3'}"
        if connection.vendor == "postgresql"
        else "postgres://kreo:kreo@127.0.0.1:5432/kreo"
    )
    with pytest.raises(ValueError, match="restores only into"):
        services.backup_restore(set_id=backup_set.pk, copy=1, target_db=other)


def _pg_credentials() -> dict:
    return {
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "USER": "kreo",
        "PASSWORD": "kreo",
    }
