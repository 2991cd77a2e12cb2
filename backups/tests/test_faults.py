"""Faults and bad input: corruption, wrong keys, truncation, S3 outages,
killed workers, forged manifests."""

import io
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pyrage import x25519

from backups import crypto, services
from backups.models import BackupCopy, BackupSet, CopyState, SetState
from conftest import new_key
from kreo import sealed
from projects.models import Project


def _flip_byte(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("copy", "name"), [(1, "files.tar.enc"), (2, "data.jsonl.age")]
)
def test_verify_names_the_corrupted_artifact(seeded, copy, name, capsys):
    """One flipped bit in a local artifact: backup_verify exits non-zero and
    names that copy and artifact, and only that one."""
    backup_set = services.backup_create()
    call_command("backup_verify", id=backup_set.pk)
    path = services.set_folder(copy, backup_set.pk) / name
    _flip_byte(path, path.stat().st_size // 2)
    capsys.readouterr()
    with pytest.raises(CommandError) as failure:
        call_command("backup_verify", id=backup_set.pk)
    assert f"copy {copy} {name}" in str(failure.value)
    assert "1 faulty artifact" in str(failure.value)
    backup_set.refresh_from_db()
    assert backup_set.verify_ok is False


def test_verify_reads_the_offsite_version_the_backup_wrote(seeded, offsite, s3_client):
    """A tampered newer version put over a copy-3 object does not replace it:
    verify reads the version the backup recorded, still passes, and warns of
    the version it did not write."""
    backup_set = services.backup_create()
    assert all(r["ok"] for r in services.backup_verify(backup_set=backup_set))
    written = backup_set.copies.get(number=3).versions
    artifacts = backup_set.manifest["copies"]["1"]["artifacts"]
    assert set(written) == {*artifacts, "manifest.json"}
    key = services.offsite.prefix_for(backup_set.pk) + "files.tar.enc"
    body = s3_client.get_object(Bucket=offsite, Key=key)["Body"].read()
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    s3_client.put_object(Bucket=offsite, Key=key, Body=tampered)
    results = services.backup_verify(backup_set=backup_set)
    assert all(r["ok"] for r in results)
    (warned,) = [r for r in results if r.get("warning")]
    assert (warned["copy"], warned["artifact"]) == (3, "files.tar.enc")
    assert "1 other version(s)" in warned["warning"]
    assert written["files.tar.enc"] in warned["warning"]


def test_verify_names_a_lost_offsite_version(seeded, versioned_offsite, s3_client):
    """In a bucket without Object Lock, deleting the version the backup wrote
    (a newer copy of the object left in place) is copy 3's fault in verify."""
    backup_set = services.backup_create()
    key = services.offsite.prefix_for(backup_set.pk) + "files.tar.enc"
    written = backup_set.copies.get(number=3).versions["files.tar.enc"]
    body = s3_client.get_object(Bucket=versioned_offsite, Key=key)["Body"].read()
    s3_client.put_object(Bucket=versioned_offsite, Key=key, Body=body)
    s3_client.delete_object(Bucket=versioned_offsite, Key=key, VersionId=written)
    results = services.backup_verify(backup_set=backup_set)
    bad = [(r["copy"], r["artifact"]) for r in results if not r["ok"]]
    assert bad == [(3, "files.tar.enc")]


def test_wrong_encryption_key_is_refused_and_nothing_overwritten(seeded, settings):
    """Restoring copy 1 under another key A fails with a clear message before
    the database is touched."""
    backup_set = services.backup_create()
    Project.objects.create(name="Added after the backup")
    settings.BACKUP_ENCRYPTION_KEY = new_key()
    with pytest.raises(CommandError, match="different backup key"):
        call_command("backup_restore", id=backup_set.pk, copy=1, yes=True)
    assert Project.objects.filter(name="Added after the backup").exists()
    assert Project.objects.count() == 4


def test_wrong_age_identity_is_refused_and_nothing_overwritten(
    seeded, settings, tmp_path
):
    """Restoring copy 2 with another age identity fails clearly; data stays."""
    backup_set = services.backup_create()
    Project.objects.create(name="Added after the backup")
    other = tmp_path / "other-identity"
    other.write_text(str(x25519.Identity.generate()) + "\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(other)
    with pytest.raises(CommandError, match="cannot be decrypted with this age"):
        call_command("backup_restore", id=backup_set.pk, copy=2, yes=True)
    assert Project.objects.count() == 4


def test_public_key_alone_writes_but_cannot_read(seeded, settings, tmp_path):
    """A host holding only the age recipient writes copy 2 but cannot restore it."""
    identity = x25519.Identity.generate()
    settings.BACKUP_AGE_RECIPIENT = str(identity.to_public())
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "absent")
    backup_set = services.backup_create()
    assert backup_set.copy_state(2) == CopyState.DONE
    with pytest.raises(crypto.BackupCryptoError, match="No age identity"):
        services.backup_restore(set_id=backup_set.pk, copy=2)


def _sealed(plaintext: bytes, key: bytes) -> bytes:
    out = io.BytesIO()
    crypto.seal_artifact([plaintext], out, key, set_id=7, name="db.pgdump.enc")
    return out.getvalue()


def _open(ciphertext: bytes, key: bytes) -> bytes:
    return b"".join(
        crypto.open_artifact(
            io.BytesIO(ciphertext), key, set_id=7, name="db.pgdump.enc"
        )
    )


def test_truncated_artifact_is_detected():
    """Cutting whole chunks off the end is reported as truncation."""
    key = os.urandom(32)
    plaintext = os.urandom(3 * crypto.CHUNK + 1000)
    sealed_bytes = _sealed(plaintext, key)
    assert _open(sealed_bytes, key) == plaintext
    cut = sealed_bytes[: sealed.HEADER + 2 * (crypto.CHUNK + sealed.TAG)]
    with pytest.raises(crypto.BackupCryptoError, match="truncated"):
        _open(cut, key)
    with pytest.raises(crypto.BackupCryptoError, match="set 7 db.pgdump.enc"):
        _open(sealed_bytes[:-10], key)


def test_reordered_chunks_are_detected():
    """Swapping two chunks fails authentication at the first moved one."""
    key = os.urandom(32)
    sealed_bytes = _sealed(os.urandom(3 * crypto.CHUNK), key)
    size, head = crypto.CHUNK + sealed.TAG, sealed.HEADER
    first = sealed_bytes[head : head + size]
    second = sealed_bytes[head + size : head + 2 * size]
    swapped = sealed_bytes[:head] + second + first + sealed_bytes[head + 2 * size :]
    with pytest.raises(crypto.BackupCryptoError, match="chunk 0"):
        _open(swapped, key)


def test_truncated_local_artifact_fails_verify_and_restore(seeded):
    """A copy 1 artifact cut short is named by verify and refused by restore."""
    backup_set = services.backup_create()
    path = (
        services.set_folder(1, backup_set.pk) / services.DB_ARTIFACT[backup_set.engine]
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    results = services.backup_verify(backup_set=backup_set)
    assert [r["artifact"] for r in results if not r["ok"]] == [path.name]
    with pytest.raises(ValueError, match="differs from the manifest"):
        services.backup_restore(set_id=backup_set.pk, copy=1)


def test_forged_manifest_is_refused(seeded):
    """A manifest edited on disk (row count raised) fails its MAC check."""
    backup_set = services.backup_create()
    path = services.set_folder(1, backup_set.pk) / "manifest.json"
    text = path.read_text().replace('"rows": 3', '"rows": 4', 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(crypto.BackupCryptoError, match="altered or forged"):
        services.backup_restore(set_id=backup_set.pk, copy=1)


def test_s3_down_leaves_an_incomplete_set_then_retry_makes_it_good(
    seeded, offsite, settings, s3_client
):
    """With S3 unreachable the set is incomplete, local copies stay; the retry
    task uploads copy 3 once S3 is back and the set becomes good."""
    endpoint = settings.BACKUP_S3_ENDPOINT_URL
    settings.BACKUP_S3_ENDPOINT_URL = "http://127.0.0.1:9"
    backup_set = services.backup_create()
    assert backup_set.state == SetState.INCOMPLETE
    copy3 = backup_set.copies.get(number=3)
    assert copy3.state == CopyState.FAILED and copy3.error
    assert (services.set_folder(1, backup_set.pk) / "manifest.json").exists()
    assert (services.set_folder(2, backup_set.pk) / "manifest.json").exists()

    settings.BACKUP_S3_ENDPOINT_URL = endpoint
    from backups.tasks import backup_offsite_retry

    assert backup_offsite_retry() == [backup_set.pk]
    backup_set.refresh_from_db()
    assert backup_set.state == SetState.GOOD
    assert backup_set.copies.get(number=3).attempts == 2
    assert all(r["ok"] for r in services.backup_verify(backup_set=backup_set))


def test_killed_worker_leaves_no_good_set_and_next_run_cleans_up(seeded, settings):
    """A set left running with half-written folders (what a killed worker
    leaves) is marked failed and its folders removed by the next backup."""
    stale = BackupSet.objects.create(created_at=seeded["owner"].date_joined)
    BackupCopy.objects.create(backup_set=stale, number=1)
    half = services.set_folder(1, stale.pk)
    half = half.with_name(half.name + ".partial")
    half.mkdir(parents=True)
    (half / "db.sqlite3.enc").write_bytes(b"half")
    assert not BackupSet.objects.filter(state=SetState.GOOD).exists()

    fresh = services.backup_create()

    stale.refresh_from_db()
    assert stale.state == SetState.FAILED
    assert "Interrupted" in stale.error
    assert stale.copies.get(number=1).state == CopyState.FAILED
    assert not half.exists()
    # Copies 1 and 2 written; no bucket here, so the set is incomplete.
    assert [fresh.copy_state(n) for n in (1, 2)] == [CopyState.DONE] * 2
    assert fresh.state == SetState.INCOMPLETE


def test_failed_backup_is_not_marked_good_and_leaves_no_folders(seeded, settings):
    """An unreadable key fails the set; no folder of it remains."""
    settings.BACKUP_ENCRYPTION_KEY = "short"
    with pytest.raises(crypto.BackupCryptoError):
        services.backup_create()
    failed = BackupSet.objects.get()
    assert failed.state == SetState.FAILED
    assert not any(settings.BACKUP_COPY1_DIR.glob("0*"))
    assert not any(settings.BACKUP_COPY2_DIR.glob("0*"))


def test_really_killed_backup_process_leaves_no_good_set(seeded, settings, tmp_path):
    """SIGKILL to a running backup_now (PostgreSQL: the process shares the
    test database): no set is good, and the next run fails the set and
    removes its half-written folders."""
    import signal
    import subprocess
    import sys
    import time

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("an in-memory SQLite test database is not shared with a process")
    from projects.tests.factories import stored_file

    stored_file(Project.objects.first(), name="big.pdf", content=os.urandom(40 * 2**20))
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}"
            f"/{db['NAME']}"
        ),
        "KREO_VAR_DIR": str(tmp_path / "var"),
        "BACKUP_COPY1_DIR": str(settings.BACKUP_COPY1_DIR),
        "BACKUP_COPY2_DIR": str(settings.BACKUP_COPY2_DIR),
        "BACKUP_ENCRYPTION_KEY": settings.BACKUP_ENCRYPTION_KEY,
        "BACKUP_MANIFEST_KEY": settings.BACKUP_MANIFEST_KEY,
        "BACKUP_AGE_RECIPIENT": crypto.age_recipient(),
        "BACKUP_S3_BUCKET": "",
    }
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "backup_now"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(settings.BACKUP_COPY1_DIR.glob("*.partial")):
        assert process.poll() is None, "backup_now ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(10)

    killed = BackupSet.objects.get()
    assert killed.state == SetState.RUNNING
    assert list(settings.BACKUP_COPY1_DIR.glob("*.partial"))
    fresh = services.backup_create()
    killed.refresh_from_db()
    assert killed.state == SetState.FAILED
    assert not list(settings.BACKUP_COPY1_DIR.glob("*.partial"))
    assert not list(settings.BACKUP_COPY2_DIR.glob("*.partial"))
    # Copies 1 and 2 written; no bucket here, so the set is incomplete.
    assert [fresh.copy_state(n) for n in (1, 2)] == [CopyState.DONE] * 2
    assert fresh.state == SetState.INCOMPLETE


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("BACKUP_ENCRYPTION_KEY", "BACKUP_ENCRYPTION_KEY is not set"),
        ("BACKUP_MANIFEST_KEY", "BACKUP_MANIFEST_KEY is not set"),
        ("BACKUP_AGE_IDENTITY_FILE", "BACKUP_AGE_RECIPIENT is not set"),
    ],
)
def test_missing_key_fails_the_backup_naming_the_variable(
    seeded, settings, setting, message
):
    """As in production with a key unset: backup_now fails, names the
    variable, and no set is good."""
    setattr(settings, setting, "")
    with pytest.raises(CommandError, match=message):
        call_command("backup_now")
    assert BackupSet.objects.get().state == SetState.FAILED
