"""audit_verify --offline checks the archives too, with no database."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import anchors, archive, keys
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

    assert _kreo_open(settings, copy).returncode == 0

    path = copy / item.key.rsplit("/", 1)[-1]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with django_assert_num_queries(0), pytest.raises(CommandError) as failed:
        _offline(key_file, anchor_dir, str(copy))
    assert "archives broken" in str(failed.value)
    assert item.key in str(failed.value)
    opened = _kreo_open(settings, copy)
    assert opened.returncode == 1
    assert "failed authentication" in opened.stderr


def _kreo_open(settings, folder):
    """tools/kreo_open.py, the standalone reader, over the same folder copy."""
    return subprocess.run(  # noqa: S603 - this interpreter, our own tool
        [
            sys.executable,
            str(Path(settings.BASE_DIR) / "tools" / "kreo_open.py"),
            "audit-verify-folder",
            "--public-key",
            keys.public_key_b64(),
            "--archive-key",
            settings.AUDIT_ARCHIVE_KEY,
            "--event-key",
            settings.AUDIT_EVENT_KEY,
            str(folder),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
