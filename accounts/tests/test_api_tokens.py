"""API tokens: listed on the security page, revoked one by one by their owner,
and revoked when the password is reset or changed, the account is locked out,
deactivated or deleted; their lifetime is a setting (7 days by default)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from accounts import api_tokens, services
from accounts.models import ApiTokenUse, User
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent, Outcome

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new long password 7"


def signed_in(user, password=PASSWORD, **extra) -> Client:
    client = Client(**extra)
    response = client.post(
        reverse("accounts:login"), {"username": user.email, "password": password}
    )
    assert response.status_code == 302
    return client


def issue(client: Client) -> str:
    response = client.post(reverse("api:token-create"))
    assert response.status_code == 201
    return response.json()["token"]


def api_status(token: str) -> int:
    response = Client().get(
        reverse("api:project-list"), HTTP_AUTHORIZATION=f"Token {token}"
    )
    return response.status_code


def revocations(reason: str):
    return AuditEvent.objects.filter(
        event_type="api.token.revoke", details__reason=reason
    )


def test_a_token_lives_seven_days_by_default_and_as_long_as_configured(db, settings):
    """Issued tokens expire KREO_API_TOKEN_TTL_SECONDS after issue: 7 days by
    default; a token past its expiry answers 401 and is gone."""
    user = UserFactory()
    client = signed_in(user)
    before = timezone.now()
    issue(client)
    token = AuthToken.objects.get(user=user)
    assert abs(token.expiry - (before + timedelta(days=7))) < timedelta(seconds=30)

    settings.KREO_API_TOKEN_TTL_SECONDS = 60
    short = issue(client)
    assert api_status(short) == 200
    AuthToken.objects.filter(user=user, token_key=short[:15]).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    assert api_status(short) == 401
    assert not AuthToken.objects.filter(token_key=short[:15]).exists()


def test_the_security_page_lists_tokens_and_revokes_one_by_one(db):
    """The page lists each token with its creation, last use and expiry; a
    POST with the CSRF token revokes that one only: it answers 401 at once,
    the other keeps working, and the revocation is audited."""
    user = UserFactory()
    client = signed_in(user)
    client.handler.enforce_csrf_checks = True  # from here on, as browsers do
    page = client.get(reverse("accounts:security"))
    csrf = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
    )
    headers = {"HTTP_X_CSRFTOKEN": csrf.group(1)}
    first = client.post(reverse("api:token-create"), **headers).json()["token"]
    second = client.post(reverse("api:token-create"), **headers).json()["token"]
    assert api_status(first) == 200

    page = client.get(reverse("accounts:security")).content.decode()
    rows = re.findall(r'<tr data-token="([0-9a-f]{16})">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    used = {ident: body for ident, body in rows}
    first_id = api_tokens.public_id(AuthToken.objects.get(token_key=first[:15]))
    second_id = api_tokens.public_id(AuthToken.objects.get(token_key=second[:15]))
    today = timezone.now().strftime("%Y-%m-%d")
    assert used[first_id].count(today) == 2  # created and last used today
    assert "never" in used[second_id]  # never used yet
    expiry = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%d")
    assert expiry in used[first_id]

    url = reverse("accounts:api-token-revoke", args=[first_id])
    forged = client.post(url)  # no CSRF token
    assert forged.status_code == 403
    assert api_status(first) == 200
    assert client.get(url).status_code == 405

    page = client.get(reverse("accounts:security")).content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    done = client.post(url, {"csrfmiddlewaretoken": csrf})
    assert done.status_code == 302
    assert api_status(first) == 401
    assert api_status(second) == 200
    (event,) = revocations("owner")
    assert event.details["tokens"] == [first_id]
    assert event.actor_id == user.pk


def test_nobody_can_revoke_someone_elses_token(db):
    """Another user's token id, a made-up id or a malformed one answers 404
    and revokes nothing."""
    owner, attacker = UserFactory(), UserFactory()
    token = issue(signed_in(owner))
    ident = api_tokens.public_id(AuthToken.objects.get(user=owner))
    client = signed_in(attacker)
    for target in (ident, "0" * 16, ident[:15], "../" + ident[:13]):
        url = f"/accounts/security/api-tokens/{target}/revoke/"
        assert client.post(url).status_code == 404, target
    assert api_status(token) == 200
    assert not revocations("owner").exists()


def test_the_last_use_is_recorded_at_most_once_a_minute(db):
    """The first use records the time; uses within a minute write nothing
    more; a use a minute later records the new time."""
    user = UserFactory()
    token = issue(signed_in(user))
    use = ApiTokenUse.objects.get(token__user=user)
    assert use.last_used_at is None
    assert api_status(token) == 200
    first = ApiTokenUse.objects.get(pk=use.pk).last_used_at
    assert first is not None
    assert api_status(token) == 200
    assert ApiTokenUse.objects.get(pk=use.pk).last_used_at == first
    earlier = first - timedelta(seconds=61)
    ApiTokenUse.objects.filter(pk=use.pk).update(last_used_at=earlier)
    assert api_status(token) == 200
    assert ApiTokenUse.objects.get(pk=use.pk).last_used_at > first


def test_a_token_used_after_a_password_reset_answers_401(
    db, smtp, siteverify, mail_now
):
    """Through the real reset: request it, follow the mailed link, set a new
    password; the token issued before answers 401 and the revocation is
    audited with its reason."""
    user = UserFactory()
    token = issue(signed_in(user))
    assert api_status(token) == 200
    anonymous = Client()
    with mail_now():
        anonymous.post(
            reverse("accounts:password-reset"),
            {"email": user.email, "g-recaptcha-response": "solved-captcha"},
        )
    (mail,) = smtp.to(user.email)
    link = re.search(r"https?://testserver(\S+)", smtp.body(mail)).group(1)
    form = anonymous.get(link, follow=True)
    set_url = form.redirect_chain[-1][0]
    done = anonymous.post(
        set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302

    response = Client().get(
        reverse("api:project-list"), HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert not AuthToken.objects.filter(user=user).exists()
    assert revocations("password_reset").count() == 1


def test_a_password_change_revokes_the_tokens(db):
    """Changing the password on its page revokes every token."""
    user = UserFactory()
    client = signed_in(user)
    token = issue(client)
    response = client.post(
        reverse("accounts:password-change"),
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert api_status(token) == 401
    assert revocations("password_changed").count() == 1


def test_a_password_set_by_another_path_stops_the_token_at_use(db):
    """A password set where no service runs (the admin, ``changepassword``)
    still stops the token: its next use answers 401, revokes it and says so
    in the audit trail."""
    user = UserFactory()
    token = issue(signed_in(user))
    user.set_password(NEW_PASSWORD)
    user.save()
    response = Client().get(
        reverse("api:project-list"), HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 401
    assert "password was changed" in response.json()["detail"]
    assert not AuthToken.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(
        event_type="api.token.revoke", outcome=Outcome.DENIED
    )
    assert event.error_code == "password_changed"


def test_a_lockout_revokes_the_tokens(db):
    """Locking the account out revokes its tokens."""
    user = UserFactory()
    token = issue(signed_in(user))
    services.user_lock(request=None, user=user)
    assert api_status(token) == 401
    assert revocations("locked_out").count() == 1


def test_a_locked_account_cannot_use_a_token_issued_in_its_lockout(db):
    """A token that somehow outlived a lockout is refused while it lasts."""
    user = UserFactory()
    token = issue(signed_in(user))
    User.objects.filter(pk=user.pk).update(
        locked_until=timezone.now() + timedelta(minutes=10)
    )
    assert api_status(token) == 401
    User.objects.filter(pk=user.pk).update(locked_until=None)
    assert api_status(token) == 200


def test_deactivation_in_the_admin_revokes_the_tokens(db, otp_login):
    """Staff untick "active" in the admin: the user's tokens are revoked."""
    admin = UserFactory(is_staff=True, is_superuser=True)
    user = UserFactory()
    token = issue(signed_in(user))
    client = Client()
    otp_login(client, admin)
    url = reverse("admin:accounts_user_change", args=[user.pk])
    assert client.get(url).status_code == 200
    # The change form with "active" unticked (an unticked box is not sent).
    data = {"email": user.email, "full_name": user.full_name}
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not User.objects.get(pk=user.pk).is_active
    assert api_status(token) == 401
    assert revocations("deactivated").count() == 1


def test_account_deletion_revokes_the_tokens(db):
    """Deleting the account revokes its tokens (audited) before the row goes."""
    user = UserFactory()
    client = signed_in(user)
    token = issue(client)
    response = client.post(
        reverse("privacy:account-delete"), {"password": PASSWORD, "confirm": "DELETE"}
    )
    assert response.status_code == 302
    assert api_status(token) == 401
    assert revocations("account_deleted").count() == 1


def test_revoking_the_token_in_use_is_audited(db):
    """POST /api/auth/token/revoke/ with the token revokes it, audited."""
    user = UserFactory()
    token = issue(signed_in(user))
    response = Client().post(
        reverse("api:token-revoke"), HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert response.status_code == 204
    assert api_status(token) == 401
    assert revocations("owner").count() == 1


def test_a_tampered_or_made_up_token_answers_401(db):
    """A token with one character changed, one cut short and one made up
    answer 401 and leave the real token and its last use untouched."""
    user = UserFactory()
    token = issue(signed_in(user))
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    for forged in (flipped, token[:20], "f" * len(token), token + "00"):
        assert api_status(forged) == 401, forged
    assert ApiTokenUse.objects.get(token__user=user).last_used_at is None
    assert api_status(token) == 200
