"""Copy 1's artifacts in the one sealed format (KREOSEAL), bound to their set
and name; KREOBK1 artifacts written before still open; a restore reads each
artifact once and leaves the database as it was when the artifact is bad."""

import base64
import datetime as dt
import hashlib
import hmac
import io
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.utils import timezone

from audit.models import AuditEvent
from backups import crypto, services
from backups.models import BackupSet, SetState
from kreo import sealed
from projects.models import Project
from projects.tests.factories import stored_file

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
LEGACY_KEY = base64.urlsafe_b64decode((LEGACY / "key.txt").read_text().strip())


def legacy_seal(plain: bytes, key: bytes, salt: bytes) -> bytes:
    """KREOBK1 as the writer before KREOSEAL made it, from docs/FORMATS.md
    section 6 (checked byte for byte against its fixtures below)."""
    key_id = hmac.new(key, b"kreo-backup-key-id", hashlib.sha256).digest()[:8]
    header = b"KREOBK1\n" + key_id + salt
    aead = AESGCM(
        HKDF(
            algorithm=hashes.SHA256(), length=32, salt=salt, info=b"kreo-backup-v1"
        ).derive(key)
    )
    whole = len(plain) - len(plain) % crypto.CHUNK
    pieces = [plain[i : i + crypto.CHUNK] for i in range(0, whole, crypto.CHUNK)]
    pieces.append(plain[whole:])  # always a final chunk, empty when none is left
    out = [header]
    for index, piece in enumerate(pieces):
        final = b"\x01" if index == len(pieces) - 1 else b"\x00"
        out.append(aead.encrypt(index.to_bytes(11, "big") + final, piece, header))
    return b"".join(out)


def _open(data: bytes, key: bytes, set_id: int = 1, name: str = "x") -> bytes:
    return b"".join(
        crypto.open_artifact(io.BytesIO(data), key, set_id=set_id, name=name)
    )


@pytest.mark.parametrize(
    ("artifact", "plain"), [("empty", b""), ("small", "small.plain")]
)
def test_kreobk1_fixtures_written_before_kreoseal_still_open(artifact, plain):
    data = (LEGACY / f"{artifact}.kreobk1").read_bytes()
    expected = (LEGACY / plain).read_bytes() if plain else b""
    assert data.startswith(b"KREOBK1\n")
    assert _open(data, LEGACY_KEY, 12, "db.pgdump.enc") == expected
    # The writer these tests use to build older sets is the old one, exactly.
    assert legacy_seal(expected, LEGACY_KEY, data[16:48]) == data


def test_kreobk1_bad_input_is_refused_naming_the_artifact():
    small = (LEGACY / "small.kreobk1").read_bytes()
    cut = (LEGACY / "small-truncated.kreobk1").read_bytes()
    with pytest.raises(crypto.BackupCryptoError, match="set 3 files.tar.enc: chunk 0"):
        _open(cut, LEGACY_KEY, 3, "files.tar.enc")
    with pytest.raises(crypto.BackupCryptoError, match="different backup key"):
        _open(small, os.urandom(32))
    flipped = bytearray(small)
    flipped[100] ^= 1
    with pytest.raises(crypto.BackupCryptoError, match="chunk 0"):
        _open(bytes(flipped), LEGACY_KEY)


@pytest.mark.parametrize("size", [2 * crypto.CHUNK, 2 * crypto.CHUNK + 5])
def test_kreobk1_several_chunks_open_and_a_cut_at_a_chunk_is_refused(size):
    plain = os.urandom(size)
    data = legacy_seal(plain, LEGACY_KEY, os.urandom(32))
    assert _open(data, LEGACY_KEY) == plain
    with pytest.raises(crypto.BackupCryptoError, match="chunk 1"):
        _open(data[: 48 + 2 * (crypto.CHUNK + 16)], LEGACY_KEY)


def test_unknown_magic_is_refused():
    with pytest.raises(crypto.BackupCryptoError, match="not a Kreo backup artifact"):
        _open(b"PGDMP\x01\x0e\x00" + os.urandom(100), os.urandom(32))


def _reseal(backup_set: BackupSet, manifest: dict) -> None:
    """What the backup would have written with this manifest: both copies'
    manifests and the catalogue's."""
    raw = crypto.manifest_seal(manifest)
    for n in (1, 2):
        (services.set_folder(n, backup_set.pk) / "manifest.json").write_bytes(raw)
    BackupSet.objects.filter(pk=backup_set.pk).update(manifest=manifest)
    backup_set.refresh_from_db()


def test_set_written_in_kreobk1_verifies_and_restores(seeded):
    """A set whose copy 1 was written before KREOSEAL: verify passes and a
    restore of copy 1 brings the data back."""
    backup_set = services.backup_create()
    key = crypto.key_a()
    manifest = backup_set.manifest
    folder = services.set_folder(1, backup_set.pk)
    for name, spec in manifest["copies"]["1"]["artifacts"].items():
        plain = _open((folder / name).read_bytes(), key, backup_set.pk, name)
        old = legacy_seal(plain, key, os.urandom(32))
        (folder / name).write_bytes(old)
        spec.update(sha256=hashlib.sha256(old).hexdigest(), size=len(old))
    _reseal(backup_set, manifest)
    assert (folder / "files.tar.enc").read_bytes().startswith(b"KREOBK1\n")
    assert all(r["ok"] for r in services.backup_verify(backup_set=backup_set))
    Project.objects.create(name="Added after the backup")
    services.backup_restore(set_id=backup_set.pk, copy=1)
    assert not Project.objects.filter(name="Added after the backup").exists()
    assert Project.objects.count() == 3


def test_new_artifacts_are_kreoseal_bound_to_their_set_and_name(seeded):
    """Every copy-1 artifact is KREOSEAL with 1 MiB chunks under
    BACKUP_ENCRYPTION_KEY, and opens only with its own context."""
    backup_set = services.backup_create()
    key = crypto.key_a()
    folder = services.set_folder(1, backup_set.pk)
    for name in backup_set.manifest["copies"]["1"]["artifacts"]:
        data = (folder / name).read_bytes()
        header = sealed.parse_header(data[: sealed.HEADER])
        assert (header.chunk_size, header.key_id) == (
            sealed.BULK_CHUNK,
            sealed.key_id(key),
        )
        context = f"kreo-backup/{backup_set.pk}/{name}".encode()
        plain = sealed.open_bytes(key, data, context=context)
        spec = backup_set.manifest["copies"]["1"]["artifacts"][name]
        assert hashlib.sha256(plain).hexdigest() == spec["plain_sha256"]
        with pytest.raises(sealed.SealedError, match="chunk 0"):
            sealed.open_bytes(
                key, data, context=f"kreo-backup/{backup_set.pk + 1}/{name}".encode()
            )


def test_artifact_moved_into_another_set_does_not_verify_or_restore(seeded):
    """Set A's database artifact put in set B's folder, B's manifest made to
    match it (as by someone holding the manifest key): the artifact does not
    open as B's, verify names it, and the restore changes nothing."""
    one = services.backup_create()
    two = services.backup_create()
    name = services.DB_ARTIFACT[one.engine]
    moved = services.set_folder(1, one.pk) / name
    (services.set_folder(1, two.pk) / name).write_bytes(moved.read_bytes())
    manifest = two.manifest
    manifest["copies"]["1"]["artifacts"][name] = one.manifest["copies"]["1"][
        "artifacts"
    ][name]
    _reseal(two, manifest)

    results = services.backup_verify(backup_set=two)
    (bad,) = [r for r in results if not r["ok"]]
    assert (bad["copy"], bad["artifact"]) == (1, name)
    assert f"set {two.pk} {name}: chunk 0 failed authentication" in bad["error"]
    assert "moved from another object" in bad["error"]

    Project.objects.create(name="Added after the backup")
    with pytest.raises(crypto.BackupCryptoError, match=f"set {two.pk} {name}"):
        services.backup_restore(set_id=two.pk, copy=1)
    assert Project.objects.filter(name="Added after the backup").exists()


def _big_project() -> None:
    """A database whose copy-1 artifact spans several 1 MiB chunks, so a
    fault late in it is found after the restore has started."""
    Project.objects.create(
        name="Big estimate",
        description=base64.b64encode(os.urandom(3 * 2**20)).decode(),
    )


def _tamper(backup_set: BackupSet, fault: str) -> None:
    name = services.DB_ARTIFACT[backup_set.engine]
    path = services.set_folder(1, backup_set.pk) / name
    data = path.read_bytes()
    chunk = crypto.CHUNK + sealed.TAG
    assert len(data) > sealed.HEADER + 2 * chunk  # at least three chunks
    manifest = backup_set.manifest
    spec = manifest["copies"]["1"]["artifacts"][name]
    if fault == "bit flipped in the last chunk":
        flipped = bytearray(data)
        flipped[-20] ^= 1
        path.write_bytes(bytes(flipped))
        return
    if fault == "cut at a chunk boundary":
        data = data[: sealed.HEADER + 2 * chunk]
        path.write_bytes(data)
        spec.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    elif fault == "SHA-256 differs from the manifest":
        spec["sha256"] = hashlib.sha256(b"another artifact").hexdigest()
    _reseal(backup_set, manifest)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("bit flipped in the last chunk", "failed authentication"),
        ("cut at a chunk boundary", "truncated after chunk 1"),
        ("SHA-256 differs from the manifest", "differs from the manifest"),
    ],
)
def test_bad_artifact_found_during_the_restore_leaves_the_database_untouched(
    seeded, fault, message
):
    """The artifact is read once, so these faults show only once the restore
    has streamed most of it into pg_restore / the SQLite copy: it is rolled
    back, and the database keeps what it held."""
    _big_project()
    backup_set = services.backup_create()
    _tamper(backup_set, fault)
    Project.objects.create(name="Added after the backup")
    Project.objects.filter(name="Tower 0").update(name="Renamed after the backup")
    with pytest.raises((crypto.BackupCryptoError, ValueError), match=message) as info:
        services.backup_restore(set_id=backup_set.pk, copy=1, restore_files=False)
    refused = f"Copy 1 of set {backup_set.pk} refused, nothing was restored: "
    assert str(info.value).startswith(refused)
    event = AuditEvent.objects.filter(event_type="backup.restore").get()
    assert (event.outcome, event.error_code) == ("failure", "restore_refused")
    assert event.error_description == str(info.value)
    assert Project.objects.filter(name="Added after the backup").exists()
    assert Project.objects.filter(name="Renamed after the backup").exists()
    assert Project.objects.count() == 5


def test_copy3_uploaded_in_parts_is_under_compliance_retention(
    seeded, offsite, s3_client
):
    """An artifact over the 8 MiB part size goes up as a multipart upload,
    whose lock some S3 servers (moto) drop: the version the backup recorded
    is still under COMPLIANCE retention."""
    owner = seeded["owner"]
    stored_file(
        Project.objects.first(),
        name="survey.pdf",
        content=b"%PDF-1.7\n" + os.urandom(9 * 2**20),
        uploaded_by=owner,
    )
    backup_set = services.backup_create()
    assert backup_set.state == SetState.GOOD
    copy3 = backup_set.copies.get(number=3)
    key = services.offsite.prefix_for(backup_set.pk) + "files.tar.enc"
    head = s3_client.head_object(
        Bucket=offsite, Key=key, VersionId=copy3.versions["files.tar.enc"]
    )
    assert head["ContentLength"] > services.offsite.PART
    assert "-" in head["ETag"]  # a multipart upload's ETag
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > timezone.now() + dt.timedelta(hours=23)
    assert copy3.locked_until is not None
