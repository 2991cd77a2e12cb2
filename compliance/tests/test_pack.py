"""The evidence pack as an auditor receives it: a month of seeded activity
packed by ``manage.py compliance_pack`` and the admin button, stored with
Object Lock (S3 on the PostgreSQL leg, the local folder on the embedded
default), verified offline by tools/kreo_open.py with the public key alone,
and refused when a single byte of it changes. Bad periods write nothing."""

import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from accounts.oidc.services import roles_apply
from accounts.tests.factories import UserFactory
from audit import keys
from audit.models import AuditEvent, AuditReview
from backups.models import BackupCopy, BackupSet, CopyState, RestoreDrill, SetState
from compliance import pack, pack_evidence
from compliance.catalogue import controls
from compliance.models import CheckRun, CheckStatus, ControlResult
from conftest import REGION, S3_ENDPOINT, make_locked_bucket
from monitoring.models import Alert, AlertState, Severity, SubjectKind

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "kreo_open.py"
PNG_DIR = REPO / "var" / "screenshots" / "compliance"

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def store(settings, tmp_path, s3_client):
    """Where packs go: an Object Lock bucket on the S3 server (PostgreSQL
    leg), the local folder of the embedded default (SQLite leg)."""
    settings.VAR_DIR = tmp_path / "var"
    if connection.vendor != "postgresql":
        settings.AUDIT_ARCHIVE_S3_BUCKET = ""
        return None
    bucket = make_locked_bucket(s3_client, "kreo-audit")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.AUDIT_ARCHIVE_S3_REGION = REGION
    return bucket


def stored_packs(settings, s3_client, bucket) -> list[str]:
    if bucket:
        listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=pack.PREFIX)
        return [item["Key"] for item in listing.get("Contents", [])]
    folder = Path(settings.VAR_DIR) / "compliance-packs"
    return sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []


@pytest.fixture
def month():
    """Thirty days of activity up to now: a check run a day (one failure,
    one not checked), a good backup set, a restore drill, a signed review,
    an alert raised and resolved, and a user made Admin through SSO."""
    today = timezone.localdate()
    start = today - timedelta(days=29)
    now = timezone.now()
    ids = [c.id for c in controls()] or ["backup-age"]
    for day in range(30):
        at = now - timedelta(days=29 - day, hours=1)
        run = CheckRun.objects.create(started_at=at, finished_at=at, trigger="schedule")
        for n, control_id in enumerate(ids):
            status = CheckStatus.PASS
            if day == 12 and n == 0:
                status = CheckStatus.FAIL
            elif day == 20 and n == len(ids) - 1:
                status = CheckStatus.NOT_CHECKED
            ControlResult.objects.create(
                run=run,
                control_id=control_id,
                checked_at=at,
                status=status,
                summary=f"{control_id} on day {day}: {status}",
                evidence={"day": day},
            )
    backup = BackupSet.objects.create(
        created_at=now - timedelta(days=3),
        finished_at=now - timedelta(days=3) + timedelta(minutes=4),
        state=SetState.GOOD,
    )
    for number in (1, 2, 3):
        BackupCopy.objects.create(
            backup_set=backup,
            number=number,
            state=CopyState.DONE,
            location=f"copy{number}/set-{backup.pk}",
            size=1000 * number,
        )
    RestoreDrill.objects.create(
        backup_set=backup,
        started_at=now - timedelta(days=2),
        finished_at=now - timedelta(days=2, minutes=-9),
        ok=True,
    )
    auditor = UserFactory(email="auditor@example.test")
    AuditReview.objects.create(
        period_start=now - timedelta(days=14),
        period_end=now - timedelta(days=7),
        notable_count=5,
        signed_off_by=auditor,
        signed_off_label=auditor.email,
        signed_off_at=now - timedelta(days=6),
        comment="Reviewed; nothing unexpected.",
    )
    Alert.objects.create(
        rule="credential_stuffing",
        severity=Severity.HIGH,
        subject_kind=SubjectKind.IP,
        subject="203.0.113.9",
        summary="Sign-in failures for 40 accounts from 203.0.113.9",
        first_seen=now - timedelta(days=10),
        last_seen=now - timedelta(days=10),
        state=AlertState.RESOLVED,
        resolved_label=auditor.email,
        resolved_at=now - timedelta(days=9),
        resolved_reason="IP blocked",
    )
    promoted = UserFactory(email="new-admin@example.test")
    roles_apply(request=None, user=promoted, claim_roles=["kreo-admin"])
    return start, today


def run_tool(*args) -> subprocess.CompletedProcess:
    """tools/kreo_open.py as an auditor runs it: isolated mode, outside the
    repository, no project settings in the environment."""
    outside = Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - only the cwd
    return subprocess.run(  # noqa: S603 - our own interpreter and tool
        [sys.executable, "-I", str(TOOL), *map(str, args)],
        cwd=outside,
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pack_of_a_month(month, store, settings, s3_client, tmp_path):
    """A month's pack holds the report, every evidence file and the signed
    manifest; it is stored retained, audited, verifies offline with the
    public key alone, and one changed byte anywhere fails verification."""
    start, end = month
    output = tmp_path / "pack.zip"
    out = io.StringIO()
    call_command(
        "compliance_pack", "--from", start, "--to", end, "--output", output, stdout=out
    )
    assert "Evidence pack" in out.getvalue() and "SHA-256" in out.getvalue()
    data = output.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert sha in out.getvalue()

    archive = zipfile.ZipFile(output)
    manifest_bytes = archive.read("manifest.json")
    manifest = json.loads(manifest_bytes)
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(archive.namelist()) == {*listed, "manifest.json", "manifest.sig"}
    for stem in pack_evidence.EVIDENCE:
        assert f"evidence/{stem}.json" in listed and f"evidence/{stem}.csv" in listed
    assert archive.read("report.pdf").startswith(b"%PDF-")
    for name, entry in listed.items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == entry["sha256"]
    raw_public = keys.public_key_bytes()
    assert manifest["key_id"] == keys.key_id(raw_public)
    keys.signing_key().public_key().verify(archive.read("manifest.sig"), manifest_bytes)

    # The evidence an auditor reads.
    evidence = {
        stem: json.loads(archive.read(f"evidence/{stem}.json"))
        for stem in pack_evidence.EVIDENCE
    }
    results = evidence["control-results"]
    assert len(results) == manifest["counts"]["control-results"] == 30 * len(controls())
    assert {r["status"] for r in results} >= {"pass", "fail"}
    assert evidence["backup-sets"][0]["state"] == "good"
    assert len(evidence["backup-sets"][0]["copies"]) == 3
    assert evidence["restore-drills"][0]["ok"] is True
    assert evidence["review-signoffs"][0]["signed_off_by"] == "auditor@example.test"
    assert evidence["alerts"][0]["resolved_reason"] == "IP blocked"
    # The SSO role sync and the staff flag it set; not the accounts' creation.
    changes = {r["event_type"]: r for r in evidence["role-changes"]}
    assert sorted(changes) == ["auth.sso.roles", "record.update"]
    role = changes["auth.sso.roles"]
    assert role["details"]["groups_added"] == ["Admin"]
    csv_head = archive.read("evidence/control-results.csv").decode().splitlines()[0]
    assert csv_head.startswith("run,control_id,checked_at,status,summary")

    # Stored, retained, audited.
    event = AuditEvent.objects.get(event_type=pack.EVENT)
    assert event.details["sha256"] == sha
    assert event.details["from"] == start.isoformat()
    assert event.details["to"] == end.isoformat()
    assert event.details["key_id"] == manifest["key_id"]
    stored = stored_packs(settings, s3_client, store)
    assert len(stored) == 1
    if store:
        head = s3_client.head_object(Bucket=store, Key=stored[0])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > timezone.now() + timedelta(days=364)
        body = s3_client.get_object(Bucket=store, Key=stored[0])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == sha
        assert event.details["object_lock"]["mode"] == "COMPLIANCE"
    else:
        local = Path(settings.VAR_DIR) / "compliance-packs" / stored[0]
        assert hashlib.sha256(local.read_bytes()).hexdigest() == sha
        assert not os.access(local, os.W_OK) or os.geteuid() == 0

    # Offline verification with the published key only.
    public = keys.public_key_b64()
    good = run_tool("pack-verify", "--public-key", public, output)
    assert good.returncode == 0, good.stderr
    assert "manifest signature verified" in good.stdout
    assert (
        f"{len(listed)} files, every size and SHA-256 matches: verified" in good.stdout
    )
    pem = tmp_path / "audit-public.pem"
    pem.write_text(keys.public_key_pem())
    assert run_tool("pack-verify", "--public-key-file", pem, output).returncode == 0
    other = run_tool("pack-verify", "--public-key", _other_key(), output)
    assert other.returncode == 1
    assert "does not verify with the public key" in other.stderr

    # One byte changed in any file of the unpacked pack fails verification.
    folder = tmp_path / "unpacked"
    archive.extractall(folder)
    assert run_tool("pack-verify", "--public-key", public, folder).returncode == 0
    for name in [*listed, "manifest.json", "manifest.sig"]:
        target = folder / name
        original = target.read_bytes()
        changed = bytearray(original)
        changed[len(changed) // 2] ^= 0x01
        target.write_bytes(bytes(changed))
        try:
            bad = run_tool("pack-verify", "--public-key", public, folder)
        finally:
            target.write_bytes(original)
        assert bad.returncode == 1, name
        assert "NOT verified" in bad.stderr, name
        if name in listed:
            assert f"{name}: SHA-256 " in bad.stderr and "altered" in bad.stderr
        else:
            assert "manifest.json: the signature (manifest.sig) does not verify" in (
                bad.stderr
            )
    _documented_lines(folder)

    # And one byte changed in the zip itself.
    tampered = tmp_path / "tampered.zip"
    member = archive.getinfo("report.pdf")
    start_of_data = member.header_offset + 30 + len(member.filename.encode())
    start_of_data += int.from_bytes(data[member.header_offset + 28 :][:2], "little")
    changed = bytearray(data)
    changed[start_of_data + member.compress_size // 2] ^= 0x01
    tampered.write_bytes(bytes(changed))
    bad = run_tool("pack-verify", "--public-key", public, tampered)
    assert bad.returncode == 1
    assert "report.pdf: " in bad.stderr and "NOT verified" in bad.stderr

    _render_pages(archive.read("report.pdf"), tmp_path)
    if os.environ.get("KREO_PACK_PNG"):
        PNG_DIR.mkdir(parents=True, exist_ok=True)
        (PNG_DIR / "pack-demo.zip").write_bytes(data)
        (PNG_DIR / "pack-demo.pub").write_text(public + "\n")


def _documented_lines(folder: Path) -> None:
    """The README's openssl and jq lines verify the unpacked pack, and fail
    on a changed byte (where openssl, jq and sha256sum are installed)."""
    import shutil

    if not all(shutil.which(tool) for tool in ("openssl", "jq", "sha256sum")):
        return
    (folder.parent / "audit-public.pem").write_text(keys.public_key_pem())
    script = (
        "openssl pkeyutl -verify -pubin -inkey ../audit-public.pem -rawin "
        "-in manifest.json -sigfile manifest.sig && "
        "jq -r '.files[] | \"\\(.sha256)  \\(.name)\"' manifest.json "
        "| sha256sum -c --quiet && echo 'every file matches'"
    )

    def run():
        return subprocess.run(  # noqa: S603, S607 - the README's own lines
            ["bash", "-c", script], cwd=folder, capture_output=True, text=True
        )

    good = run()
    assert good.returncode == 0, good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert "every file matches" in good.stdout
    target = folder / "evidence" / "alerts.csv"
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        bad = run()
    finally:
        target.write_bytes(original)
    assert bad.returncode != 0 and "evidence/alerts.csv: FAILED" in bad.stdout


def _other_key() -> str:
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def _render_pages(pdf: bytes, tmp_path: Path) -> None:
    """With KREO_PACK_PNG set, the report for a person to look at: the PDF in
    var/screenshots/compliance/pack-report.pdf and, where pdftoppm is
    installed (Debian poppler-utils), its pages as pack-page-N.png beside it."""
    import shutil

    if not os.environ.get("KREO_PACK_PNG"):
        return
    PNG_DIR.mkdir(parents=True, exist_ok=True)
    source = PNG_DIR / "pack-report.pdf"
    source.write_bytes(pdf)
    if shutil.which("pdftoppm"):
        subprocess.run(  # noqa: S603, S607 - pdftoppm on our own file
            ["pdftoppm", "-png", "-r", "70", str(source), str(PNG_DIR / "pack-page")],
            check=True,
            timeout=60,
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-02-30", "--to", "2026-03-01"), "is not a date as YYYY-MM-DD"),
        (("--from", "yesterday", "--to", "2026-03-01"), "is not a date as YYYY-MM-DD"),
        (("--from", "{end}", "--to", "{start}"), "after it ends"),
        (("--from", "{start}", "--to", "{future}"), "after today"),
        (("--from", "2001-01-01", "--to", "2001-01-31"), "No control check results"),
    ],
)
def test_bad_period_writes_nothing(
    month, store, settings, s3_client, tmp_path, args, message
):
    """A malformed date, a reversed period, one ending in the future or one
    without check results: a clear error, no pack stored, none written to
    --output, nothing audited."""
    start, end = month
    values = {"start": start, "end": end, "future": end + timedelta(days=1)}
    output = tmp_path / "pack.zip"
    with pytest.raises(CommandError, match=message):
        call_command(
            "compliance_pack",
            *[a.format(**values) for a in args],
            "--output",
            output,
            stdout=io.StringIO(),
        )
    assert not output.exists()
    assert stored_packs(settings, s3_client, store) == []
    assert not AuditEvent.objects.filter(event_type=pack.EVENT).exists()


def test_admin_button(month, store, settings, s3_client, client, otp_login):
    """A member of the Admin group builds the pack from the admin and
    downloads it; a bad period shows the reason on the form and stores
    nothing; a staff member outside Admin and Auditor is refused."""
    start, end = month
    url = "/admin/compliance/checkrun/pack/"
    admin_user = UserFactory(email="staff-admin@example.test", is_staff=True)
    admin_user.groups.add(Group.objects.get_or_create(name="Admin")[0])
    otp_login(client, admin_user)
    assert client.get(url).status_code == 200

    bad = client.post(url, {"start": end.isoformat(), "end": start.isoformat()})
    assert bad.status_code == 400
    assert "after it ends" in bad.content.decode()
    assert stored_packs(settings, s3_client, store) == []

    done = client.post(url, {"start": start.isoformat(), "end": end.isoformat()})
    assert done.status_code == 200
    assert done["Content-Type"] == "application/zip"
    body = b"".join(done.streaming_content) if done.streaming else done.content
    assert hashlib.sha256(body).hexdigest() == done["X-Kreo-Pack-SHA256"]
    assert "manifest.sig" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    event = AuditEvent.objects.get(event_type=pack.EVENT)
    assert event.actor_id == admin_user.pk
    assert event.source_ip and event.path == url
    assert len(stored_packs(settings, s3_client, store)) == 1

    client.logout()
    plain_staff = UserFactory(email="staff@example.test", is_staff=True)
    otp_login(client, plain_staff)
    assert client.get(url).status_code == 403


def test_unreachable_lock_stores_nothing(month, settings, s3_client, tmp_path):
    """When S3 cannot say whether the archive bucket locks (here: no such
    bucket), the pack is refused with the reason: nothing is written and
    nothing audited, never an unlocked pack."""
    start, end = month
    settings.VAR_DIR = tmp_path / "var"
    settings.AUDIT_ARCHIVE_S3_BUCKET = f"kreo-missing-{uuid.uuid4().hex[:10]}"
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    output = tmp_path / "pack.zip"
    with pytest.raises(CommandError, match="Object Lock configuration of bucket"):
        call_command(
            "compliance_pack", "--from", start, "--to", end, "--output", output
        )
    assert not output.exists()
    assert not (tmp_path / "var" / "compliance-packs").exists()
    assert not AuditEvent.objects.filter(event_type=pack.EVENT).exists()
