"""Single sign-on through a real OpenID Provider over HTTP: code flow with
PKCE, kc_idp_hint, identity by (issuer, subject), roles to groups."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group

from accounts.models import User
from accounts.oidc.models import Identity
from audit.models import AuditEvent
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso
TIMEOUT = 30


def _account(provider, sub, **fields):
    fields.setdefault("email", f"{fields.get('login', sub)}@example.com")
    fields.setdefault("email_verified", True)
    fields.setdefault("realm_roles", ["kreo-user"])
    return provider.account(sub, **fields)


def test_code_flow_with_pkce_signs_in_and_sends_idp_hint(sso, live_server):
    """ "Continue with Google" runs the code flow with PKCE S256, state and
    nonce; the IdP receives kc_idp_hint=google; the user lands signed in."""
    _account(sso, "sub-alice", login="alice", name="Alice Example")
    session = requests.Session()
    callback = idp_login(
        session, live_server, "alice", start="/oidc/authenticate/?idp=google"
    )
    auth = sso.seen()["authorization"][-1]
    assert auth["kc_idp_hint"] == "google"
    assert auth["code_challenge_method"] == "S256"
    assert len(auth["code_challenge"]) == 43
    assert auth["state"] and auth["nonce"]
    assert auth["response_type"] == "code"
    assert parse_qs(urlsplit(callback).query)["state"] == [auth["state"]]

    page = session.get(callback)
    assert page.status_code == 200
    assert urlsplit(page.url).path == "/projects/"
    assert "alice@example.com" in page.text
    user = User.objects.get(email="alice@example.com")
    assert user.full_name == "Alice Example"
    assert not user.has_usable_password()
    identity = Identity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (sso.url, "sub-alice")
    assert identity.roles == ["kreo-user"]
    success = AuditEvent.objects.filter(event_type="auth.sso.success").last()
    assert success.actor_id == user.pk
    assert success.details["subject"] == "sub-alice"


def test_each_button_sends_its_configured_alias(sso, live_server, settings):
    """Every login button names its broker; aliases come from settings."""
    settings.KREO_OIDC_IDP_HINTS = {"microsoft": "azure-ad", "company": "acme-saml"}
    page = requests.get(f"{live_server.url}/accounts/login/", timeout=TIMEOUT)
    assert "Continue with Microsoft" in page.text
    assert "Company single sign-on" in page.text
    assert "Continue with Google" not in page.text
    for key, alias in settings.KREO_OIDC_IDP_HINTS.items():
        requests.get(f"{live_server.url}/oidc/authenticate/?idp={key}", timeout=TIMEOUT)
        assert sso.seen()["authorization"][-1]["kc_idp_hint"] == alias
    unknown = requests.get(
        f"{live_server.url}/oidc/authenticate/?idp=facebook", timeout=TIMEOUT
    )
    assert unknown.status_code == 400
    assert "Unknown sign-in provider." in unknown.text


def test_roles_map_to_groups_and_staff(sso, live_server):
    """kreo-admin gives staff and the Admin group; kreo-auditor the Auditor
    group; a client role counts as much as a realm role."""
    _account(
        sso,
        "sub-ada",
        login="ada",
        realm_roles=["kreo-admin", "offline"],
        client_roles=["kreo-auditor"],
        amr=["pwd", "otp"],
    )
    session = requests.Session()
    session.get(idp_login(session, live_server, "ada"))
    user = User.objects.get(email="ada@example.com")
    assert user.is_staff
    assert set(user.groups.values_list("name", flat=True)) == {"Admin", "Auditor"}
    roles_event = AuditEvent.objects.filter(event_type="auth.sso.roles").last()
    assert roles_event.details["groups_added"] == ["Admin", "Auditor"]


def test_same_subject_same_user_even_if_email_changes(sso, live_server):
    """The second sign-in finds the user by (issuer, subject); a changed
    email at the IdP does not make a new account."""
    _account(sso, "sub-bob", login="bob", email="bob@example.com")
    first = requests.Session()
    first.get(idp_login(first, live_server, "bob"))
    _account(sso, "sub-bob", login="bob", email="robert@example.com")
    second = requests.Session()
    second.get(idp_login(second, live_server, "bob"))
    assert User.objects.filter(sso_identities__subject="sub-bob").count() == 1
    assert not User.objects.filter(email="robert@example.com").exists()
    assert Identity.objects.get(subject="sub-bob").email == "robert@example.com"


def test_groups_outside_the_mapping_are_kept(sso, live_server):
    """Groups given by hand in the admin survive SSO role mapping."""
    _account(sso, "sub-carol", login="carol")
    session = requests.Session()
    session.get(idp_login(session, live_server, "carol"))
    user = User.objects.get(email="carol@example.com")
    user.groups.add(Group.objects.create(name="Estimators"))
    session = requests.Session()
    session.get(idp_login(session, live_server, "carol"))
    assert list(user.groups.values_list("name", flat=True)) == ["Estimators"]


def test_role_mapping_comes_from_settings(sso, live_server, settings):
    """A mapping set in the environment (KREO_OIDC_ROLE_GROUPS) is the one
    applied: a new role grants its group, and only listed roles let in."""
    settings.KREO_OIDC_ROLE_GROUPS = {"estimator": "Estimators"}
    settings.KREO_OIDC_STAFF_ROLES = []
    _account(sso, "sub-erin", login="erin", client_roles=["estimator"])
    session = requests.Session()
    page = session.get(idp_login(session, live_server, "erin"))
    assert urlsplit(page.url).path == "/projects/"
    user = User.objects.get(email="erin@example.com")
    assert list(user.groups.values_list("name", flat=True)) == ["Estimators"]
    assert not user.is_staff
    _account(sso, "sub-kim", login="kim", realm_roles=["kreo-user"])
    refused = requests.Session()
    page = refused.get(idp_login(refused, live_server, "kim"))
    assert page.status_code == 403
