"""Sign-in defences: rate limits, lockout, adaptive CAPTCHA, sessions."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.captcha import CAPTCHA_REJECTED
from accounts.limits import TOO_MANY
from accounts.models import User
from accounts.services import LOGIN_INVALID
from accounts.tests.conftest import GOOD_TOKEN
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.hashers import CountingArgon2PasswordHasher
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

LOGIN = "accounts:login"


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["accounts.tests.hashers.CountingArgon2PasswordHasher"]
    CountingArgon2PasswordHasher.calls = 0
    return CountingArgon2PasswordHasher


def attempt(client, email, password, **extra):
    return client.post(
        reverse(LOGIN),
        {"username": email, "password": password, "g-recaptcha-response": "any"},
        **extra,
    )


def _hammer(client, user, hasher, headers_for):
    """200 wrong passwords, with the right one as attempt 6; return results."""
    user_hashes = hasher.calls
    statuses, right_password_answer = [], None
    for n in range(200):
        password = PASSWORD if n == 5 else f"wrong guess {n}"
        response = attempt(client, user.email, password, **headers_for(n))
        statuses.append(response.status_code)
        if n == 5:
            right_password_answer = response
    return {
        "hashed": hasher.calls - user_hashes,
        "refused": statuses.count(200),
        "limited": statuses.count(429),
        "signed_in": statuses.count(302),
        "right_password_answer": right_password_answer,
        "last": response,
    }


def assert_account_limit(result) -> None:
    """Ten tries per account per window, the rest 429. django-ratelimit's
    windows are fixed (staggered per key): when a fresh one opens during the
    200 tries, at most ten more reach the locked account, and none the hasher
    (each caller also checks ``hashed == 5``)."""
    assert 10 <= result["refused"] <= 20
    assert result["refused"] + result["limited"] == 200


def test_200_wrong_passwords_reach_the_hasher_five_times(
    client, counting_hasher, siteverify, smtp, mail_now
):
    """Lockout after 5, a mail to the owner, the right password refused alike.

    The attacker even solves every CAPTCHA (the verify server accepts all).
    Only the five failures before the lockout reach the hasher; the locked
    account refuses the right password with the wrong-password message; from
    attempt 11 the per-account limit answers 429 with Retry-After.
    """
    siteverify.accept_all = True
    user = UserFactory()
    with mail_now():
        result = _hammer(client, user, counting_hasher, lambda n: {})
    assert result["hashed"] == 5
    assert result["signed_in"] == 0
    assert_account_limit(result)
    answer = result["right_password_answer"].content.decode()
    assert LOGIN_INVALID in answer
    user.refresh_from_db()
    assert user.is_locked() and user.lockout_level == 1
    (mail,) = smtp.to(user.email)
    assert "locked" in mail["Subject"]
    last = result["last"]
    assert last.status_code == 429 and 0 < int(last["Retry-After"]) <= 15 * 60
    assert TOO_MANY in last.content.decode()
    assert AuditEvent.objects.filter(event_type="auth.lockout").count() == 1
    codes = AuditEvent.objects.filter(event_type="auth.login.failure").values_list(
        "error_code", flat=True
    )
    assert sorted(set(codes)) == ["bad_password", "locked"]
    assert (
        AuditEvent.objects.filter(event_type="auth.ratelimit.hit").count()
        == result["limited"]
    )


@pytest.mark.parametrize("proxies", [0, 1])
def test_rotating_x_forwarded_for_gets_no_further(
    client, settings, counting_hasher, siteverify, smtp, mail_now, proxies
):
    """A new forged X-Forwarded-For on every try changes nothing.

    With no trusted proxy the header is ignored; behind one trusted proxy only
    the entry that proxy appended (the real peer) counts.
    """
    settings.KREO_TRUSTED_PROXY_COUNT = proxies
    siteverify.accept_all = True
    user = UserFactory()

    def forged(n):
        spoof = f"198.51.100.{n % 250}, 192.0.2.{(n * 7) % 250}"
        real = ", 203.0.113.9" if proxies else ""
        return {"HTTP_X_FORWARDED_FOR": spoof + real}

    with mail_now():
        result = _hammer(client, user, counting_hasher, forged)
    assert result["hashed"] == 5
    assert_account_limit(result)
    expected_ip = "203.0.113.9" if proxies else "127.0.0.1"
    ips = set(
        AuditEvent.objects.filter(event_type__startswith="auth.").values_list(
            "source_ip", flat=True
        )
    )
    assert ips == {expected_ip}


def test_many_real_ips_still_meet_the_account_limit(
    client, counting_hasher, siteverify
):
    """A botnet (a new REMOTE_ADDR each try) still hashes five times at most."""
    siteverify.accept_all = True
    user = UserFactory()
    result = _hammer(
        client, user, counting_hasher, lambda n: {"REMOTE_ADDR": f"192.0.2.{n % 250}"}
    )
    assert result["hashed"] == 5
    assert_account_limit(result)


def test_one_ip_against_many_accounts_meets_the_ip_limit(client, counting_hasher):
    """Spraying one password over many addresses: 429 after the IP limit (30)."""
    statuses = [
        attempt(client, f"victim{n}@example.test", "Summer2026!!").status_code
        for n in range(40)
    ]
    assert statuses[:30] == [200] * 30
    assert statuses[30:] == [429] * 10


def test_api_clients_get_json_429(client, siteverify):
    """A client asking for JSON gets the 429 as JSON, with the same Retry-After."""
    siteverify.accept_all = True
    user = UserFactory()
    for _ in range(10):
        attempt(client, user.email, "wrong password!!")
    response = attempt(client, user.email, "x", HTTP_ACCEPT="application/json")
    assert response.status_code == 429
    assert response.json()["detail"] == TOO_MANY
    assert int(response["Retry-After"]) == response.json()["retry_after"] > 0


def test_captcha_appears_only_after_failures_and_is_checked(
    client, counting_hasher, siteverify
):
    """A normal sign-in sees no CAPTCHA; after 3 failures it is required."""
    user = UserFactory()
    page = client.get(reverse(LOGIN)).content.decode()
    assert "g-recaptcha" not in page
    for n in range(3):
        response = client.post(
            reverse(LOGIN), {"username": user.email, "password": f"nope {n}"}
        )
    assert "g-recaptcha" in response.content.decode()
    assert "www.google.com" in response["Content-Security-Policy"]
    hashed = counting_hasher.calls
    no_token = client.post(
        reverse(LOGIN), {"username": user.email, "password": PASSWORD}
    )
    assert CAPTCHA_REJECTED in no_token.content.decode()
    bad = attempt(client, user.email, PASSWORD)
    assert CAPTCHA_REJECTED in bad.content.decode()
    assert counting_hasher.calls == hashed, "an unsolved CAPTCHA reached the hasher"
    good = client.post(
        reverse(LOGIN),
        {
            "username": user.email,
            "password": PASSWORD,
            "g-recaptcha-response": GOOD_TOKEN,
        },
    )
    assert good.status_code == 302
    failed = AuditEvent.objects.filter(event_type="auth.captcha.failed")
    assert failed.count() == 2


def test_login_rotates_the_session_key_and_logout_needs_post(client):
    """Signing in issues a new session key; GET does not sign out, POST does."""
    user = UserFactory()
    client.get(reverse(LOGIN))
    client.session.save()
    before = client.session.session_key
    response = client.post(
        reverse(LOGIN), {"username": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.session.session_key != before
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert client.get(reverse("accounts:security")).status_code == 200
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert client.get(reverse("accounts:security")).status_code == 302
    types = list(AuditEvent.objects.values_list("event_type", flat=True))
    assert "auth.login.success" in types and "auth.logout" in types


def test_email_is_case_insensitive_at_login(client):
    """The address signs in whatever its case."""
    user = UserFactory(email="mixed@example.test")
    response = client.post(
        reverse(LOGIN), {"username": "MIXED@Example.TEST", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == user.pk


def test_idle_and_absolute_timeouts_end_the_session(client, settings):
    """Past the idle or the absolute limit the next request is signed out."""
    user = UserFactory()
    client.post(reverse(LOGIN), {"username": user.email, "password": PASSWORD})
    assert client.get(reverse("accounts:security")).status_code == 200
    settings.ACCOUNTS_SESSION_IDLE_SECONDS = -1
    response = client.get(reverse("accounts:security"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse(LOGIN))
    settings.ACCOUNTS_SESSION_IDLE_SECONDS = 3600
    client.post(reverse(LOGIN), {"username": user.email, "password": PASSWORD})
    settings.ACCOUNTS_SESSION_ABSOLUTE_SECONDS = -1
    assert client.get(reverse("accounts:security")).status_code == 302
    reasons = AuditEvent.objects.filter(event_type="auth.session.ended").values_list(
        "error_code", flat=True
    )
    assert sorted(reasons) == ["absolute", "idle"]


def test_staff_unlock_in_the_admin_lifts_a_lockout(client, otp_login, siteverify):
    """Staff (signed in with 2FA) unlock an account before its cool-off ends."""
    siteverify.accept_all = True
    user = UserFactory()
    for n in range(5):
        attempt(client, user.email, f"wrong {n} password")
    user.refresh_from_db()
    assert user.is_locked()
    staff = UserFactory(is_staff=True, is_superuser=True)
    admin = client_class_for(client)
    otp_login(admin, staff)
    response = admin.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "unlock", "_selected_action": [user.pk]},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.is_locked()
    fresh = client_class_for(client)
    assert attempt(fresh, user.email, PASSWORD).status_code == 302
    assert AuditEvent.objects.filter(event_type="auth.unlock").count() == 1


def client_class_for(client):
    return type(client)()


def test_the_demo_login_signs_in_with_no_second_step(client):
    """`make run` prints a demo login that works on the embedded default."""
    out = StringIO()
    call_command("demo_seed", stdout=out)
    email, password = re.search(r"demo login: (\S+) / (\S+)", out.getvalue()).groups()
    response = client.post(reverse(LOGIN), {"username": email, "password": password})
    assert response.status_code == 302
    assert response["Location"] == reverse("projects:list")


def test_each_lockout_in_a_row_doubles_the_cool_off(client, settings, siteverify):
    """Progressive lockout: 15 min, then 30 min; an expired lock lets a try in."""
    siteverify.accept_all = True
    settings.ACCOUNTS_RATES = {**settings.ACCOUNTS_RATES, "login-account": "100/m"}
    settings.ACCOUNTS_RATES["login-ip"] = "100/m"
    user = UserFactory()
    lengths = []
    for _ in range(2):
        for n in range(5):
            attempt(client, user.email, f"wrong {n} password")
        user.refresh_from_db()
        assert user.is_locked()
        lengths.append(round((user.locked_until - timezone.now()).total_seconds()))
        # The cool-off passes.
        User.objects.filter(pk=user.pk).update(locked_until=timezone.now())
    assert [round(x, -1) for x in lengths] == [900, 1800]
    assert attempt(client, user.email, PASSWORD).status_code == 302
    user.refresh_from_db()
    assert user.lockout_level == 0 and user.locked_until is None


def test_failures_from_one_ip_bring_the_captcha_for_any_account(client):
    """After 10 failures from an IP, its login page asks for a CAPTCHA (ALTCHA)."""
    for n in range(9):
        attempt(client, f"person{n}@example.test", "not the password")
    assert "<altcha-widget" not in client.get(reverse(LOGIN)).content.decode()
    attempt(client, "person9@example.test", "not the password")
    assert "<altcha-widget" in client.get(reverse(LOGIN)).content.decode()
    other_ip = client.get(reverse(LOGIN), REMOTE_ADDR="192.0.2.44")
    assert "<altcha-widget" not in other_ip.content.decode()
