"""The security page: sessions, history; password change and reset end sessions."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import SessionRecord, User
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/130.0 Safari/537.36"
)
NEW_PASSWORD = "a brand new long password 7"


def signed_in(user, agent, ip="127.0.0.1", password=PASSWORD):
    client = Client(HTTP_USER_AGENT=agent, REMOTE_ADDR=ip)
    response = client.post(
        reverse("accounts:login"), {"username": user.email, "password": password}
    )
    assert response.status_code == 302
    return client


def test_security_page_lists_sessions_and_signs_one_out(db):
    """Browser, IP and last seen for each session; sign out one, then all others."""
    user = UserFactory()
    laptop = signed_in(user, FIREFOX, "192.0.2.10")
    client = Client(HTTP_USER_AGENT=CHROME, REMOTE_ADDR="192.0.2.20")
    client.post(
        reverse("accounts:login"), {"username": user.email, "password": "wrong one!!"}
    )
    phone = signed_in(user, CHROME, "192.0.2.20")
    third = signed_in(user, CHROME, "192.0.2.30")
    page = phone.get(reverse("accounts:security")).content.decode()
    assert "Firefox on Linux" in page and "Chrome on Windows" in page
    assert "192.0.2.10" in page and "This session" in page
    assert "Sign-in refused (wrong password)" in page and "Signed in" in page

    laptop_record = SessionRecord.objects.get(ip="192.0.2.10")
    phone.post(reverse("accounts:session-revoke", args=[laptop_record.pk]))
    assert laptop.get(reverse("accounts:security")).status_code == 302
    assert third.get(reverse("accounts:security")).status_code == 200

    phone.post(reverse("accounts:sessions-revoke-others"))
    assert third.get(reverse("accounts:security")).status_code == 302
    assert phone.get(reverse("accounts:security")).status_code == 200
    assert SessionRecord.objects.filter(user=user).count() == 1
    assert AuditEvent.objects.filter(event_type="auth.session.revoked").count() == 2


def test_nobody_can_sign_out_someone_elses_session(db):
    """A session id of another user's session signs nothing out."""
    owner, other = UserFactory(), UserFactory()
    victim = signed_in(owner, FIREFOX)
    attacker = signed_in(other, CHROME)
    record = SessionRecord.objects.get(user=owner)
    attacker.post(reverse("accounts:session-revoke", args=[record.pk]))
    assert victim.get(reverse("accounts:security")).status_code == 200


def test_password_change_ends_the_other_sessions(db):
    """The session that changed the password stays; the others end."""
    user = UserFactory()
    other = signed_in(user, FIREFOX)
    current = signed_in(user, CHROME)
    response = current.post(
        reverse("accounts:password-change"),
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert current.get(reverse("accounts:security")).status_code == 200
    assert other.get(reverse("accounts:security")).status_code == 302
    assert AuditEvent.objects.filter(event_type="auth.password.changed").exists()


def test_password_reset_by_email_is_single_use_and_ends_every_session(
    db, smtp, siteverify, mail_now
):
    """The mailed link sets a password once; all sessions end; lockout lifts."""
    user = UserFactory()
    old_session = signed_in(user, FIREFOX)
    User.objects.filter(pk=user.pk).update(
        locked_until=timezone.now() + timedelta(hours=1), lockout_level=2
    )
    anonymous = Client()
    with mail_now():
        anonymous.post(
            reverse("accounts:password-reset"),
            {"email": user.email.upper(), "g-recaptcha-response": "solved-captcha"},
        )
    (mail,) = smtp.to(user.email)
    link = re.search(r"https?://testserver(\S+)", smtp.body(mail)).group(1)
    form = anonymous.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    set_url = form.redirect_chain[-1][0]
    done = anonymous.post(
        set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302
    assert old_session.get(reverse("accounts:security")).status_code == 302
    again = Client().get(link, follow=True)
    assert "not valid" in again.content.decode()
    signed_in(user, CHROME, password=NEW_PASSWORD)  # the lockout is lifted
    assert AuditEvent.objects.filter(event_type="auth.password.reset").exists()
