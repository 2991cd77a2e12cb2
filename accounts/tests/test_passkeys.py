"""Passkeys without a browser: a software authenticator (real P-256 keys and
signatures) against the real views, and the attacks: replay, another
account's credential, stale, forged and misused challenges, a wrong origin.
The browser journeys are in test_passkeys_browser.py."""

import json

import pytest
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import passkeys
from accounts.models import Passkey, SessionRecord
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.soft_authenticator import SoftAuthenticator
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _options(client, name, **data):
    response = client.post(reverse(name), data)
    assert response.status_code == 200, response.content
    return response.json()


def add_passkey(client, name="Laptop", authenticator=None):
    """Register a new passkey for the signed-in client; return its authenticator."""
    authenticator = authenticator or SoftAuthenticator()
    options = _options(client, "accounts:passkey-register-options")
    response = client.post(
        reverse("accounts:passkey-add"),
        json.dumps({"credential": authenticator.register(options), "name": name}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return authenticator


def enrolled(user, name="Laptop"):
    """A user with a registered passkey (added through the views)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    authenticator = add_passkey(client, name=name)
    return authenticator


def passkey_login(client, credential, step="", next_url=""):
    return client.post(
        reverse("accounts:passkey-login"),
        json.dumps({"credential": credential, "step": step, "next": next_url}),
        content_type="application/json",
    )


def login_challenge(client, step=""):
    data = {"step": step} if step else {}
    return _options(client, "accounts:passkey-login-options", **data)["challenge"]


def rejected(code):
    return AuditEvent.objects.filter(
        event_type="auth.passkey.rejected", error_code=code
    )


def signed_in_user_id(client):
    return client.session.get("_auth_user_id")


def test_add_list_and_remove_a_passkey_with_the_password(client):
    user = UserFactory()
    client.force_login(user)
    options = _options(client, "accounts:passkey-register-options")
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["rp"]["id"] == "testserver"
    authenticator = add_passkey(client, name="Work laptop")
    passkey = Passkey.objects.get(user=user)
    assert passkey.name == "Work laptop" and passkey.confirmed
    assert passkey.credential_id == authenticator.id
    assert AuditEvent.objects.filter(event_type="auth.passkey.added").count() == 1

    page = client.get(reverse("accounts:security")).content.decode()
    assert "Work laptop" in page and "never" in page
    assert 'data-passkey="register"' in page

    # The same authenticator again: refused (the options exclude it too).
    options = _options(client, "accounts:passkey-register-options")
    assert options["excludeCredentials"][0]["id"] == authenticator.id
    again = client.post(
        reverse("accounts:passkey-add"),
        json.dumps({"credential": authenticator.register(options)}),
        content_type="application/json",
    )
    assert again.status_code == 400 and again.json()["code"] == "registered"

    remove = reverse("accounts:passkey-remove")
    wrong = client.post(
        remove, {"passkey-passkey": passkey.pk, "passkey-password": "not it"}
    )
    assert wrong.status_code == 302 and Passkey.objects.filter(pk=passkey.pk).exists()
    assert AuditEvent.objects.filter(
        event_type="auth.2fa.failed", error_code="passkey_remove_bad_password"
    ).exists()
    client.post(remove, {"passkey-passkey": passkey.pk, "passkey-password": PASSWORD})
    assert not Passkey.objects.filter(pk=passkey.pk).exists()
    assert AuditEvent.objects.filter(event_type="auth.passkey.removed").count() == 1


def test_removing_another_accounts_passkey_is_refused(client):
    owner = UserFactory()
    enrolled(owner)
    theirs = Passkey.objects.get(user=owner)
    intruder = UserFactory()
    client.force_login(intruder)
    client.post(
        reverse("accounts:passkey-remove"),
        {"passkey-passkey": theirs.pk, "passkey-password": PASSWORD},
    )
    assert Passkey.objects.filter(pk=theirs.pk).exists()


def test_sign_in_without_a_password(client):
    user = UserFactory()
    authenticator = enrolled(user)
    options = _options(client, "accounts:passkey-login-options")
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    response = passkey_login(
        client, authenticator.assert_(options["challenge"]), next_url="/projects/"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"redirect": "/projects/"}
    assert signed_in_user_id(client) == str(user.pk)
    passkey = Passkey.objects.get(user=user)
    # The session is OTP-verified by the passkey, and tracked as any sign-in.
    assert client.session[DEVICE_ID_SESSION_KEY] == passkey.persistent_id
    assert SessionRecord.objects.filter(
        user=user, session_key=client.session.session_key
    ).exists()
    success = AuditEvent.objects.get(event_type="auth.login.success", actor=user)
    assert success.details == {"otp": True, "device": "Passkey"}
    assert AuditEvent.objects.filter(event_type="auth.passkey.used").count() == 1
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    assert client.get(reverse("accounts:security")).status_code == 200


def test_an_open_redirect_is_not_followed(client):
    user = UserFactory()
    authenticator = enrolled(user)
    challenge = login_challenge(client)
    response = passkey_login(
        client, authenticator.assert_(challenge), next_url="https://evil.example/"
    )
    assert response.json() == {"redirect": reverse("projects:list")}


def test_a_replayed_assertion_is_refused(client):
    """The same answer twice: the challenge is gone. Its challenge stored again
    (a new one asked for): the challenge differs. A fresh answer whose counter
    did not go up (a copied key): refused by the counter."""
    user = UserFactory()
    authenticator = enrolled(user)
    answer = authenticator.assert_(login_challenge(client))
    assert passkey_login(client, answer).status_code == 200
    client.post(reverse("accounts:logout"))

    replay = passkey_login(client, answer)
    assert replay.status_code == 400
    assert replay.json()["detail"] == passkeys.REFUSED_CHALLENGE
    assert signed_in_user_id(client) is None

    login_challenge(client)  # a live challenge, not the answer's
    replay = passkey_login(client, answer)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid"
    assert signed_in_user_id(client) is None

    cloned = authenticator.assert_(login_challenge(client), count=1)
    refused = passkey_login(client, cloned)
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": passkeys.REFUSED_COUNTER,
        "code": "sign_count",
    }
    assert signed_in_user_id(client) is None
    assert Passkey.objects.get(user=user).sign_count == 1
    assert rejected("challenge").count() == 1
    assert rejected("invalid").count() == 1
    assert rejected("sign_count").get().actor == user
    assert AuditEvent.objects.filter(event_type="auth.login.success").count() == 1


def test_an_answer_for_another_accounts_credential_is_refused(client):
    alice, bob = UserFactory(), UserFactory()
    alice_key, bob_key = enrolled(alice), enrolled(bob)

    # Signed by Alice's key, naming Bob's credential.
    forged = alice_key.assert_(login_challenge(client), credential_id=bob_key.id)
    response = passkey_login(client, forged)
    assert response.status_code == 400 and response.json()["code"] == "wrong_user"
    # The same without the user handle: Bob's public key does not verify it.
    forged = alice_key.assert_(login_challenge(client), credential_id=bob_key.id)
    forged["response"]["userHandle"] = None
    response = passkey_login(client, forged)
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert signed_in_user_id(client) is None

    # Alice passed her password and owes a second factor: Bob's passkey,
    # validly signed, does not pay it.
    TOTPDevice.objects.create(user=alice, name="app", confirmed=True)
    client.post(
        reverse("accounts:login"), {"username": alice.email, "password": PASSWORD}
    )
    answer = bob_key.assert_(login_challenge(client, step="2fa"))
    response = passkey_login(client, answer, step="2fa")
    assert response.status_code == 400
    assert response.json()["detail"] == passkeys.REFUSED_UNKNOWN
    assert signed_in_user_id(client) is None
    assert rejected("wrong_user").count() == 2
    assert Passkey.objects.get(user=bob).sign_count == 0

    # An unknown credential.
    stranger = SoftAuthenticator()
    response = passkey_login(client, stranger.assert_(login_challenge(client)))
    assert response.json()["code"] == "unknown_credential"


def test_stale_forged_and_misused_challenges_are_refused(client):
    user = UserFactory()
    authenticator = enrolled(user)

    # No challenge asked for.
    response = passkey_login(client, authenticator.assert_("A" * 43))
    assert response.json()["code"] == "challenge"

    # A challenge the site never made; and the real one is spent by that try
    # (single use: no second guess against it).
    challenge = login_challenge(client)
    response = passkey_login(client, authenticator.assert_("A" * 43))
    assert response.json()["code"] == "invalid"
    response = passkey_login(client, authenticator.assert_(challenge))
    assert response.json()["code"] == "challenge"

    # A stale one.
    challenge = login_challenge(client)
    session = client.session
    session[passkeys.CHALLENGE]["at"] -= passkeys.CHALLENGE_SECONDS + 1
    session.save()
    response = passkey_login(client, authenticator.assert_(challenge))
    assert response.json()["code"] == "challenge"

    # A challenge made for the second step, spent on a sign-in without one.
    TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    client.post(
        reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
    )
    challenge = login_challenge(client, step="2fa")
    response = passkey_login(client, authenticator.assert_(challenge))
    assert response.json()["code"] == "challenge"

    # From another origin (a phishing site relaying the challenge).
    challenge = login_challenge(client)
    answer = authenticator.assert_(challenge, origin="https://kreo.evil.example")
    response = passkey_login(client, answer)
    assert response.json()["code"] == "invalid"
    assert signed_in_user_id(client) is None
    assert rejected("challenge").count() == 4
    assert rejected("invalid").count() == 2


def test_a_passkey_is_a_second_factor(client):
    """A user whose only device is a passkey owes it after the password."""
    user = UserFactory(is_staff=True)
    authenticator = enrolled(user)
    first = client.post(
        reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
    )
    assert first["Location"].startswith(reverse("accounts:login-otp"))
    assert signed_in_user_id(client) is None
    page = client.get(reverse("accounts:login-otp")).content.decode()
    assert "Use a passkey" in page and "recovery codes" not in page
    options = _options(client, "accounts:passkey-login-options", step="2fa")
    assert [c["id"] for c in options["allowCredentials"]] == [authenticator.id]
    response = passkey_login(
        client, authenticator.assert_(options["challenge"]), step="2fa"
    )
    assert response.status_code == 200, response.content
    assert signed_in_user_id(client) == str(user.pk)
    assert client.get(reverse("accounts:security")).status_code == 200
    assert AuditEvent.objects.get(event_type="auth.login.success").details == {
        "otp": True,
        "device": "Passkey",
    }


def test_second_step_options_need_a_pending_sign_in(client):
    response = client.post(reverse("accounts:passkey-login-options"), {"step": "2fa"})
    assert response.status_code == 400


def test_staff_can_enrol_with_a_passkey_instead_of_an_app(client):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("accounts:security"))["Location"] == reverse(
        "accounts:otp-enrol"
    )
    assert (
        "Or use a passkey" in client.get(reverse("accounts:otp-enrol")).content.decode()
    )
    add_passkey(client)
    assert client.get(reverse("accounts:security")).status_code == 200


def test_a_session_that_skipped_the_second_factor_cannot_add_one(client):
    user = UserFactory()
    TOTPDevice.objects.create(user=user, name="app", confirmed=True)
    client.force_login(user)  # not OTP-verified
    response = client.post(reverse("accounts:passkey-register-options"))
    assert response.status_code == 400
    assert response.json()["code"] == "unverified_session"
    assert not Passkey.objects.exists()


def test_a_locked_account_cannot_sign_in_with_a_passkey(client):
    from datetime import timedelta

    from django.utils import timezone

    user = UserFactory()
    authenticator = enrolled(user)
    user.locked_until = timezone.now() + timedelta(minutes=5)
    user.save()
    response = passkey_login(client, authenticator.assert_(login_challenge(client)))
    assert response.json()["code"] == "locked"
    assert signed_in_user_id(client) is None


def test_passkey_sign_in_is_rate_limited(client, settings):
    settings.ACCOUNTS_RATES = {**settings.ACCOUNTS_RATES, "login-ip": "2/h"}
    user = UserFactory()
    authenticator = enrolled(user)
    codes = []
    for _ in range(3):
        challenge = login_challenge(client)
        answer = authenticator.assert_(challenge, origin="https://evil.example")
        codes.append(passkey_login(client, answer).status_code)
    assert codes == [400, 400, 429]
    assert AuditEvent.objects.filter(event_type="auth.ratelimit.hit").exists()


def test_malformed_answers_are_bad_requests(client):
    for body in ("not json", json.dumps([1]), json.dumps({"credential": "x"})):
        response = client.post(
            reverse("accounts:passkey-login"), body, content_type="application/json"
        )
        assert response.status_code == 400
    login_challenge(client)
    response = passkey_login(client, {"id": ["no"], "response": "no"})
    assert response.status_code == 400 and response.json()["code"] in {
        "invalid",
        "unknown_credential",
    }
    assert signed_in_user_id(client) is None


def test_an_answer_replayed_by_a_concurrent_request_is_refused(client):
    """Two requests of one session at once both read the challenge before
    either saves the session: the second is refused even where the counter
    cannot tell (an authenticator without one, always 0)."""
    user = UserFactory()
    authenticator = enrolled(user)
    challenge = login_challenge(client)
    stored = dict(client.session[passkeys.CHALLENGE])
    answer = authenticator.assert_(challenge, count=0)
    assert passkey_login(client, answer).status_code == 200
    session = client.session
    session[passkeys.CHALLENGE] = stored  # as the concurrent request read it
    session.save()
    replay = passkey_login(client, answer)
    assert replay.status_code == 400 and replay.json()["code"] == "challenge"
    assert AuditEvent.objects.filter(event_type="auth.login.success").count() == 1


def test_turning_two_factor_off_removes_passkeys_too(client):
    user = UserFactory()
    client.force_login(user)
    add_passkey(client)  # the session is now verified by it
    page = client.get(reverse("accounts:security")).content.decode()
    assert "with your passkey" in page
    client.post(reverse("accounts:otp-disable"), {"password": PASSWORD})
    assert not Passkey.objects.filter(user=user).exists()
    removed = AuditEvent.objects.get(event_type="auth.2fa.removed")
    assert removed.details == {"passkeys": 1}
