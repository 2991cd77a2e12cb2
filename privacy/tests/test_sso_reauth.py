"""Deleting an SSO account after signing in again at the identity provider.

The provider is the real test OpenID Provider; the browser is a requests
session against the live server. Every refusal leaves the account in place
and leaves an audit event with its reason.
"""

import re
import time
from importlib import import_module
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests
from django.conf import settings

from accounts.models import User
from accounts.oidc import errors, reauth
from accounts.oidc.models import Identity
from accounts.oidc.views import REAUTHENTICATED
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent
from privacy import services
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import follow_to_callback, idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso

DELETE_PATH = "/privacy/delete-account/"


def _text(response) -> str:
    return response.text.replace("&#x27;", "'")


def _csrf(page) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def _idp_account(provider, sub: str, login: str) -> None:
    provider.account(
        sub,
        login=login,
        email=f"{login}@corp.example",
        email_verified=True,
        realm_roles=["kreo-user"],
    )


def _sso_user(provider, live_server, sub: str, login: str):
    """An account made by signing in through SSO (no usable password)."""
    _idp_account(provider, sub, login)
    session = requests.Session()
    home = session.get(idp_login(session, live_server, login))
    assert urlsplit(home.url).path == "/projects/", home.text
    user = User.objects.get(sso_identities__subject=sub)
    assert not user.has_usable_password()
    return session, user


def _password_user(live_server, email: str):
    user = UserFactory(email=email)
    session = requests.Session()
    login = f"{live_server.url}/accounts/login/"
    page = session.get(login)
    done = session.post(
        login,
        data={
            "csrfmiddlewaretoken": _csrf(page),
            "username": email,
            "password": PASSWORD,
        },
    )
    assert urlsplit(done.url).path == "/projects/", done.text
    return session, user


def _reauth_callback(session, live_server, login: str) -> str:
    """Press "Confirm with your sign-in provider", sign in at the IdP as
    ``login``; return the callback URL the IdP sends back (not followed).

    The IdP already has a session for this browser: the login form shows
    anyway (prompt=login).
    """
    page = session.get(f"{live_server.url}{DELETE_PATH}")
    assert "Confirm with your sign-in provider" in page.text
    start = session.post(
        f"{live_server.url}/oidc/reauth/",
        data={"csrfmiddlewaretoken": _csrf(page), "next": DELETE_PATH},
        allow_redirects=False,
    )
    assert start.status_code == 302, start.text
    callback = f"{live_server.url}/oidc/callback/"
    form = follow_to_callback(session, start.headers["Location"], callback)
    assert not isinstance(form, str), "the IdP skipped its login form"
    action = form.text.split('action="', 1)[1].split('"', 1)[0]
    signed = session.post(
        urljoin(form.url, action), data={"login": login}, allow_redirects=False
    )
    assert signed.status_code in (302, 303), signed.text
    url = follow_to_callback(
        session, urljoin(form.url, signed.headers["Location"]), callback
    )
    if not isinstance(url, str) and "Submitting Callback" in url.text:
        # Another account than the IdP session's: the provider ends its
        # session first, with a self-submitting form (as a browser would).
        action = re.search(r'action="([^"]+)"', url.text)[1]
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', url.text))
        ended = session.post(action, data=fields, allow_redirects=False)
        url = follow_to_callback(
            session, urljoin(action, ended.headers["Location"]), callback
        )
    assert isinstance(url, str), url.text
    return url


def _post_delete(session, live_server, **data):
    page = session.get(f"{live_server.url}{DELETE_PATH}")
    return session.post(
        f"{live_server.url}{DELETE_PATH}",
        data={"csrfmiddlewaretoken": _csrf(page), **data},
    )


def _session_store(session):
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session.cookies[settings.SESSION_COOKIE_NAME])


def _last(event_type: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_type=event_type).order_by("pk").last()


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_delete_refused(session, live_server, user, code: str) -> None:
    """DELETE without a good marker: refused, account intact, audited."""
    response = _post_delete(session, live_server, confirm="DELETE")
    assert urlsplit(response.url).path == DELETE_PATH
    assert services.REAUTH_REQUIRED in _text(response)
    assert User.objects.filter(pk=user.pk).exists()
    event = _last("account.delete")
    assert event.outcome == "denied" and event.error_code == code
    assert event.target_id == str(user.pk)


def test_sso_user_deletes_after_a_fresh_login_at_the_provider(sso, live_server):
    """An SSO-only account sees no password field, confirms at the IdP
    (prompt=login, max_age=0, its own state and nonce), then DELETE deletes."""
    session, user = _sso_user(sso, live_server, "s-del-1", "dora")
    page = session.get(f"{live_server.url}{DELETE_PATH}")
    assert 'type="password"' not in page.text
    assert "Confirm with your sign-in provider" in page.text

    back = session.get(_reauth_callback(session, live_server, "dora"))
    assert urlsplit(back.url).path == DELETE_PATH
    assert REAUTHENTICATED in _text(back)
    assert 'id="reauth-done"' in back.text
    asked = sso.seen()["authorization"]
    sign_in, again = asked[-2], asked[-1]
    assert again["prompt"] == "login" and again["max_age"] == "0"
    assert again["code_challenge_method"] == "S256"
    assert again["state"] != sign_in["state"] and again["nonce"] != sign_in["nonce"]

    done = _post_delete(session, live_server, confirm="DELETE")
    assert urlsplit(done.url).path == "/accounts/login/"
    assert not User.objects.filter(pk=user.pk).exists()
    assert not Identity.objects.filter(subject="s-del-1").exists()
    assert _last("auth.sso.reauth").details["subject"] == "s-del-1"
    deleted = _last("account.delete")
    assert deleted.outcome == "success" and deleted.details["via"] == "sso"


def test_post_without_confirmation_is_refused(sso, live_server):
    """DELETE from an SSO account that has not confirmed at the IdP."""
    session, user = _sso_user(sso, live_server, "s-del-2", "dan")
    check_delete_refused(session, live_server, user, "reauth_missing")


def test_wrong_and_replayed_state_are_refused(sso, live_server):
    """A callback with a state this session never sent, or sent and already
    used, gives no confirmation."""
    session, user = _sso_user(sso, live_server, "s-del-3", "sam")
    callback = _reauth_callback(session, live_server, "sam")
    forged = session.get(_with_query(callback, state="forged-state"))
    assert forged.status_code == 400
    assert _last("auth.sso.failure").error_code == "state_mismatch"
    check_delete_refused(session, live_server, user, "reauth_missing")

    session.get(callback)  # the genuine answer: confirmed
    replay = session.get(callback)
    assert replay.status_code == 400
    assert _last("auth.sso.failure").error_code == "state_mismatch"
    assert (
        AuditEvent.objects.filter(
            event_type="auth.sso.reauth", outcome="success", details__step="callback"
        ).count()
        == 1
    )
    assert User.objects.filter(pk=user.pk).exists()


def test_login_as_someone_else_at_the_provider_is_refused(sso, live_server):
    """Signing in at the IdP as another person (other subject) confirms
    nothing, even when that person has a Kreo account too."""
    session, user = _sso_user(sso, live_server, "s-del-4", "vic")
    _sso_user(sso, live_server, "s-del-4b", "mallory")
    back = session.get(_reauth_callback(session, live_server, "mallory"))
    assert urlsplit(back.url).path == DELETE_PATH
    assert errors.REAUTH_WRONG_USER in _text(back)
    assert 'id="reauth-done"' not in back.text
    event = _last("auth.sso.reauth")
    assert event.outcome == "denied" and event.error_code == "reauth_wrong_user"
    assert event.actor_id == user.pk
    check_delete_refused(session, live_server, user, "reauth_missing")


@pytest.mark.parametrize("offset", [-3600, -90], ids=["hour-old", "before-request"])
def test_old_auth_time_is_refused(sso, live_server, offset):
    """An ID token whose sign-in is an hour old, or older than the request
    that asked for it (an IdP that ignored prompt=login), confirms nothing."""
    session, user = _sso_user(sso, live_server, f"s-del-5{offset}", f"otto{offset}")
    callback = _reauth_callback(session, live_server, f"otto{offset}")
    sso.next_id_token(authTimeOffset=offset)
    back = session.get(callback)
    assert errors.REAUTH_STALE in _text(back)
    assert _last("auth.sso.reauth").error_code == "reauth_stale"
    check_delete_refused(session, live_server, user, "reauth_missing")


def test_sign_in_older_than_the_window_is_refused(sso, live_server, settings):
    """A sign-in made for this request, but longer ago than
    KREO_SSO_REAUTH_SECONDS when it comes back, confirms nothing."""
    settings.KREO_SSO_REAUTH_SECONDS = 1
    session, user = _sso_user(sso, live_server, "s-del-12", "walt")
    callback = _reauth_callback(session, live_server, "walt")
    time.sleep(2.1)
    back = session.get(callback)
    assert errors.REAUTH_STALE in _text(back)
    assert _last("auth.sso.reauth").error_code == "reauth_stale"
    assert User.objects.filter(pk=user.pk).exists()


def test_confirmation_works_once_even_from_a_restored_session(sso, live_server):
    """A confirmation spent by one attempt (here a mistyped DELETE) cannot be
    used again, even written back into the session."""
    session, user = _sso_user(sso, live_server, "s-del-6", "rita")
    session.get(_reauth_callback(session, live_server, "rita"))
    spent = _session_store(session)[reauth.MARKER]

    typo = _post_delete(session, live_server, confirm="DELET")
    assert services.CONFIRM_MISMATCH in _text(typo)
    check_delete_refused(session, live_server, user, "reauth_missing")

    store = _session_store(session)
    store[reauth.MARKER] = spent
    store.save()
    check_delete_refused(session, live_server, user, "reauth_replayed")


def test_expired_confirmation_is_refused(sso, live_server):
    """A confirmation older than KREO_SSO_REAUTH_SECONDS is refused."""
    session, user = _sso_user(sso, live_server, "s-del-7", "ezra")
    session.get(_reauth_callback(session, live_server, "ezra"))
    store = _session_store(session)
    marker = store[reauth.MARKER]
    marker["at"] = time.time() - settings.KREO_SSO_REAUTH_SECONDS - 1
    store[reauth.MARKER] = marker
    store.save()
    check_delete_refused(session, live_server, user, "reauth_expired")


def test_password_account_cannot_skip_its_password(sso, live_server):
    """An account without SSO cannot start a confirmation at the IdP, and a
    confirmation planted in its session, naming an identity it does not have,
    is refused: the password stays required."""
    session, user = _password_user(live_server, "pat@example.test")
    page = session.get(f"{live_server.url}{DELETE_PATH}")
    assert 'type="password"' in page.text
    assert "Confirm with your sign-in provider" not in page.text
    start = session.post(
        f"{live_server.url}/oidc/reauth/",
        data={"csrfmiddlewaretoken": _csrf(page), "next": DELETE_PATH},
        allow_redirects=False,
    )
    assert start.status_code == 403
    assert errors.REAUTH_NOT_LINKED in _text(start)
    assert _last("auth.sso.reauth").error_code == "reauth_not_linked"
    no_password = _post_delete(session, live_server, confirm="DELETE")
    assert no_password.status_code == 400
    assert services.WRONG_PASSWORD in _text(no_password)
    assert _last("account.delete").error_code == "wrong_password"

    _idp_account(sso, "s-del-8", "oscar")
    store = _session_store(session)
    store[reauth.MARKER] = {
        "id": "planted",
        "user": user.pk,
        "sub": "s-del-8",
        "at": time.time(),
    }
    store.save()
    check_delete_refused(session, live_server, user, "reauth_unlinked")


def test_confirmation_of_another_user_is_refused(sso, live_server):
    """A confirmation is bound to the account that asked for it."""
    session, user = _sso_user(sso, live_server, "s-del-10", "una")
    other_session, other = _sso_user(sso, live_server, "s-del-11", "olga")
    other_session.get(_reauth_callback(other_session, live_server, "olga"))
    store = _session_store(session)
    store[reauth.MARKER] = _session_store(other_session)[reauth.MARKER]
    store.save()
    check_delete_refused(session, live_server, user, "reauth_wrong_user")
    assert User.objects.filter(pk=other.pk).exists()


def test_linked_password_account_may_confirm_at_the_provider(sso, live_server):
    """An account with a password and linked SSO may confirm either way."""
    session, user = _password_user(live_server, "lee@example.test")
    Identity.objects.create(user=user, issuer=sso.url, subject="s-del-9")
    _idp_account(sso, "s-del-9", "lee")
    page = session.get(f"{live_server.url}{DELETE_PATH}")
    assert 'type="password"' in page.text
    back = session.get(_reauth_callback(session, live_server, "lee"))
    assert 'type="password"' not in back.text
    done = _post_delete(session, live_server, confirm="DELETE")
    assert urlsplit(done.url).path == "/accounts/login/"
    assert not User.objects.filter(pk=user.pk).exists()
