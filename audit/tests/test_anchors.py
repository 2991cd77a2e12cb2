"""Anchors outside the database: a cut or rewritten tail is named by seal.

Each attack is first shown to pass the checks the trail had before anchors
(``audit_verify(anchored=False)``), then caught by ``audit_verify``.
"""

import base64
import hashlib
import json
import logging
import os
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit import anchors, keys, tasks
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal
from audit.services import audit_record, audit_seal
from audit.tests.conftest import make_old_events, verify_output
from audit.tests.test_admin import staff_client
from audit.verify import audit_verify
from conftest import REGION, S3_ENDPOINT, make_locked_bucket
from kreo.permissions import AUDITOR_GROUP

pytestmark = pytest.mark.django_db(transaction=True)


def _seals(count: int, per_seal: int = 3) -> list[AuditSeal]:
    """``count`` seals of ``per_seal`` events, each anchored as the beat would."""
    for i in range(count):
        for j in range(per_seal):
            audit_record(event_type="file.download", details={"seal": i, "n": j})
        # The first seal may also hold what came before (a user's creation
        # is a record.create event).
        assert audit_seal() >= per_seal
        assert anchors.anchor_write() is not None
    return list(AuditSeal.objects.order_by("seq"))


def _cut_after(attacker_sql, seal: AuditSeal | None) -> None:
    """Delete every seal after ``seal`` and the events they cover."""
    last_id = seal.last_id if seal else 0
    seq = seal.seq if seal else 0
    attacker_sql("DELETE FROM audit_auditevent WHERE id > %s", [last_id])
    attacker_sql("DELETE FROM audit_auditseal WHERE seq > %s", [seq])


def test_untouched_anchored_trail_verifies(sealed_now):
    """Three anchored seals pass, with the anchors counted."""
    _seals(3)
    ok, text = verify_output("--hot-only")
    assert ok, text
    assert "3 seals, 0 archives, 3 anchors checked" in text


def test_last_seal_cut_with_its_events_is_named(sealed_now, attacker_sql):
    """Deleting the last seal and its events, triggers bypassed, passes the
    database-only check and is named by the anchors."""
    seals = _seals(3)
    _cut_after(attacker_sql, seals[1])
    assert audit_verify(archives=False, anchored=False).ok
    ok, text = verify_output("--hot-only")
    assert not ok
    assert (
        f"first bad: truncated: seal 3 (events to {seals[2].last_id}) is anchored "
        "(anchor 3) but missing from the database: seals 3..3 were cut, the "
        "database ends at seal 2"
    ) in text


def test_last_two_seals_cut_are_named(sealed_now, attacker_sql):
    seals = _seals(4)
    _cut_after(attacker_sql, seals[1])
    assert audit_verify(archives=False, anchored=False).ok
    ok, text = verify_output("--hot-only")
    assert not ok
    assert (
        f"first bad: truncated: seal 4 (events to {seals[3].last_id}) is anchored "
        "(anchor 4) but missing from the database: seals 3..4 were cut, the "
        "database ends at seal 2"
    ) in text


def test_tail_rewritten_and_resealed_by_the_app_is_named(
    sealed_now, attacker_sql, caplog
):
    """Everything after seal 1 deleted, new events recorded and sealed (and
    anchored) by the app's own task: the seals no longer match their anchors."""
    seals = _seals(3)
    _cut_after(attacker_sql, seals[0])
    for i in range(2):
        for j in range(3):
            audit_record(event_type="auth.login.success", details={"fake": i * 3 + j})
        tasks.seal()
    assert AuditSeal.objects.count() == 3
    assert audit_verify(archives=False, anchored=False).ok
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "rewritten: seal 3 differs from its anchor (anchor 3): head " in text
    assert "anchored; seals 2..3 were rewritten" in text


def test_tail_rewritten_after_an_archived_seal_is_named(archive_bucket, attacker_sql):
    """Old events archived and purged (seal 1 in S3), newer seals anchored;
    everything after the archived seal deleted and new events sealed by the
    app: the full check, archives read, names the rewritten seal."""
    make_old_events(20)
    audit_seal()
    anchors.anchor_write()
    call_command("audit_archive", stdout=StringIO())
    assert AuditArchive.objects.get().state == ArchiveState.PURGED
    archived = AuditSeal.objects.get(seq=1)
    for i in range(2):
        audit_record(event_type="file.download", details={"real": i})
        tasks.seal()
    top = AuditSeal.objects.order_by("-seq").first().seq
    assert top >= 3
    _cut_after(attacker_sql, archived)
    for i in range(top - 1):
        audit_record(event_type="auth.login.success", details={"fake": i})
        tasks.seal()
    assert audit_verify(archives=True, anchored=False).ok
    ok, text = verify_output()
    assert not ok
    assert "1 archives" in text
    assert f"rewritten: seal {top} differs from its anchor" in text
    assert f"seals 2..{top} were rewritten" in text


def test_edited_anchor_is_reported(sealed_now):
    """An anchor file edited in place fails its signature."""
    _seals(3)
    path = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR).name(2)
    os.chmod(path, 0o644)
    body = json.loads(open(path, "rb").read())
    body["seals"][0]["head"] = "0" * 64
    open(path, "wb").write(anchors.canonical(body) + b"\n")
    ok, text = verify_output("--hot-only")
    assert not ok
    assert (
        f"first bad: anchor: anchor 2 ({path}) has a bad signature or is not an "
        "anchor: forged or edited"
    ) in text


def test_resigned_anchor_breaks_the_chain(sealed_now):
    """An anchor replaced by one signed with the real key (an insider with the
    signing secret) still breaks the link the next anchor holds."""
    _seals(3)
    where = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR)
    body = json.loads(where.read(2).data)
    body.pop("signature")
    body["at"] = "2020-01-01T00:00:00.000000+00:00"
    os.unlink(where.name(2))
    where.write(2, anchors.encode(body, keys.signing_key()))
    ok, text = verify_output("--hot-only")
    assert not ok
    assert (
        f"anchor 3 ({where.name(3)}) does not link to anchor 2 (its prev is not "
        "that anchor's SHA-256): the anchor chain is broken"
    ) in text


def test_removed_anchor_is_reported(sealed_now):
    _seals(3)
    where = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR)
    os.unlink(where.name(2))
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "anchor 3 (" in text and "follows anchor 1: anchors 2..2 are missing" in text


def test_newest_anchor_deleted_is_not_refilled(sealed_now, caplog):
    """Deleting the newest anchor file does not let the next one take its
    place: the writer logs CRITICAL and the verifier reports the gap."""
    _seals(3)
    where = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR)
    os.unlink(where.name(3))
    with caplog.at_level(logging.CRITICAL, logger="audit.anchors"):
        assert anchors.anchor_write(force=True) == 4
    assert f"anchor 3 in {where} has vanished" in caplog.text
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "follows anchor 2: anchors 3..3 are missing" in text


def test_anchor_files_are_never_rewritten(sealed_now):
    _seals(1)
    where = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR)
    before = where.read(1).data
    with pytest.raises(anchors.AnchorError, match="anchor 1 exists already"):
        where.write(1, b"{}")
    assert where.read(1).data == before
    assert not [n for n in os.listdir(where.path) if n.endswith(".tmp")]


def test_anchor_is_written_again_when_due(sealed_now):
    """No new seal: no anchor until AUDIT_ANCHOR_SECONDS passed, then one
    naming the latest seal, so a verifier can tell anchoring is alive."""
    _seals(1)
    assert anchors.anchor_write() is None
    sealed_now.AUDIT_ANCHOR_SECONDS = 0
    assert anchors.anchor_write() == 2
    body = json.loads(anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR).read(2).data)
    assert [s["seq"] for s in body["seals"]] == [1]
    sealed_now.AUDIT_ANCHOR_SECONDS = 300
    ok, text = verify_output("--hot-only")
    assert ok, text


def test_stopped_anchoring_is_reported(sealed_now):
    """A seal older than three times AUDIT_ANCHOR_SECONDS with no anchor, and a
    newest anchor that old, are both problems."""
    _seals(1)
    audit_record(event_type="file.download")
    audit_seal()
    sealed_now.AUDIT_ANCHOR_SECONDS = 0
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "unanchored: the newest anchor (1, written " in text
    assert "older than 0:00:00: anchoring has stopped" in text
    assert "unanchored: seal 2, sealed " in text


def test_offline_check_needs_no_database(
    sealed_now, tmp_path, django_assert_num_queries
):
    """--offline --public-key FILE checks the anchor chain with no query."""
    _seals(2)
    key_file = tmp_path / "audit.pub"
    call_command("audit_public_key", stdout=open(key_file, "w"))
    folder = str(sealed_now.AUDIT_ANCHOR_DIR)
    out = StringIO()
    with django_assert_num_queries(0):
        call_command(
            "audit_verify",
            "--offline",
            "--public-key",
            str(key_file),
            "--anchors",
            folder,
            stdout=out,
        )
    assert f"anchor chain intact: 2 anchors in {folder}; newest 2 written " in (
        out.getvalue()
    )
    assert "seals to 2 anchored" in out.getvalue()
    path = anchors.FolderStore(folder).name(1)
    os.chmod(path, 0o644)
    open(path, "ab").write(b" ")
    with django_assert_num_queries(0), pytest.raises(CommandError) as failed:
        call_command(
            "audit_verify",
            "--offline",
            "--public-key",
            str(key_file),
            "--anchors",
            folder,
            stdout=StringIO(),
        )
    assert "anchor chain broken: 2 anchors" in str(failed.value)
    assert (
        f"first bad: anchor 2 ({anchors.FolderStore(folder).name(2)}) does not link"
        in str(failed.value)
    )


def test_offline_check_refuses_another_key(sealed_now, tmp_path):
    """Anchors checked against a key that did not sign them all fail."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _seals(1)
    other = keys.public_key_bytes(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CommandError, match="anchor 1 .* has a bad signature"):
        call_command(
            "audit_verify",
            "--offline",
            "--public-key",
            base64.b64encode(other).decode(),
            "--anchors",
            str(sealed_now.AUDIT_ANCHOR_DIR),
        )


@pytest.fixture
def anchor_bucket(settings, s3_client):
    """The audit archive bucket, with Object Lock, holding the anchors."""
    bucket = make_locked_bucket(s3_client, "kreo-audit")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.AUDIT_ARCHIVE_S3_REGION = REGION
    settings.AUDIT_ANCHOR_LOCK_DAYS = 1
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    return bucket


def test_s3_anchors_are_locked_and_catch_a_cut_tail(
    anchor_bucket, s3_client, attacker_sql
):
    """In the archive bucket every anchor is retained in COMPLIANCE mode, a
    second put of a name is refused, and a cut tail is named."""
    seals = _seals(2)
    key = "audit-anchors/000000000002.json"
    head = s3_client.head_object(Bucket=anchor_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(anchors.AnchorError, match="anchor 2 exists already"):
        anchors.store().write(2, b"{}")
    _cut_after(attacker_sql, seals[0])
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "first bad: truncated: seal 2 " in text


def test_s3_anchor_overwritten_with_a_new_version_is_reported(anchor_bucket, s3_client):
    """A new version put over an anchor (with the app's S3 rights) does not
    replace it: the first version is checked and the overwrite reported."""
    _seals(2)
    key = "audit-anchors/000000000002.json"
    s3_client.put_object(Bucket=anchor_bucket, Key=key, Body=b'{"forged":1}\n')
    ok, text = verify_output("--hot-only")
    assert not ok
    assert (
        f"anchor: anchor 2 (s3://{anchor_bucket}/{key}) was overwritten: 2 versions "
        "(the first is checked)"
    ) in text
    assert "bad signature" not in text
    out = verify_output("--offline", "--public-key", keys.public_key_b64())
    assert not out[0] and "was overwritten" in out[1]


def test_scheduled_check_alerts_after_a_cut_tail(
    sealed_now, attacker_sql, client, caplog
):
    """The beat entry's task, after a tail deletion: CRITICAL log, mail to the
    Auditor group, a failed audit.verify event, red in the admin."""
    from django_celery_beat.models import PeriodicTask

    from kreo.schedule import sync_default_schedule

    sync_default_schedule()
    hot = PeriodicTask.objects.get(name="audit verify hot")
    assert (hot.task, hot.interval.every) == ("audit.tasks.verify_hot", 900)
    full = PeriodicTask.objects.get(name="audit verify full")
    assert (full.task, full.interval.every) == ("audit.tasks.verify_full", 86400)
    anchor = PeriodicTask.objects.get(name="audit anchor")
    assert (anchor.task, anchor.interval.every) == ("audit.tasks.anchor", 300)

    from django.contrib.auth.models import Group

    Group.objects.get_or_create(name=AUDITOR_GROUP)  # emptied by the last flush
    auditor = staff_client(client, auditor=True)
    UserFactory(email="user@example.test")
    seals = _seals(3)
    assert tasks.verify_hot.apply().get() is True
    assert mail.outbox == []

    _cut_after(attacker_sql, seals[1])
    with caplog.at_level(logging.CRITICAL, logger="audit.watch"):
        assert tasks.verify_hot.apply().get() is False
    assert "audit trail verification (hot) FAILED" in caplog.text
    assert "truncated: seal 3" in caplog.text
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [auditor.email]
    assert mail.outbox[0].subject == "Kreo audit trail verification FAILED (hot)"
    assert "First: truncated: seal 3 " in mail.outbox[0].body
    event = AuditEvent.objects.filter(event_type="audit.verify").latest("id")
    assert (event.outcome, event.error_code) == ("failure", "truncated")
    assert event.actor_label == "celery audit.tasks.verify_hot"

    page = client.get(reverse("admin:audit_auditseal_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="error"' in html
    assert "Audit trail verification FAILED" in html
    assert "truncated: seal 3 (events to" in html


def test_anchor_vector_matches_the_document(settings):
    """The anchor bytes and SHA-256 printed in docs/FORMATS.md are what the
    code writes for the fixture's seal 1 under the fixture's key."""
    from audit.tests.test_formats_doc import FIXTURE, block

    meta = json.loads(FIXTURE.read_text())
    settings.AUDIT_SIGNING_KEY = meta["AUDIT_SIGNING_KEY"]
    seal = meta["seal"]
    body = {
        "format": "kreo-audit-anchor-v1",
        "n": 1,
        "prev": "0" * 64,
        "at": "2026-10-01T09:35:00.000000+00:00",
        "key_id": seal["key_id"],
        "seals": [
            {k: seal[k] for k in ("seq", "first_id", "last_id", "head", "signature")}
        ],
    }
    data = anchors.encode(body, keys.signing_key())
    assert data == block("text", "audit-anchor-bytes").encode() + b"\n"
    assert hashlib.sha256(data).hexdigest() == block("vector", "audit-anchor-sha256")


def test_app_anchors_verify_by_the_document_alone(sealed_now):
    """Anchors the app wrote check with json, hashlib and cryptography only,
    following docs/FORMATS.md (no project code)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    seals = _seals(3)
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys.public_key_b64()))
    folder = sealed_now.AUDIT_ANCHOR_DIR
    prev = "0" * 64
    for n in (1, 2, 3):
        data = (folder / f"{n:012d}.json").read_bytes()
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        anchor = json.loads(data)
        signature = bytes.fromhex(anchor.pop("signature"))
        public.verify(
            signature,
            json.dumps(anchor, sort_keys=True, separators=(",", ":")).encode(),
        )
        assert (anchor["format"], anchor["n"], anchor["prev"]) == (
            "kreo-audit-anchor-v1",
            n,
            prev,
        )
        (pinned,) = anchor["seals"]
        assert (pinned["seq"], pinned["head"]) == (seals[n - 1].seq, seals[n - 1].head)
        prev = hashlib.sha256(data).hexdigest()


def test_hot_check_reads_the_newest_anchors_the_full_check_all(
    sealed_now, attacker_sql, monkeypatch
):
    """The frequent hot check reads only the newest anchors (still enough to
    name a cut tail); an old anchor edited is the daily full check's find."""
    monkeypatch.setattr(anchors, "HOT_WINDOW", 2)
    seals = _seals(4)
    path = anchors.FolderStore(sealed_now.AUDIT_ANCHOR_DIR).name(1)
    os.chmod(path, 0o644)
    open(path, "ab").write(b" ")
    ok, text = verify_output("--hot-only")
    assert ok, text
    assert "4 seals, 0 archives, 2 anchors checked" in text
    ok, text = verify_output()
    assert not ok
    assert "first bad: anchor: anchor 2 (" in text
    assert "does not link to anchor 1" in text
    _cut_after(attacker_sql, seals[2])
    ok, text = verify_output("--hot-only")
    assert not ok
    assert "first bad: truncated: seal 4 " in text
