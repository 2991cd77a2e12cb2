"""scripts/attack.py against a running server (Django's live server: real
HTTP, a trusted proxy in front as nginx would be): each attack raises exactly
its alert when the rules run, the mail reaches the SMTP server and the signed
webhook the loopback receiver; ordinary use raises none."""

import io

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, UserFactory
from monitoring import services
from monitoring.models import Alert
from projects.models import Role
from projects.tests.factories import MembershipFactory, stored_file
from scripts import attack

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site(settings, rules_now):
    settings.KREO_TRUSTED_PROXY_COUNT = 1  # the script's X-Forwarded-For
    settings.AUDIT_FLOOD_PER_MINUTE = 30
    member = MembershipFactory(role=Role.EDITOR)
    for n in range(5):
        stored_file(member.project, uploaded_by=member.user, name=f"sheet-{n}.pdf")
    admin = UserFactory(is_staff=True, is_superuser=True, email="ops@example.test")
    device = TOTPDevice.objects.create(user=admin, name="phone", confirmed=True)
    target = UserFactory(email="intern@example.test")
    return member, admin, device, target


def _run(live_server, *args) -> str:
    out = io.StringIO()
    assert attack.main(["--base", live_server.url, "--forwarded", *args], out=out) == 0
    return out.getvalue()


def _alerts():
    return sorted((a.rule, a.subject) for a in Alert.objects.all())


def test_each_attack_raises_its_alert_mail_and_signed_webhook(
    live_server, site, smtp, webhook, mail_now
):
    member, admin, device, target = site
    victim = UserFactory(email="victim@example.test")
    printed = _run(
        live_server,
        "--member", member.user.email, "--member-password", PASSWORD,
        "--project", str(member.project_id), "--victim", victim.email,
        "--admin", admin.email, "--admin-password", PASSWORD,
        "--admin-totp", device.key, "--grant-user-id", str(target.pk),
    )  # fmt: skip
    assert "download: 200 downloads" in printed, printed
    assert "grant: user" in printed and ": 302" in printed, printed
    with mail_now():
        services.rules_run()
    assert _alerts() == [
        ("brute_force", "victim@example.test"),
        ("credential_stuffing", "198.51.100.9"),
        ("mass_download", str(member.user_id)),
        ("password_spray", "sign-in"),
        ("privilege_change", str(target.pk)),
        ("request_flood", "198.51.100.77"),
    ], printed
    mails = smtp.wait_for(6)
    subjects = sorted(m["Subject"] for m in mails)
    assert len(subjects) == 6 and all("soc@example.test" in m["To"] for m in mails)
    rules = sorted(body.get("rule") or body["text"] for body in webhook.verified())
    assert len(webhook.verified()) == 6, rules


def test_ordinary_use_raises_nothing(live_server, site):
    member, *_ = site
    printed = _run(
        live_server,
        "--normal", "--member", member.user.email, "--member-password", PASSWORD,
        "--project", str(member.project_id),
    )  # fmt: skip
    assert "normal: " in printed and "200" in printed, printed
    services.rules_run()
    assert _alerts() == []
