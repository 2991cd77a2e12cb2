"""The 3-2-1 rule enforced: a set is good only with all three copies; the
bucket in the expected region; the local copies on two filesystems; copy 3
read by version; the catalogue rebuilt from MAC'd manifests after a restore."""

import os
import shutil
import uuid
from pathlib import Path

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from audit.models import AuditEvent
from backups import checks, crypto, selectors, services
from backups.models import BackupSet, CopyState, SetState
from backups.tests.conftest import stored_bytes
from backups.tests.test_schedule import _staff_client
from conftest import new_key
from projects.models import Project


def _list(capsys) -> str:
    call_command("backup_list")
    return capsys.readouterr().out


def _listed_ids(out: str) -> list[int]:
    """The set ids of the last backup_list table in ``out``."""
    rows = [line.split() for line in out.rsplit("created (UTC)", 1)[1].splitlines()]
    return [int(row[0]) for row in rows if len(row) > 2 and row[0].isdigit()]


def test_s3_down_set_is_incomplete_and_no_good_backup_until_the_retry(
    seeded, offsite, settings, capsys
):
    """S3 unreachable: copies 1 and 2 are written, the set is incomplete with
    the reason, the age flag and the "last good" selector see no good backup,
    backup_list flags it; the hourly retry uploads copy 3 and the set is good."""
    endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens
    backup_set = services.backup_create()
    assert backup_set.state == SetState.INCOMPLETE
    assert [backup_set.copy_state(n) for n in (1, 2, 3)] == ["done", "done", "failed"]
    assert backup_set.error.startswith("Incomplete: copy 3 could not be written")
    assert services.backup_age_hours() is None
    assert selectors.backup_set_latest(good_only=True) is None
    out = _list(capsys)
    assert (
        f"{backup_set.pk:>6}" in out and "incomplete  done     done     failed" in out
    )
    assert "3-2-1 rule is not met" in out

    settings.BACKUP_S3_ENDPOINT_URL = endpoint
    from backups.tasks import backup_offsite_retry

    assert backup_offsite_retry() == [backup_set.pk]
    backup_set.refresh_from_db()
    assert backup_set.state == SetState.GOOD and backup_set.error == ""
    assert services.backup_age_hours() is not None
    assert selectors.backup_set_latest(good_only=True) == backup_set
    assert "good        done     done     done" in _list(capsys)


def test_no_bucket_set_is_incomplete_and_the_admin_says_why(client, seeded, settings):
    """The embedded default with no bucket: the set is incomplete (amber), the
    admin says no good backup exists and names BACKUP_S3_BUCKET; the retry
    has nothing to upload to."""
    backup_set = services.backup_create()
    assert backup_set.state == SetState.INCOMPLETE
    assert backup_set.copy_state(3) == CopyState.SKIPPED
    assert backup_set.error == services.NO_BUCKET
    assert services.backup_offsite_retry() == []
    _staff_client(client)
    page = client.get(reverse("admin:backups_backupset_changelist")).content.decode()
    assert 'data-backup-age="none"' in page
    assert 'data-backup-offsite="none"' in page and "BACKUP_S3_BUCKET" in page
    assert '<strong class="state state-incomplete">incomplete</strong>' in page
    assert "css/admin-backups.css" in page  # amber: .state-incomplete


def test_backup_refuses_a_bucket_in_another_region(seeded, settings, s3_client):
    """A bucket in eu-central-1 while eu-west-2 is expected: nothing is
    uploaded, the set is incomplete and says both regions; the deploy check
    reports the same as an error."""
    bucket = f"kreo-backups-fra-{uuid.uuid4().hex[:8]}"
    frankfurt = boto3.client(
        "s3",
        endpoint_url=os.environ["KREO_TEST_S3_ENDPOINT"],
        region_name="eu-central-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's test credentials
    )
    frankfurt.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    settings.BACKUP_S3_BUCKET = bucket
    settings.BACKUP_S3_ENDPOINT_URL = os.environ["KREO_TEST_S3_ENDPOINT"]
    backup_set = services.backup_create()
    assert backup_set.state == SetState.INCOMPLETE
    assert "is in eu-central-1, not in eu-west-2" in backup_set.error
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    (error,) = checks.bucket_in_expected_region()
    assert error.id == "backups.E002"
    assert "eu-central-1" in error.msg and "eu-west-2" in error.msg

    settings.BACKUP_S3_REGION = "eu-central-1"
    assert checks.bucket_in_expected_region() == []


def test_restore_from_a_bucket_in_the_wrong_region_touches_nothing(
    seeded, offsite, settings
):
    """A restore from copy 3 whose bucket is not in BACKUP_S3_REGION is
    refused with both regions named, before the ledger, the bucket's objects
    or the database are touched; the refusal is audited."""
    backup_set = services.backup_create()
    Project.objects.first().delete()
    settings.BACKUP_S3_REGION = "eu-central-1"
    with pytest.raises(CommandError, match="is in eu-west-2, not in eu-central-1"):
        call_command("backup_restore", id=backup_set.pk, copy=3, yes=True)
    assert Project.objects.count() == 2
    refusal = AuditEvent.objects.get(event_type="backup.restore")
    assert refusal.outcome == "failure" and refusal.error_code == "wrong_region"


def test_deploy_check_refuses_both_local_copies_on_one_filesystem(settings, tmp_path):
    """Both folders under one disk: an error naming both; copy 2 on another
    filesystem (a folder not made yet counts as its nearest existing parent)."""
    settings.BACKUP_COPY1_DIR = tmp_path / "copy1"
    settings.BACKUP_COPY2_DIR = tmp_path / "not" / "made" / "copy2"
    (error,) = checks.copies_on_two_filesystems()
    assert error.id == "backups.E001"
    assert str(tmp_path / "copy1") in error.msg and "same filesystem" in error.msg
    other = Path("/dev/shm")  # noqa: S108 - only its device is read
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem at /dev/shm on this host")
    settings.BACKUP_COPY2_DIR = other / f"kreo-test-{uuid.uuid4().hex}" / "copy2"
    assert checks.copies_on_two_filesystems() == []


def test_delete_marker_on_copy3_verify_good_and_reported_restore_works(
    seeded, offsite, s3_client, capsys
):
    """A delete marker put over a copy-3 object (allowed under Object Lock):
    backup_verify still passes and prints a warning naming the marker, and a
    restore from copy 3 alone reads the version the backup wrote."""
    backup_set = services.backup_create()
    key = services.offsite.prefix_for(backup_set.pk) + "files.tar.enc"
    marker = s3_client.delete_object(Bucket=offsite, Key=key)
    assert marker["DeleteMarker"] is True
    with pytest.raises(s3_client.exceptions.ClientError):
        s3_client.get_object(Bucket=offsite, Key=key)

    call_command("backup_verify", id=backup_set.pk)
    out = capsys.readouterr().out
    assert "copy 3 files.tar.enc: ok" in out
    warning = next(line for line in out.splitlines() if "delete marker" in line)
    assert marker["VersionId"] in warning and warning.startswith(
        "copy 3 files.tar.enc: "
    )
    backup_set.refresh_from_db()
    assert backup_set.verify_ok is True

    names = [f.blob.name for f in seeded["files"]]
    before = stored_bytes(names)
    Project.objects.all().delete()
    for number in (1, 2):
        shutil.rmtree(services.set_folder(number, backup_set.pk))
    call_command("backup_restore", id=backup_set.pk, copy=3, yes=True)
    assert Project.objects.count() == 3
    assert stored_bytes(names) == before


def test_restore_keeps_every_set_in_the_catalogue(seeded, offsite, capsys):
    """Three sets; the catalogue is lost (a restore into a fresh database);
    restoring the first set from copy 3 lists all three again from their
    manifests, with the right copy states, and later backups get new ids."""
    first, second, third = (services.backup_create() for _ in range(3))
    assert _listed_ids(_list(capsys)) == [third.pk, second.pk, first.pk]

    # A restore of the oldest set, catalogue present: the later sets stay.
    call_command("backup_restore", id=first.pk, copy=1, yes=True)
    assert _listed_ids(_list(capsys)) == [third.pk, second.pk, first.pk]

    # The catalogue gone, and the oldest set's local copies with it.
    BackupSet.objects.all().delete()
    for number in (1, 2):
        shutil.rmtree(services.set_folder(number, first.pk))
    call_command("backup_restore", id=first.pk, copy=3, yes=True)
    out = _list(capsys)
    assert _listed_ids(out) == [third.pk, second.pk, first.pk]
    assert "good        done     done     done" in out
    assert "incomplete  failed   failed   done" in out
    rebuilt = BackupSet.objects.get(pk=second.pk)
    assert rebuilt.manifest == second.manifest and rebuilt.state == SetState.GOOD
    assert rebuilt.copies.get(number=3).versions == (
        second.copies.get(number=3).versions
    )
    assert all(r["ok"] for r in services.backup_verify(backup_set=rebuilt))
    assert services.backup_create().pk > third.pk


def test_rescan_trusts_only_manifests_whose_mac_verifies(seeded, settings, capsys):
    """backup_list --rescan lists a set from its genuine manifest, and refuses
    a manifest sealed under another key, one edited after sealing, and a
    genuine one moved into another set's folder."""
    genuine = services.backup_create()
    BackupSet.objects.all().delete()
    root = Path(settings.BACKUP_COPY1_DIR)
    source = services.set_folder(1, genuine.pk) / "manifest.json"

    forged = root / "00000901"
    forged.mkdir()
    key = settings.BACKUP_MANIFEST_KEY
    settings.BACKUP_MANIFEST_KEY = new_key()
    (forged / "manifest.json").write_bytes(
        crypto.manifest_seal({**genuine.manifest, "set_id": 901})
    )
    settings.BACKUP_MANIFEST_KEY = key

    edited = root / "00000902"
    edited.mkdir()
    text = source.read_text().replace(f'"set_id": {genuine.pk}', '"set_id": 902')
    assert '"set_id": 902' in text
    (edited / "manifest.json").write_text(text)

    moved = root / "00000903"
    moved.mkdir()
    shutil.copy(source, moved / "manifest.json")

    call_command("backup_list", rescan=True)
    out = capsys.readouterr().out
    assert _listed_ids(out) == [genuine.pk]
    assert "incomplete  done     done     skipped" in out  # no bucket here
    assert "3 manifest(s) refused" in out
    for set_id in (901, 902, 903):
        assert f"copy 1 of set {set_id}: manifest refused" in out
    event = AuditEvent.objects.get(event_type="backup.rescan")
    assert event.details["added"] == [genuine.pk]
    assert len(event.details["untrusted"]) == 3


def test_production_refuses_to_start_without_the_backup_bucket():
    """Production names BACKUP_S3_BUCKET and exits 1 when it is missing: with
    no bucket no set could ever be good."""
    from kreo.tests.test_settings import PRODUCTION_ENV, manage

    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "BACKUP_S3_BUCKET"}
    done = manage("check", env=env)
    assert done.returncode == 1
    assert "refuse to start: set BACKUP_S3_BUCKET in the environment" in done.stderr
    assert "Traceback" not in done.stderr
