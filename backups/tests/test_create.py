"""A backup set: three copies, two formats, two methods, one MAC'd manifest."""

import hashlib
import json

from django.core.management import call_command

from audit.models import AuditEvent
from backups import crypto, services
from backups.models import BackupSet, CopyState, SetState
from backups.tests.conftest import current_stats
from kreo import sealed


def test_backup_now_writes_three_copies_with_a_sealed_manifest(
    seeded, offsite, s3_client, capsys
):
    """backup_now prints the id; copy 1 is sealed (KREOSEAL), copy 2 is age, copy 3 is
    in S3 encrypted at rest and under a compliance lock; each carries the
    same MAC'd manifest, whose table checksums match the live database."""
    call_command("backup_now")
    out = capsys.readouterr().out
    set_id = int(out.strip().splitlines()[-1])
    backup_set = BackupSet.objects.get(pk=set_id)
    assert backup_set.state == SetState.GOOD
    assert [c.state for c in backup_set.copies.all()] == [CopyState.DONE] * 3
    assert "copy 1: native dump" in out and "copy 3: uploading" in out

    copy1 = services.set_folder(1, set_id)
    copy2 = services.set_folder(2, set_id)
    db_name = services.DB_ARTIFACT[backup_set.engine]
    assert sorted(p.name for p in copy1.iterdir()) == sorted(
        [db_name, "files.tar.enc", "manifest.json"]
    )
    head = (copy1 / db_name).read_bytes()[:64]
    assert head.startswith(sealed.MAGIC)
    assert b"PGDMP" not in head and b"SQLite format" not in head
    assert (copy2 / "data.jsonl.age").read_bytes().startswith(b"age-encryption.org/v1")
    assert b'"model"' not in (copy2 / "data.jsonl.age").read_bytes()

    manifest = crypto.manifest_open((copy1 / "manifest.json").read_bytes())
    assert manifest == crypto.manifest_open((copy2 / "manifest.json").read_bytes())
    assert manifest == backup_set.manifest
    assert manifest["files"]["count"] == 3
    assert manifest["tables"]["projects_project"]["rows"] == 3
    live = current_stats()
    for table in ("projects_project", "projects_projectfile", "accounts_user"):
        assert manifest["tables"][table] == live[table]
    assert manifest["copies"]["2"]["recipient"].startswith("age1")

    prefix = services.offsite.prefix_for(set_id)
    listed = s3_client.list_objects_v2(Bucket=offsite, Prefix=prefix)
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == sorted(
        prefix + n for n in (db_name, "files.tar.enc", "manifest.json")
    )
    head = s3_client.head_object(Bucket=offsite, Key=prefix + db_name)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert (
        head["Metadata"]["sha256"]
        == manifest["copies"]["1"]["artifacts"][db_name]["sha256"]
    )
    assert AuditEvent.objects.filter(
        event_type="backup.create", outcome="success", target_id=str(set_id)
    ).exists()


def test_locked_offsite_object_cannot_be_deleted(seeded, offsite, s3_client):
    """A copy 3 object under compliance retention refuses deletion."""
    backup_set = services.backup_create()
    prefix = services.offsite.prefix_for(backup_set.pk)
    key = prefix + "files.tar.enc"
    version = s3_client.head_object(Bucket=offsite, Key=key)["VersionId"]
    try:
        s3_client.delete_object(Bucket=offsite, Key=key, VersionId=version)
    except s3_client.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
    else:
        raise AssertionError("a locked object was deleted")


def test_manifest_lists_every_artifact_with_sha256_and_size(seeded):
    """Every artifact on disk has the size and SHA-256 the manifest states."""
    backup_set = services.backup_create()
    manifest = backup_set.manifest
    for number in ("1", "2"):
        folder = services.set_folder(int(number), backup_set.pk)
        for name, spec in manifest["copies"][number]["artifacts"].items():
            data = (folder / name).read_bytes()
            assert len(data) == spec["size"]
            assert hashlib.sha256(data).hexdigest() == spec["sha256"]
    raw = json.loads(
        (services.set_folder(1, backup_set.pk) / "manifest.json").read_text()
    )
    assert len(raw["hmac_sha256"]) == 64
