"""KREOSEAL for every new file, KREOF1 files still served, and storage_reseal
moving them over: resumable, nothing lost, audited. On the real S3 server
(moto over HTTP, a versioned bucket: an old object must leave no version)."""

import hashlib
import io
import json
import os
import struct
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent, Outcome
from kreo import sealed
from projects import crypto, keys, reseal, services, storage
from projects.models import ProjectFile, ProjectKey
from projects.tests.factories import PDF

pytestmark = pytest.mark.django_db

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.fixture
def bucket(s3_storage, s3_client):
    s3_client.put_bucket_versioning(
        Bucket=s3_storage, VersioningConfiguration={"Status": "Enabled"}
    )
    return s3_storage


@pytest.fixture
def owner(client):
    user = UserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def project(owner):
    return services.project_create(actor=owner, name="Resealed estimate")


def kreof1(key: bytes, file_id: uuid.UUID, plaintext: bytes) -> bytes:
    """A KREOF1 object as the removed writer made it (docs/FORMATS.md §6)."""
    prefix = os.urandom(crypto.LEGACY_PREFIX)
    header = crypto.LEGACY_MAGIC + prefix
    pieces = [
        plaintext[i : i + crypto.CHUNK]
        for i in range(0, max(len(plaintext), 1), crypto.CHUNK)
    ]
    out = [header]
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        aad = header + file_id.bytes + struct.pack(">QB", index, int(final))
        out.append(AESGCM(key).encrypt(prefix + struct.pack(">I", index), piece, aad))
    return b"".join(out)


def legacy_file(project, owner, content: bytes, *, file_id=None, stored=None):
    """A file row whose object is KREOF1 under the project's data key."""
    item = ProjectFile(
        id=file_id or uuid.uuid4(),
        project=project,
        name=f"old-{uuid.uuid4().hex[:6]}.pdf",
        kind="pdf",
        content_type="application/pdf",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        uploaded_by=owner,
        encryption=storage.LEGACY_FORMAT,
    )
    if stored is None:
        stored = kreof1(keys.data_key_create(project), item.id, content)
    item.blob.save("upload", ContentFile(stored), save=False)
    item.save()
    return item


def raw(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def download(client, item) -> bytes:
    response = client.get(
        reverse("projects:file-download", args=[item.project_id, item.pk])
    )
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content)


def versions(s3_client, bucket) -> list[str]:
    listing = s3_client.list_object_versions(Bucket=bucket)
    return [v["Key"] for v in listing.get("Versions", [])] + [
        m["Key"] for m in listing.get("DeleteMarkers", [])
    ]


def reseal_events():
    return AuditEvent.objects.filter(event_type="storage.reseal").order_by("pk")


def test_new_uploads_are_kreoseal_under_the_project_key(client, project, bucket):
    response = client.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": ContentFile(PDF + os.urandom(70_000), name="new.pdf")},
    )
    assert response.status_code == 302
    item = ProjectFile.objects.get(project=project)
    stored = raw(item.blob.name)
    assert stored.startswith(b"KREOSEAL\x01")
    header = sealed.parse_header(stored)
    assert header.chunk_size == 64 * 1024
    assert header.key_id == sealed.key_id(keys.data_key_get(project.pk))
    assert item.encryption == storage.FORMAT


def test_an_object_moved_to_another_files_row_does_not_open(
    client, owner, project, bucket
):
    """Same project, same data key: the context (the file id) alone refuses
    a's object served under b's row."""
    ids = []
    for name in ("a.pdf", "b.pdf"):
        client.post(
            reverse("projects:file-upload", args=[project.pk]),
            {"file": ContentFile(PDF + os.urandom(5000), name=name)},
        )
        ids.append(ProjectFile.objects.get(project=project, name=name))
    a, b = ids
    ProjectFile.objects.filter(pk=b.pk).update(blob=a.blob.name)
    response = client.get(reverse("projects:file-download", args=[project.pk, b.pk]))
    assert response.status_code == 409
    failure = AuditEvent.objects.get(
        event_type="file.download", outcome=Outcome.ERROR, target_id=str(b.pk)
    )
    assert "chunk 0 failed authentication" in failure.error_description


def test_the_committed_kreof1_fixture_downloads_then_is_resealed(
    client, owner, project, bucket, s3_client
):
    """The object the removed KREOF1 writer wrote, under its test data key,
    downloads as it was; storage_reseal turns it into KREOSEAL with the same
    plaintext and leaves no version of the old object."""
    about = json.loads((LEGACY / "fixtures.json").read_text())
    spec = about["files"]["two-chunks"]
    data_key = bytes.fromhex(about["data_key_hex"])
    kid, wrapped = keys.keyring().wrap(data_key, context=keys._context(project.pk))
    ProjectKey.objects.create(project=project, kek_id=kid, wrapped=wrapped)
    item = legacy_file(
        project,
        owner,
        b"",
        file_id=uuid.UUID(about["file_id"]),
        stored=(LEGACY / spec["object"]).read_bytes(),
    )
    ProjectFile.objects.filter(pk=item.pk).update(
        size=spec["size"], sha256=spec["sha256"]
    )
    old_name = item.blob.name
    assert hashlib.sha256(download(client, item)).hexdigest() == spec["sha256"]

    out = io.StringIO()
    call_command("storage_reseal", stdout=out)
    assert "resealed 1/1" in out.getvalue()
    item.refresh_from_db()
    assert raw(item.blob.name).startswith(b"KREOSEAL")
    assert item.encryption == storage.FORMAT
    assert hashlib.sha256(download(client, item)).hexdigest() == spec["sha256"]
    assert old_name not in versions(s3_client, bucket)


def test_storage_reseal_is_resumable_and_loses_nothing(
    client, owner, project, bucket, s3_client
):
    """Five KREOF1 files and one stored before encryption: a dry run changes
    nothing; a run stopped after two (--limit), and an interrupted run's
    leftover object, are finished by the next run; every file then
    downloads its original bytes from a KREOSEAL object, no version of any
    old object is left, each run is one audit event, and a last run finds
    nothing to do."""
    sizes = [0, 100, crypto.CHUNK, crypto.CHUNK + 1, 3 * crypto.CHUNK + 7]
    contents = {}
    for size in sizes:
        content = PDF + os.urandom(size)
        contents[legacy_file(project, owner, content).pk] = content
    plain = PDF + os.urandom(1000)
    item = ProjectFile(
        project=project,
        name="plain.pdf",
        kind="pdf",
        content_type="application/pdf",
        size=len(plain),
        sha256=hashlib.sha256(plain).hexdigest(),
        uploaded_by=owner,
    )
    item.blob.save("upload", ContentFile(plain), save=False)
    item.save()
    contents[item.pk] = plain
    old_names = set(ProjectFile.objects.values_list("blob", flat=True))

    out = io.StringIO()
    call_command("storage_reseal", "--dry-run", stdout=out)
    assert "6 file(s) in an older format to reseal\n" in out.getvalue()
    assert set(ProjectFile.objects.values_list("blob", flat=True)) == old_names

    out = io.StringIO()
    call_command("storage_reseal", "--limit", "2", stdout=out)
    assert "resealed 2/6" in out.getvalue()
    assert "2 file(s) resealed" in out.getvalue()
    done = ProjectFile.objects.filter(encryption=storage.FORMAT)
    assert done.count() == 2

    # A run killed after writing the next new object, before switching the
    # row: its object is left beside the old one.
    following = (
        ProjectFile.objects.exclude(encryption=storage.FORMAT).order_by("pk").first()
    )
    leftover = following.blob.name + reseal.SUFFIX
    default_storage.save(leftover, ContentFile(b"half-written garbage"))

    out = io.StringIO()
    call_command("storage_reseal", stdout=out)
    assert "4 file(s) resealed, 0 left\n" in out.getvalue()

    for pk, content in contents.items():
        item = ProjectFile.objects.get(pk=pk)
        assert item.encryption == storage.FORMAT
        assert raw(item.blob.name).startswith(b"KREOSEAL")
        assert download(client, item) == content
    left = set(versions(s3_client, bucket))
    assert not left & old_names
    assert left == set(ProjectFile.objects.values_list("blob", flat=True))

    call_command("storage_reseal", stdout=io.StringIO())
    runs = [e.details for e in reseal_events()]
    assert [r["dry_run"] for r in runs] == [True, False, False, False]
    assert [r["resealed"] for r in runs] == [0, 2, 4, 0]
    assert [r["candidates"] for r in runs] == [6, 6, 4, 0]
    assert all(e.outcome == Outcome.SUCCESS for e in reseal_events())


def test_an_altered_old_object_is_left_as_it_was_and_reported(
    client, owner, project, bucket, s3_client
):
    """A KREOF1 object that fails authentication is not resealed (that would
    bless the alteration): the row and object stay, no new object is left,
    the command fails naming the file, the event says error."""
    good = legacy_file(project, owner, PDF + os.urandom(3000))
    bad = legacy_file(project, owner, PDF + os.urandom(3000))
    stored = bytearray(raw(bad.blob.name))
    stored[crypto.LEGACY_HEADER + 10] ^= 0x01
    default_storage.delete(bad.blob.name)
    default_storage.save(bad.blob.name, ContentFile(bytes(stored)))

    with pytest.raises(CommandError, match=str(bad.pk)):
        call_command("storage_reseal", stdout=io.StringIO())
    bad_after = ProjectFile.objects.get(pk=bad.pk)
    assert bad_after.blob.name == bad.blob.name
    assert bad_after.encryption == storage.LEGACY_FORMAT
    assert raw(bad.blob.name) == bytes(stored)
    assert not default_storage.exists(bad.blob.name + reseal.SUFFIX)
    assert ProjectFile.objects.get(pk=good.pk).encryption == storage.FORMAT
    event = reseal_events().get()
    assert event.outcome == Outcome.ERROR
    assert event.details["failed"] == [str(bad.pk)]
    assert event.details["resealed"] == 1


def test_a_row_whose_object_is_already_sealed_is_only_put_right(
    client, owner, project, bucket
):
    """Skipped by its magic bytes: the object is not rewritten."""
    client.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": ContentFile(PDF + b"x" * 100, name="new.pdf")},
    )
    item = ProjectFile.objects.get(project=project)
    ProjectFile.objects.filter(pk=item.pk).update(encryption=storage.LEGACY_FORMAT)
    summary = reseal.storage_reseal()
    assert summary["already_sealed"] == 1 and summary["resealed"] == 0
    item_after = ProjectFile.objects.get(pk=item.pk)
    assert item_after.blob.name == item.blob.name
    assert item_after.encryption == storage.FORMAT


def test_keys_rotate_also_reseals(client, owner, project, bucket):
    content = PDF + os.urandom(2000)
    item = legacy_file(project, owner, content)
    out = io.StringIO()
    call_command("keys_rotate", stdout=out)
    assert "resealed 1/1" in out.getvalue()
    item.refresh_from_db()
    assert raw(item.blob.name).startswith(b"KREOSEAL")
    assert download(client, item) == content
    assert reseal_events().count() == 1


def test_a_stored_file_opens_by_the_recipe_in_docs_formats(client, project, bucket):
    """docs/FORMATS.md §5, with the bare primitives: unwrap the data key
    from its row with the KEK, open the object with the file id as context."""
    content = PDF + os.urandom(70_000)
    client.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": ContentFile(content, name="doc.pdf")},
    )
    item = ProjectFile.objects.get(project=project)
    row = ProjectKey.objects.get(pk=project.pk)
    kek = dict(keys.parse_keyring(settings.KREO_KEYRING))[row.kek_id]
    wrapped = bytes(row.wrapped)
    assert len(wrapped) == 60
    aad = row.kek_id.encode() + b"\x00kreo-project-data-key\x00" + project.pk.bytes
    data_key = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], aad)
    stored = raw(item.blob.name)
    assert sealed.open_bytes(data_key, stored, context=item.pk.bytes) == content
    # Plaintext byte p lies in chunk p // 65536, at 53 + (p // 65536) * 65552.
    second = stored[53 + 65552 : 53 + 2 * 65552]
    cipher = sealed.Opener(data_key, stored[:53], item.pk.bytes)
    assert cipher.open(1, second, True) == content[65536:]


def test_an_interrupted_run_is_audited_and_the_next_one_finishes(
    client, owner, project, bucket
):
    """Stopped after the first file (Ctrl-C): the event says what was done
    and that the run stopped; running again finishes the rest."""
    contents = {}
    for _ in range(3):
        content = PDF + os.urandom(crypto.CHUNK + 10)
        contents[legacy_file(project, owner, content).pk] = content

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reseal.storage_reseal(progress=stop)
    event = reseal_events().get()
    assert event.outcome == Outcome.ERROR
    assert "run it again" in event.error_description
    assert event.details["resealed"] == 1 and event.details["left"] == 2

    assert reseal.storage_reseal()["resealed"] == 2
    for pk, content in contents.items():
        item = ProjectFile.objects.get(pk=pk)
        assert raw(item.blob.name).startswith(b"KREOSEAL")
        assert download(client, item) == content
