"""Each control's check fails (or warns) when its condition is broken and
passes when it is mended, judged at a moved ``now`` where time matters."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from accounts import api_tokens
from accounts.tests.factories import UserFactory
from audit import anchors
from audit.services import (
    audit_archive_run,
    audit_record,
    audit_seal,
    review_create,
    review_sign_off,
)
from audit.tests.conftest import make_old_events
from audit.watch import verification_run
from backups.models import RestoreDrill
from compliance.catalogue import control_get, controls
from compliance.models import CheckStatus
from compliance.services import checks_run
from compliance.tests.seed import backup_set
from kreo.permissions import ADMIN_GROUP, AUDITOR_GROUP
from monitoring.models import Severity, SubjectKind
from monitoring.rules import Hit
from monitoring.services import alert_raise, alert_resolve
from privacy.services import purge_run
from projects import keys as project_keys
from projects.services import projects_set_aside_for_leaving_owner
from projects.storage import legacy_encrypt
from projects.tests.factories import MembershipFactory, stored_file

pytestmark = pytest.mark.django_db

ISO = {"A.5.15", "A.5.17", "A.5.18", "A.8.2", "A.8.5", "A.8.10", "A.8.12",
       "A.8.13", "A.8.15", "A.8.16", "A.8.20", "A.8.24", "A.8.25"}  # fmt: skip
SOC2 = {"CC6.1", "CC6.2", "CC6.3", "CC7.2", "CC7.3", "A1.2"}


def judge(control_id, now=None):
    return control_get(control_id).check(now or timezone.now())


def test_catalogue_covers_the_required_mappings():
    """Every Annex A control and SOC 2 criterion the issue names is evidenced
    by at least one control."""
    items = controls()
    assert ISO <= {c for item in items for c in item.iso27001}
    assert SOC2 <= {c for item in items for c in item.soc2}
    assert len({item.id for item in items}) == len(items) >= 14


# Backups ------------------------------------------------------------------------


def test_backup_age_fails_after_27_hours_without_abackup_set():
    now = timezone.now()
    backup = backup_set(now - timedelta(hours=1))
    assert judge("backup-age", now).status == CheckStatus.PASS
    stopped = judge("backup-age", now + timedelta(hours=27))
    assert stopped.status == CheckStatus.FAIL
    assert "28.0 h old" in stopped.summary
    assert stopped.evidence["set_id"] == backup.pk
    fresh = backup_set(now + timedelta(hours=26))
    mended = judge("backup-age", now + timedelta(hours=27))
    assert mended.status == CheckStatus.PASS
    assert mended.evidence["set_id"] == fresh.pk


def test_backup_without_its_offsite_copy_breaks_3_2_1():
    now = timezone.now()
    backup_set(now, states=("done", "done", "failed"))
    outcome = judge("backup-age", now)
    assert outcome.status == CheckStatus.FAIL
    assert "copy 3 is failed" in outcome.summary
    backup_set(now + timedelta(minutes=1), s3=False)
    outcome = judge("backup-age", now + timedelta(minutes=1))
    assert "copy 3 is not in S3" in outcome.summary
    backup_set(now + timedelta(minutes=2))
    assert judge("backup-age", now + timedelta(minutes=2)).status == CheckStatus.PASS


def test_restore_drill_failed_or_overdue_fails():
    now = timezone.now()
    backup = backup_set(now)
    assert judge("restore-drill", now).status == CheckStatus.FAIL  # none yet
    RestoreDrill.objects.create(
        backup_set=backup, started_at=now, finished_at=now, ok=False,
        mismatches=[{"table": "projects_project"}],
    )  # fmt: skip
    failed = judge("restore-drill", now)
    assert failed.status == CheckStatus.FAIL
    assert failed.evidence["mismatches"] == 1
    later = now + timedelta(minutes=5)
    drill = RestoreDrill.objects.create(
        backup_set=backup, started_at=later, finished_at=later, ok=True
    )
    passed = judge("restore-drill", later)
    assert passed.status == CheckStatus.PASS
    assert passed.evidence["drill_id"] == drill.pk
    assert judge("restore-drill", later + timedelta(days=9)).status == "fail"


# Audit trail ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_audit_chain_fails_once_the_tail_is_tampered(sealed_now, attacker_sql):
    """A verified, anchored trail passes; after a row of its tail is edited
    the next scheduled verification fails and so does the control."""
    events = [audit_record(event_type="file.download") for _ in range(4)]
    audit_seal()
    anchors.anchor_write(force=True)
    assert verification_run(archives=True, actor_label="beat").ok
    outcome = judge("audit-chain")
    assert outcome.status == CheckStatus.PASS, outcome.summary
    assert outcome.evidence["anchor"]["anchored_seal"] is not None
    assert judge("audit-chain", timezone.now() + timedelta(days=2)).status == "fail"

    attacker_sql(
        "UPDATE audit_auditevent SET actor_label = 'someone-else' WHERE id = %s",
        [events[-1].pk],
    )
    assert not verification_run(archives=True, actor_label="beat").ok
    outcome = judge("audit-chain")
    assert outcome.status == CheckStatus.FAIL
    assert f"event {events[-1].pk}" in outcome.summary
    assert outcome.evidence["verification"]["outcome"] == "failure"


@pytest.mark.django_db(transaction=True)
def test_audit_retention_fails_until_old_events_are_archived(locked_archive):
    make_old_events(20, days_ago=40)
    outcome = judge("audit-retention")
    assert outcome.status == CheckStatus.FAIL
    assert "past the 30-day retention" in outcome.summary
    audit_archive_run()
    outcome = judge("audit-retention")
    assert outcome.status == CheckStatus.PASS, outcome.summary
    assert outcome.evidence["archives_by_state"]["purged"] >= 1
    assert outcome.evidence["newest_archive"]["object_lock"] is True


def test_log_review_lapses_when_not_signed_off():
    auditor = UserFactory(email="auditor@example.test")
    auditor.groups.add(Group.objects.get_or_create(name=AUDITOR_GROUP)[0])
    assert judge("log-review").status == CheckStatus.FAIL  # none opened
    review = review_create()
    now = timezone.now()
    assert judge("log-review", now).status == CheckStatus.PASS
    lapsed = judge("log-review", now + timedelta(days=8))
    assert lapsed.status == CheckStatus.FAIL
    assert f"Review {review.pk} (period ending" in lapsed.summary
    review_sign_off(review_id=review.pk, actor=auditor, comment="Looked at all.")
    signed = judge("log-review", now + timedelta(days=8))
    assert signed.status == CheckStatus.PASS
    assert signed.evidence["latest"]["signed_off_by"] == "auditor@example.test"


# Access ---------------------------------------------------------------------------


def _staff(email, group=ADMIN_GROUP, **extra):
    extra = {"is_staff": True, "last_login": timezone.now(), **extra}
    user = UserFactory(email=email, **extra)
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def test_2fa_fails_when_a_staff_member_loses_it(rf):
    admin = _staff("admin@example.test")
    TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    customer = UserFactory()
    UserFactory()
    TOTPDevice.objects.create(user=customer, name="phone", confirmed=True)
    outcome = judge("2fa-adoption")
    assert outcome.status == CheckStatus.PASS
    assert outcome.evidence["customers_percent"] == 50.0
    # Two of three accounts: the figure the cockpit's 2FA chart plots.
    assert outcome.evidence["twofa_adoption"] == round(2 / 3, 4)
    from accounts.services import otp_disable

    request = rf.post("/account/security/")
    request.user = admin
    otp_disable(request=request, user=admin)
    outcome = judge("2fa-adoption")
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["staff_without_2fa"] == [
        {"id": admin.pk, "email": "admin@example.test"}
    ]
    assert outcome.evidence["twofa_adoption"] == round(1 / 3, 4)


def test_dormant_accounts_warn_for_customers_and_fail_for_staff(client):
    now = timezone.now()
    old = now - timedelta(days=91)
    customer = UserFactory(last_login=old)
    assert judge("dormant-accounts", now).status == CheckStatus.WARN
    staff = _staff("ops@example.test")
    staff.last_login = old
    staff.save()
    outcome = judge("dormant-accounts", now)
    assert outcome.status == CheckStatus.FAIL
    assert "ops@example.test" in outcome.summary
    for user in (customer, staff):
        client.force_login(user)
    assert judge("dormant-accounts", now).status == CheckStatus.PASS


def test_privileged_roles_list_holders_and_changes():
    now = timezone.now()
    admin = _staff("admin@example.test")
    auditor = _staff("audit@example.test", group=AUDITOR_GROUP, is_staff=False)
    audit_record(
        event_type="auth.sso.roles",
        actor=auditor,
        target=auditor,
        details={"groups_added": [AUDITOR_GROUP], "groups_removed": []},
    )
    outcome = judge("privileged-roles", now + timedelta(minutes=1))
    assert outcome.status == CheckStatus.PASS
    holders = {h["email"]: h["groups"] for h in outcome.evidence["holders"]}
    assert holders == {
        "admin@example.test": [ADMIN_GROUP],
        "audit@example.test": [AUDITOR_GROUP],
    }
    assert outcome.evidence["changes"][0]["groups_added"] == [AUDITOR_GROUP]
    admin.last_login = now - timedelta(days=91)
    admin.save()
    unused = judge("privileged-roles", now)
    assert unused.status == CheckStatus.FAIL
    assert "admin@example.test" in unused.summary
    admin.groups.clear()  # access taken away, as the admin does
    admin.is_staff = False
    admin.save()
    outcome = judge("privileged-roles", now)
    assert outcome.status == CheckStatus.PASS
    assert [h["email"] for h in outcome.evidence["holders"]] == ["audit@example.test"]


def test_api_token_past_its_lifetime_fails():
    user = UserFactory()
    api_tokens.token_create(actor=user)
    assert judge("api-token-lifetime").status == CheckStatus.PASS
    forever, _ = AuthToken.objects.create(user=user, expiry=None)
    outcome = judge("api-token-lifetime")
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["overdue"][0]["id"] == api_tokens.public_id(forever)
    api_tokens.token_revoke(actor=user, token_id=api_tokens.public_id(forever))
    # A week on, the first token has expired: nothing in force past lifetime.
    later = judge("api-token-lifetime", timezone.now() + timedelta(days=8))
    assert later.status == CheckStatus.PASS
    assert later.evidence["in_force"] == 0


# Data -----------------------------------------------------------------------------


def test_encryption_fails_for_a_plaintext_file_and_warns_without_rotation(settings):
    project = MembershipFactory().project
    stored_file(project)
    outcome = judge("encryption-at-rest")
    assert outcome.status == CheckStatus.WARN
    assert "no key rotation recorded" in outcome.summary
    project_keys.data_keys_rotate()
    assert judge("encryption-at-rest").status == CheckStatus.PASS
    settings.KREO_FILE_ENCRYPTION = False
    plain = stored_file(project, name="plain.pdf")
    outcome = judge("encryption-at-rest")
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["files_not_current"][0]["id"] == str(plain.pk)
    settings.KREO_FILE_ENCRYPTION = True
    legacy_encrypt(plain)
    assert judge("encryption-at-rest").status == CheckStatus.PASS
    late = judge("encryption-at-rest", timezone.now() + timedelta(days=400))
    assert late.status == CheckStatus.WARN


def test_erasure_of_a_set_aside_project_past_its_deadline(
    django_capture_on_commit_callbacks,
):
    owner = MembershipFactory(role="owner")
    projects_set_aside_for_leaving_owner(user_id=owner.user_id)
    now = timezone.now()
    assert judge("erasure-deadline", now).status == CheckStatus.PASS
    late = now + timedelta(days=32)
    outcome = judge("erasure-deadline", late)
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["projects_overdue"][0]["id"] == str(owner.project_id)
    with django_capture_on_commit_callbacks(execute=True):
        purge_run(now=late)
    assert judge("erasure-deadline", late).status == CheckStatus.PASS
    outcome = judge("erasure-deadline")
    assert outcome.evidence["erasures_completed"][0]["subject"] == (
        f"project:{owner.project_id}"
    )


# Operations -----------------------------------------------------------------------


def test_alert_past_its_sla_fails_until_resolved():
    admin = _staff("soc@example.test")
    now = timezone.now()
    alert, _ = alert_raise(
        hit=Hit(
            rule="login-failures",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.IP,
            subject="198.51.100.9",
            summary="Many failed sign-ins",
            first_seen=now,
            last_seen=now,
        )
    )
    assert judge("alert-sla", now + timedelta(hours=23)).status == CheckStatus.PASS
    outcome = judge("alert-sla", now + timedelta(hours=25))
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["unresolved"][0]["id"] == alert.pk
    alert_resolve(actor=admin, alert_id=alert.pk, reason="Blocked the address.")
    assert judge("alert-sla", now + timedelta(hours=25)).status == CheckStatus.PASS


SECURE = {
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SECURE_SSL_REDIRECT": True,
    "SESSION_COOKIE_SECURE": True,
    "CSRF_COOKIE_SECURE": True,
}


def test_tls_headers_not_applicable_outside_production_then_judged(
    settings, monkeypatch
):
    outcome = judge("tls-headers")
    assert outcome.status == CheckStatus.NOT_APPLICABLE
    assert "Not the production settings (kreo.settings.test)" in outcome.summary
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "kreo.settings.production")
    settings.SECURE_HSTS_SECONDS = 0
    outcome = judge("tls-headers")
    assert outcome.status == CheckStatus.FAIL
    assert "security.W004" in outcome.summary
    for name, value in SECURE.items():
        setattr(settings, name, value)
    outcome = judge("tls-headers")
    assert outcome.status == CheckStatus.PASS, outcome.evidence["findings"]


def test_unpinned_requirement_fails(settings, tmp_path):
    assert judge("dependencies-pinned").status == CheckStatus.PASS
    settings.BASE_DIR = tmp_path
    (tmp_path / "requirements.txt").write_text("Django==5.2.19\nrequests>=2\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    outcome = judge("dependencies-pinned")
    assert outcome.status == CheckStatus.FAIL
    assert outcome.evidence["unpinned"]["requirements.txt"] == ["requests>=2"]


def test_vulnerabilities_not_checked_without_a_report_never_pass(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    settings.VAR_DIR = tmp_path
    (tmp_path / "requirements.txt").write_text("Django==5.2.19\ncelery[redis]==5.7\n")
    outcome = judge("dependencies-vulnerabilities")
    assert outcome.status == CheckStatus.NOT_CHECKED
    assert "no pip-audit report" in outcome.summary
    report = tmp_path / "compliance" / "pip-audit.json"
    report.parent.mkdir()
    deps = [{"name": "django", "version": "5.2.19", "vulns": []}]
    report.write_text(json.dumps({"dependencies": deps}))
    outcome = judge("dependencies-vulnerabilities")
    assert outcome.status == CheckStatus.NOT_CHECKED  # celery not audited
    assert outcome.evidence["not_audited"] == ["celery==5.7"]
    # What pip-audit writes (exit 0, "No known vulnerabilities found") when
    # its advisory source has no entry for a package: skipped, not audited.
    skip = "Dependency not found on PyPI and could not be audited: celery (5.7)"
    deps.append({"name": "celery", "skip_reason": skip})
    report.write_text(json.dumps({"dependencies": deps}))
    outcome = judge("dependencies-vulnerabilities")
    assert outcome.status == CheckStatus.NOT_CHECKED
    assert skip in outcome.summary
    deps.pop()
    deps.append({"name": "celery", "version": "5.7", "vulns": [
        {"id": "PYSEC-2099-1", "fix_versions": ["5.8"], "aliases": []}
    ]})  # fmt: skip
    report.write_text(json.dumps({"dependencies": deps}))
    outcome = judge("dependencies-vulnerabilities")
    assert outcome.status == CheckStatus.FAIL
    assert "PYSEC-2099-1" in outcome.summary
    deps[1]["vulns"] = []
    report.write_text(json.dumps({"dependencies": deps}))
    assert judge("dependencies-vulnerabilities").status == CheckStatus.PASS
    stale = judge("dependencies-vulnerabilities", timezone.now() + timedelta(days=8))
    assert stale.status == CheckStatus.NOT_CHECKED


# The run --------------------------------------------------------------------------


def test_a_check_that_raises_is_recorded_as_error_and_the_others_run(
    settings, tmp_path
):
    settings.BASE_DIR = tmp_path  # no requirements files: the check raises
    run = checks_run(trigger="command")
    results = {r.control_id: r for r in run.results.all()}
    assert {item.id for item in controls()} == set(results)
    assert results["dependencies-pinned"].status == CheckStatus.ERROR
    assert "FileNotFoundError" in results["dependencies-pinned"].summary
    assert results["backup-age"].status == CheckStatus.FAIL
    assert results["tls-headers"].status == CheckStatus.NOT_APPLICABLE
    json.dumps([r.evidence for r in results.values()])
    assert run.finished_at is not None
