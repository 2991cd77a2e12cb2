"""Sign-up, email verification and resend: real SMTP, real siteverify server."""

import re
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from accounts.captcha import CAPTCHA_REJECTED, CAPTCHA_UNAVAILABLE
from accounts.models import User
from accounts.services import VERIFY_INVALID
from accounts.tests.conftest import GOOD_TOKEN
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 42"


def signup(client, email, password=PASSWORD, token=GOOD_TOKEN, **extra):
    data = {"email": email, "password1": password, "password2": password}
    if token:
        data["g-recaptcha-response"] = token
    return client.post(reverse("accounts:signup"), data, **extra)


# Headers that differ between any two requests: the audit correlation id and
# the clock. Everything else, headers and body, must be the same bytes.
PER_REQUEST = ("X-Correlation-ID", "Expires")


def same_bytes(response) -> bytes:
    for header in PER_REQUEST:
        if header in response:
            del response[header]
    return response.serialize()


def link_in(inbox, address):
    (message,) = inbox.to(address)
    return re.search(r"https?://\S+", inbox.body(message)).group(0)


def test_signup_mails_a_link_that_activates_the_account_once(
    client, smtp, siteverify, mail_now
):
    """The account is inactive until its link is used; the link works once."""
    with mail_now():
        response = signup(client, "New.Person@Example.test")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:signup-done")
    user = User.objects.get(email="new.person@example.test")
    assert not user.is_active and user.email_verified_at is None
    assert user.password.startswith("argon2")

    link = link_in(smtp, "new.person@example.test")
    login = {"username": "new.person@example.test", "password": PASSWORD}
    assert client.post(reverse("accounts:login"), login).status_code == 200

    path = link.split("testserver", 1)[1]
    assert client.get(path).status_code == 200  # a page with a button, no change
    user.refresh_from_db()
    assert not user.is_active
    assert client.post(path).status_code == 302
    user.refresh_from_db()
    assert user.is_active and user.email_verified_at is not None

    replay = client.post(path)
    assert replay.status_code == 400
    assert VERIFY_INVALID in replay.content.decode()

    assert client.post(reverse("accounts:login"), login).status_code == 302
    types = list(AuditEvent.objects.values_list("event_type", "outcome"))
    assert ("auth.signup", "success") in types
    assert ("auth.verify", "success") in types
    assert ("auth.verify", "failure") in types


def test_a_forged_or_expired_link_is_refused(
    client, settings, smtp, siteverify, mail_now
):
    """A tampered token and one past its age both leave the account inactive."""
    with mail_now():
        signup(client, "late@example.test")
    path = link_in(smtp, "late@example.test").split("testserver", 1)[1]
    forged = path[:-3] + ("AAA" if not path.endswith("AAA/") else "BBB") + "/"
    assert client.post(forged).status_code == 400
    settings.ACCOUNTS_VERIFY_MAX_AGE = -1
    response = client.post(path)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert not User.objects.get(email="late@example.test").is_active


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short pw 1", "at least 12 characters"),
        ("qwerty123456", "too common"),
        ("12345678901234", "entirely numeric"),
    ],
)
def test_weak_passwords_are_refused(client, siteverify, password, message):
    response = signup(client, "weak@example.test", password=password)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.filter(email="weak@example.test").exists()


def test_signup_and_reset_answer_byte_for_byte_the_same(
    client, smtp, siteverify, mail_now
):
    """Known and unknown addresses get identical responses: no enumeration."""
    UserFactory(email="known@example.test")
    with mail_now():
        known = signup(client, "known@example.test", token=GOOD_TOKEN)
        siteverify.tokens.add("second")
        unknown = signup(client, "unknown@example.test", token="second")
    assert same_bytes(known) == same_bytes(unknown)
    # The owner of the known address is told, not the person signing up.
    assert "already has an" in smtp.body(smtp.to("known@example.test")[0])
    assert User.objects.filter(email__iexact="known@example.test").count() == 1

    siteverify.accept_all = True
    url = reverse("accounts:password-reset")
    with mail_now():
        known = client.post(
            url, {"email": "known@example.test", "g-recaptcha-response": "t"}
        )
        unknown = client.post(
            url, {"email": "nobody@example.test", "g-recaptcha-response": "t"}
        )
    assert known.status_code == 302
    assert same_bytes(known) == same_bytes(unknown)
    assert len(smtp.to("known@example.test")) == 2
    assert smtp.to("nobody@example.test") == []

    url = reverse("accounts:resend")
    assert same_bytes(client.post(url, {"email": "known@example.test"})) == same_bytes(
        client.post(url, {"email": "nobody@example.test"})
    )


def test_signup_needs_a_solved_captcha(client, siteverify):
    """No token, a wrong token: refused with a message, nothing created."""
    for token in ("", "made-up"):
        response = signup(client, "bot@example.test", token=token)
        assert response.status_code == 200
        assert CAPTCHA_REJECTED in response.content.decode()
    assert not User.objects.filter(email="bot@example.test").exists()
    assert AuditEvent.objects.filter(event_type="auth.captcha.failed").count() == 2
    assert siteverify.requests[-1]["remoteip"] == "127.0.0.1"


def test_captcha_service_down_fails_closed(client, settings):
    """An unreachable verify endpoint refuses the form with a clear message."""
    settings.KREO_CAPTCHA = "recaptcha"
    port_nobody_listens = 9
    settings.RECAPTCHA_VERIFY_URL = f"http://127.0.0.1:{port_nobody_listens}/verify"
    response = signup(client, "someone@example.test", token="anything")
    assert response.status_code == 200
    assert CAPTCHA_UNAVAILABLE in response.content.decode()
    assert not User.objects.filter(email="someone@example.test").exists()


def test_resend_mails_a_new_link_and_is_rate_limited(
    client, smtp, siteverify, mail_now
):
    """Resend works for an unverified account, then 429 with Retry-After."""
    with mail_now():
        signup(client, "again@example.test")
    url = reverse("accounts:resend")
    statuses = []
    with mail_now():
        for _ in range(5):
            statuses.append(client.post(url, {"email": "again@example.test"}))
    assert [r.status_code for r in statuses] == [302, 302, 302, 429, 429]
    assert int(statuses[-1]["Retry-After"]) > 0
    assert len(smtp.to("again@example.test")) == 4  # sign-up + three resends


def test_confirming_in_the_signup_browser_signs_in_and_names_the_address(
    client, smtp, siteverify, mail_now
):
    """The link opened in the browser that signed up confirms the address it
    names and signs that browser in; the same link in another browser only
    confirms and asks to sign in."""
    client.get(reverse("accounts:signup"))  # a browser has its CSRF cookie
    with mail_now():
        signup(client, "same.browser@example.test")
    path = link_in(smtp, "same.browser@example.test").split("testserver", 1)[1]

    page = client.get(path)
    assert page.status_code == 200
    assert "same.browser@example.test" in page.content.decode()

    done = client.post(path, follow=True)
    assert done.status_code == 200
    assert "same.browser@example.test is confirmed. You are signed in." in (
        done.content.decode()
    )
    user = User.objects.get(email="same.browser@example.test")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert AuditEvent.objects.filter(
        event_type="auth.login.success", actor=user
    ).exists()


def test_confirming_in_another_browser_asks_to_sign_in(
    client, smtp, siteverify, mail_now
):
    """A link opened in a browser that did not sign up (a stolen link, a
    second device) confirms the address but signs nobody in."""
    client.get(reverse("accounts:signup"))
    with mail_now():
        signup(client, "other.browser@example.test")
    path = link_in(smtp, "other.browser@example.test").split("testserver", 1)[1]

    elsewhere = type(client)()
    elsewhere.get(reverse("accounts:signup"))  # a CSRF cookie of its own
    done = elsewhere.post(path, follow=True)
    assert "other.browser@example.test is confirmed. Please sign in." in (
        done.content.decode()
    )
    assert "_auth_user_id" not in elsewhere.session
    # The signing-up browser, coming later, is not signed in by a used link.
    replay = client.post(path)
    assert replay.status_code == 400
    assert "_auth_user_id" not in client.session


def test_a_used_or_forged_link_says_so_before_any_click(
    client, smtp, siteverify, mail_now
):
    """Opening a used or changed link shows why it does not work and offers a
    new one, without recording anything (mail scanners open links too)."""
    with mail_now():
        signup(client, "used@example.test")
    path = link_in(smtp, "used@example.test").split("testserver", 1)[1]
    assert client.post(path, follow=True).status_code == 200  # message shown
    before = AuditEvent.objects.count()
    for target in (path, path[:-3] + "XYZ/"):
        page = client.get(target)
        assert page.status_code == 400
        body = page.content.decode()
        assert "This link is not valid" in body
        assert "used@example.test" not in body
        assert "Send a new link" in body
    assert AuditEvent.objects.count() - before <= 2  # the two 400 page views


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("/projects/invitations/abc/", "/projects/invitations/abc/"),
        ("https://evil.example/phish", "/projects/"),
        ("//evil.example/phish", "/projects/"),
    ],
)
def test_a_signup_comes_back_to_its_next_page_on_this_site_only(
    client, smtp, siteverify, mail_now, asked, lands
):
    """``next`` given to sign-up is where the signup browser lands once the
    address is confirmed there; a page on another site is never followed."""
    query = urlencode({"next": asked})
    client.get(f"{reverse('accounts:signup')}?{query}")
    with mail_now():
        response = client.post(
            f"{reverse('accounts:signup')}?{query}",
            {
                "email": "comes.back@example.test",
                "password1": PASSWORD,
                "password2": PASSWORD,
                "g-recaptcha-response": GOOD_TOKEN,
            },
        )
    assert response["Location"] == reverse("accounts:signup-done")
    path = link_in(smtp, "comes.back@example.test").split("testserver", 1)[1]
    assert client.post(path)["Location"] == lands
