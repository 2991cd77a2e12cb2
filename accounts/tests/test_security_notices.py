"""Users are told: a mail on a sign-in from a new device, a password change
or reset, two-factor authentication turned off and a new API token; each from
a Celery task after the change commits, saying when, from which address and
browser, with what to do if it was not them, and no secret in it."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_otp import enrol
from audit.services import DEVICE_COOKIE

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "a brand new long password 7"  # noqa: S105 - the test's password
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) NoticeTest/1.0"
SECURITY = "http://testserver/accounts/security/"
RESET = "http://testserver/accounts/password/reset/"


def _client(ip="198.51.100.23", **cookies) -> Client:
    client = Client(REMOTE_ADDR=ip, HTTP_USER_AGENT=BROWSER)
    for name, value in cookies.items():
        client.cookies[name] = value
    return client


def _sign_in(client, user, password=PASSWORD):
    response = client.post(
        reverse("accounts:login"), {"username": user.email, "password": password}
    )
    assert response.status_code == 302
    return response


def _told(smtp, user, subject: str) -> str:
    """The one mail ``user`` got, with ``subject``; its body."""
    (mail,) = smtp.to(user.email)
    assert mail["Subject"] == subject
    body = smtp.body(mail)
    assert SECURITY in body and RESET in body  # what to do if it was not them
    return body


def test_a_sign_in_from_a_new_browser_is_told_once(smtp, mail_now):
    """The first sign-in of an account is not news; the same browser again
    sends nothing; another browser, or one presenting a made-up device id,
    gets one mail naming the time, address and browser."""
    user = UserFactory()
    laptop = _client()
    with mail_now():
        _sign_in(laptop, user)
    assert DEVICE_COOKIE in laptop.cookies  # set by the sign-in itself
    laptop.post(reverse("accounts:logout"))
    with mail_now():
        _sign_in(laptop, user)
    assert smtp.messages == []

    with mail_now():
        _sign_in(_client("203.0.113.99"), user)
    body = _told(smtp, user, "New sign-in to your Kreo account")
    assert "203.0.113.99" in body
    assert BROWSER in body
    assert re.search(r"When: +\d{4}-\d\d-\d\d \d\d:\d\d UTC", body)

    smtp.messages.clear()
    with mail_now():
        _sign_in(_client("203.0.113.98", **{DEVICE_COOKIE: "guessed-device"}), user)
    assert len(smtp.to(user.email)) == 1


def test_the_new_device_mail_leaves_only_after_commit(smtp, mail_now):
    user = UserFactory()
    _sign_in(_client(), user)
    with mail_now() as callbacks:
        _sign_in(_client("203.0.113.5"), user)
        assert smtp.messages == []  # nothing sent inside the transaction
    assert callbacks
    assert len(smtp.to(user.email)) == 1


def test_a_password_change_is_told_without_the_password(smtp, mail_now):
    user = UserFactory()
    client = _client()
    _sign_in(client, user)
    with mail_now():
        response = client.post(
            reverse("accounts:password-change"),
            {
                "old_password": PASSWORD,
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        )
    assert response.status_code == 302
    body = _told(smtp, user, "Your Kreo password was changed")
    assert NEW_PASSWORD not in body and PASSWORD not in body
    assert "198.51.100.23" in body


def test_a_password_reset_is_told(smtp, siteverify, mail_now):
    """Through the real reset: the link mail, then, once the new password is
    set, the notice (with no link that could reset it again by itself)."""
    user = UserFactory()
    anonymous = _client()
    with mail_now():
        anonymous.post(
            reverse("accounts:password-reset"),
            {"email": user.email, "g-recaptcha-response": "solved-captcha"},
        )
    (link_mail,) = smtp.to(user.email)
    link = re.search(r"https?://testserver(\S+)", smtp.body(link_mail)).group(1)
    form = anonymous.get(link, follow=True)
    smtp.messages.clear()
    with mail_now():
        done = anonymous.post(
            form.redirect_chain[-1][0],
            {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        )
    assert done.status_code == 302
    body = _told(smtp, user, "Your Kreo password was reset")
    assert NEW_PASSWORD not in body
    assert "/accounts/reset/" not in body  # the used link is not repeated


def test_turning_2fa_off_is_told(smtp, mail_now):
    user = UserFactory()
    client = _client()
    _sign_in(client, user)
    enrol(client)
    with mail_now():
        client.post(reverse("accounts:otp-disable"), {"password": PASSWORD})
    assert not TOTPDevice.objects.filter(user=user).exists()
    _told(smtp, user, "Two-factor authentication was turned off on your Kreo account")


def test_a_wrong_password_turns_nothing_off_and_tells_nothing(smtp, mail_now):
    user = UserFactory()
    client = _client()
    _sign_in(client, user)
    enrol(client)
    with mail_now():
        client.post(reverse("accounts:otp-disable"), {"password": "not mine"})
    assert smtp.messages == []


def test_a_new_api_token_is_told_by_its_id_never_its_secret(smtp, mail_now):
    user = UserFactory()
    client = _client()
    _sign_in(client, user)
    with mail_now():
        response = client.post(reverse("api:token-create"))
    secret = response.json()["token"]
    body = _told(smtp, user, "A new API token was created for your Kreo account")
    assert secret not in body
    assert secret[:8] not in body
    token_id = re.search(r"Token: +(\S+)", body).group(1)
    assert token_id in client.get(reverse("accounts:security")).content.decode()


def test_an_unknown_notice_is_refused():
    with pytest.raises(ValueError):
        services.security_notice_mail(
            user_id=1,
            notice="anything",
            protocol="https",
            domain="x",
            ip="",
            browser="",
            at="2026-01-01T00:00:00+00:00",
        )
