"""audit_verify --offline checks the archives too, with no database."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import anchors, archive
from audit.models import AuditArchive
from audit.services import audit_seal
from audit.tests.conftest import make_old_events

pytestmark = pytest.mark.django_db(transaction=True)


def _offline(key_file, anchor_dir, archives) -> str:
    out = StringIO()
    call_command(
        "audit_verify",
        "--offline",
        "--public-key",
        str(key_file),
        "--anchors",
        str(anchor_dir),
        "--archives",
        archives,
        stdout=out,
    )
    return out.getvalue()


def test_offline_verify_reads_archives_and_catches_a_tampered_byte(
    archive_bucket, s3_client, settings, tmp_path, django_assert_num_queries
):
    """From the bucket and from a folder copy, with no query: every archive's
    events rebuild its anchored seals; one byte changed in the copy names the
    archive and fails."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    anchor_dir = tmp_path / "anchors"
    make_old_events(600)
    audit_seal()
    anchors.anchor_write(where=anchors.FolderStore(anchor_dir), force=True)
    archive.run()
    item = AuditArchive.objects.get()
    key_file = tmp_path / "audit.pub"
    call_command("audit_public_key", stdout=open(key_file, "w"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for key in (item.key, item.manifest_key):
        body = s3_client.get_object(Bucket=archive_bucket, Key=key)["Body"].read()
        (copy / key.rsplit("/", 1)[-1]).write_bytes(body)
    seals = json.loads((copy / item.manifest_key.rsplit("/", 1)[-1]).read_text())
    assert seals["seal_records"]

    with django_assert_num_queries(0):
        text = _offline(key_file, anchor_dir, str(copy))
        assert "1 archives in " in text and ": 600 events" in text, text
        assert "anchored) checked" in text and "(0 anchored)" not in text, text
        text = _offline(
            key_file,
            anchor_dir,
            f"s3://{archive_bucket}/{settings.AUDIT_ARCHIVE_PREFIX}",
        )
        assert ": 600 events" in text, text

    path = copy / item.key.rsplit("/", 1)[-1]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with django_assert_num_queries(0), pytest.raises(CommandError) as failed:
        _offline(key_file, anchor_dir, str(copy))
    assert "archives broken" in str(failed.value)
    assert item.key in str(failed.value)
