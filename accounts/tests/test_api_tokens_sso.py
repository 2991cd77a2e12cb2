"""API tokens issued under single sign-on follow the roles at the provider:
checked at each use, read again at the provider (refresh grant) once older
than KREO_OIDC_REFRESH_SECONDS, against the real test OpenID Provider."""

import re
import socket
import time

import pytest
import requests
from knox.models import AuthToken

from accounts import api_tokens
from accounts.models import ApiTokenUse, User
from accounts.oidc.models import Identity
from audit.models import AuditEvent, Outcome
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso


def _sso_token(provider, live_server, sub: str, roles: list[str]) -> str:
    provider.account(
        sub,
        login=sub,
        email=f"{sub}@example.com",
        email_verified=True,
        realm_roles=roles,
        amr=["pwd", "otp"],  # staff roles need a second factor at the provider
    )
    session = requests.Session()
    session.get(idp_login(session, live_server, sub))
    page = session.get(f"{live_server.url}/accounts/security/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    response = session.post(
        f"{live_server.url}/api/auth/token/", headers={"X-CSRFToken": csrf}
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def _call(live_server, token: str) -> requests.Response:
    return requests.get(
        f"{live_server.url}/api/projects/",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )


def test_a_token_stops_once_the_roles_that_allowed_access_are_gone(
    sso, live_server, settings
):
    """The token works; the role is removed at the provider; within the
    refresh interval the token still works (not asked yet); after it, the
    next use reads the roles at the provider, answers 401 saying why,
    revokes the token, takes the groups away and audits both."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 2
    token = _sso_token(sso, live_server, "tok-aud-1", ["kreo-auditor"])
    use = ApiTokenUse.objects.get()
    assert use.via_sso and use.identity is not None
    assert _call(live_server, token).status_code == 200
    user = User.objects.get(email="tok-aud-1@example.com")
    assert user.groups.filter(name="Auditor").exists()

    sso.account(
        "tok-aud-1",
        login="tok-aud-1",
        email="tok-aud-1@example.com",
        email_verified=True,
        realm_roles=[],
        amr=["pwd", "otp"],
    )
    assert _call(live_server, token).status_code == 200  # not asked again yet
    time.sleep(2.5)
    refused = _call(live_server, token)

    assert refused.status_code == 401
    assert api_tokens.WHY["sso_roles_removed"] in refused.json()["detail"]
    assert not AuthToken.objects.filter(user=user).exists()
    assert not user.groups.filter(name="Auditor").exists()
    event = AuditEvent.objects.get(
        event_type="api.token.revoke", outcome=Outcome.DENIED
    )
    assert event.error_code == "sso_roles_removed"
    roles = AuditEvent.objects.filter(event_type="auth.sso.roles").last()
    assert roles.details["groups_removed"] == ["Auditor"]


def test_roles_kept_at_the_provider_keep_the_token_working(sso, live_server, settings):
    """Past the interval the use asks the provider again (a rotated refresh
    token is stored, encrypted) and, the role still there, answers 200."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 1
    token = _sso_token(sso, live_server, "tok-user-2", ["kreo-user"])
    identity = Identity.objects.get(subject="tok-user-2")
    first = (identity.roles_checked_at, identity.refresh_token)
    assert first[1] and "." not in first[1][:8]  # stored sealed, not as issued
    time.sleep(1.5)

    assert _call(live_server, token).status_code == 200

    identity.refresh_from_db()
    assert identity.roles_checked_at > first[0]
    assert identity.refresh_token != first[1]
    assert AuthToken.objects.filter(user=identity.user).exists()


def test_a_provider_that_refuses_the_grant_revokes_the_token(
    sso, live_server, settings
):
    """A grant the provider no longer honours (here: none left, as after the
    provider ended the sign-in) revokes the token at its next use."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 1
    token = _sso_token(sso, live_server, "tok-user-3", ["kreo-user"])
    Identity.objects.filter(subject="tok-user-3").update(refresh_token="garbage")
    time.sleep(1.5)

    refused = _call(live_server, token)

    assert refused.status_code == 401
    assert api_tokens.WHY["sso_session_ended"] in refused.json()["detail"]
    assert not AuthToken.objects.exists()


def test_an_unreachable_provider_refuses_without_revoking(sso, live_server, settings):
    """With the provider's token endpoint down past the interval, the use is
    refused (401, try again) but the token stays; with it back, it works."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 1
    token = _sso_token(sso, live_server, "tok-user-4", ["kreo-user"])
    endpoint = settings.OIDC_OP_TOKEN_ENDPOINT
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{closed}/token"
    time.sleep(1.5)

    refused = _call(live_server, token)
    assert refused.status_code == 401
    assert refused.json()["detail"] == api_tokens.SSO_UNCONFIRMED
    assert AuthToken.objects.exists()

    settings.OIDC_OP_TOKEN_ENDPOINT = endpoint
    assert _call(live_server, token).status_code == 200


def test_the_role_removed_at_a_browser_refresh_revokes_at_once(
    sso, live_server, settings
):
    """When a session refresh learns that no allowed role is left, the
    tokens issued under that identity are revoked there and then."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 1
    sso.account(
        "tok-user-5",
        login="tok-user-5",
        email="tok-user-5@example.com",
        email_verified=True,
        realm_roles=["kreo-user"],
    )
    session = requests.Session()
    session.get(idp_login(session, live_server, "tok-user-5"))
    page = session.get(f"{live_server.url}/accounts/security/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    created = session.post(
        f"{live_server.url}/api/auth/token/", headers={"X-CSRFToken": csrf}
    )
    assert created.status_code == 201
    sso.account(
        "tok-user-5",
        login="tok-user-5",
        email="tok-user-5@example.com",
        email_verified=True,
        realm_roles=[],
    )
    time.sleep(1.5)
    assert "no role in Kreo" in session.get(f"{live_server.url}/projects/").text
    assert not AuthToken.objects.exists()
    event = AuditEvent.objects.get(event_type="api.token.revoke")
    assert event.details["reason"] == "sso_roles_removed"
