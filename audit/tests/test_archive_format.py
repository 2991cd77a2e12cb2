"""Archive objects: KREOSEAL now, KREOAUD1 archives already in S3 still read."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from audit import anchors, archive, export, legacy
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal
from audit.services import audit_seal
from audit.tests.conftest import make_old_events, verify_output
from kreo import sealed

pytestmark = pytest.mark.django_db(transaction=True)

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.fixture
def legacy_archive(archive_bucket, s3_client, settings):
    """The KREOAUD1 object written by the code before KREOSEAL, in S3 under
    its own key, with its seal and catalogue row as the old code left them."""
    meta = json.loads((LEGACY / "kreoaud1-archive.json").read_text())
    settings.AUDIT_ARCHIVE_KEY = meta["AUDIT_ARCHIVE_KEY"]
    settings.AUDIT_SIGNING_KEY = meta["AUDIT_SIGNING_KEY"]
    blob = (LEGACY / "kreoaud1-archive.bin").read_bytes()
    s3_client.put_object(Bucket=archive_bucket, Key=meta["object_key"], Body=blob)
    seal = meta["seal"]
    AuditSeal.objects.create(
        **{k: seal[k] for k in ("seq", "first_id", "last_id", "count")},
        first_at=datetime.fromisoformat(seal["first_at"]),
        last_at=datetime.fromisoformat(seal["last_at"]),
        digests=bytes.fromhex(seal["digests"]),
        **{k: seal[k] for k in ("prev_head", "head", "key_id", "signature")},
        sealed_at=datetime.fromisoformat(seal["sealed_at"]),
    )
    item = AuditArchive.objects.create(
        first_seal=1,
        last_seal=1,
        first_id=1,
        last_id=5,
        count=5,
        first_at=datetime.fromisoformat(seal["first_at"]),
        last_at=datetime.fromisoformat(seal["last_at"]),
        bucket=archive_bucket,
        key=meta["object_key"],
        manifest_key=meta["object_key"].replace(".jsonl.gz.aes", ".manifest.json"),
        sha256=meta["sha256"],
        size=meta["size"],
        state=ArchiveState.PURGED,
    )
    return item, meta, blob


def test_legacy_archive_reads_verifies_and_exports(legacy_archive):
    """An archive written in KREOAUD1 before this change reads back row for
    row, passes audit_verify against its signed seal, and exports."""
    item, meta, blob = legacy_archive
    assert blob.startswith(legacy.MAGIC)
    assert list(archive.read_rows(item)) == meta["rows"]
    assert list(export.export_rows(export.Filters())) == meta["rows"]
    # After the upgrade the seal task's first run anchors the trail as it is.
    assert anchors.anchor_write() == 1
    ok, text = verify_output()
    assert ok, text
    assert "5 events, 1 seals, 1 archives, 1 anchors" in text


def test_legacy_archive_tampered_is_reported(legacy_archive, s3_client):
    """A flipped byte in a KREOAUD1 archive is reported, naming object and chunk."""
    item, _meta, blob = legacy_archive
    raw = bytearray(blob)
    raw[40] ^= 1
    s3_client.put_object(Bucket=item.bucket, Key=item.key, Body=bytes(raw))
    ok, text = verify_output()
    assert not ok
    assert f"{item.key}: KREOAUD1 chunk 0 fails authentication" in text


def test_new_archives_are_kreoseal(archive_bucket, s3_client):
    """A new archive object starts with the KREOSEAL header, 1 MiB chunks."""
    make_old_events(300)
    audit_seal()
    archive.run()
    item = AuditArchive.objects.get()
    raw = s3_client.get_object(Bucket=archive_bucket, Key=item.key)["Body"].read()
    header = sealed.parse_header(raw[: sealed.HEADER])
    assert raw.startswith(b"KREOSEAL\x01")
    assert header.chunk_size == sealed.BULK_CHUNK
    manifest = json.loads(
        s3_client.get_object(Bucket=archive_bucket, Key=item.manifest_key)[
            "Body"
        ].read()
    )
    assert manifest["format"] == archive.MANIFEST_FORMAT
    assert [s["seq"] for s in manifest["seal_records"]] == list(
        AuditSeal.objects.values_list("seq", flat=True)
    )


def test_archive_copied_to_another_key_fails(archive_bucket, s3_client, settings):
    """An archive object copied over another archive's key does not open
    there: the error names the object and the chunk."""
    settings.AUDIT_ARCHIVE_MAX_EVENTS = 300
    make_old_events(600)
    audit_seal()
    archive.run()
    first, second = AuditArchive.objects.order_by("first_id")
    s3_client.copy_object(
        Bucket=archive_bucket,
        Key=second.key,
        CopySource={"Bucket": archive_bucket, "Key": first.key},
    )
    ok, text = verify_output()
    assert not ok
    assert f"{second.key}: chunk 0 failed authentication" in text
    assert f"{first.key}:" not in text


def test_truncated_archive_refused_and_events_kept(archive_bucket, s3_client):
    """An archive cut short in S3 before its read-back is refused: the
    events stay in the hot store and the archive is not marked verified."""
    make_old_events(300)
    audit_seal()
    archive.plan()
    item = AuditArchive.objects.get()
    client = archive.s3_client()
    archive.upload(item, client)
    raw = s3_client.get_object(Bucket=archive_bucket, Key=item.key)["Body"].read()
    s3_client.put_object(Bucket=archive_bucket, Key=item.key, Body=raw[:-100])
    with pytest.raises(archive.ArchiveError, match=f"{item.key}: chunk 0 failed"):
        archive.read_back(item, client)
    with pytest.raises(archive.ArchiveError, match=f"{item.key}: chunk 0 failed"):
        archive.run()
    item.refresh_from_db()
    assert item.state == ArchiveState.UPLOADED
    assert AuditEvent.objects.count() == 300
