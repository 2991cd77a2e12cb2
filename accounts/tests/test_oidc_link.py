"""Linking an SSO identity to an existing account needs its owner signed in
(with 2FA when enrolled) and a click on the security page."""

import re
from urllib.parse import urlsplit

import pytest
import requests
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.oidc import errors
from accounts.oidc.models import Identity
from accounts.oidc.views import LINKED
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso


def _csrf(page) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def _password_login(session, live_server, user, device=None):
    login_url = f"{live_server.url}/accounts/login/"
    page = session.get(login_url)
    done = session.post(
        login_url,
        data={
            "csrfmiddlewaretoken": _csrf(page),
            "username": user.email,
            "password": PASSWORD,
        },
    )
    if device is not None:
        code = totp(device.bin_key, step=device.step, t0=device.t0, digits=6)
        done = session.post(
            done.url, data={"csrfmiddlewaretoken": _csrf(done), "token": f"{code:06d}"}
        )
    assert urlsplit(done.url).path == "/projects/", done.text


def _link(session, live_server, login):
    security = session.get(f"{live_server.url}/accounts/security/")
    assert "Link company single sign-on" in security.text
    start = session.post(
        f"{live_server.url}/oidc/link/",
        data={"csrfmiddlewaretoken": _csrf(security)},
        allow_redirects=False,
    )
    assert start.status_code == 302
    return idp_login(session, live_server, login, start=start.headers["Location"])


def test_owner_links_sso_from_the_security_page(sso, live_server):
    """The signed-in owner links an IdP account (any email); from then on
    SSO signs in to the same account."""
    owner = UserFactory(email="owner@example.com")
    sso.account(
        "s-link",
        login="owen",
        email="owen.work@corp.example",
        email_verified=True,
        realm_roles=["kreo-user"],
    )
    session = requests.Session()
    _password_login(session, live_server, owner)
    page = session.get(_link(session, live_server, "owen"))
    assert urlsplit(page.url).path == "/accounts/security/"
    assert LINKED in page.text
    identity = Identity.objects.get(subject="s-link")
    assert identity.user == owner
    assert "owen.work@corp.example" in page.text
    assert AuditEvent.objects.filter(
        event_type="auth.sso.linked", actor_id=owner.pk
    ).exists()

    fresh = requests.Session()
    home = fresh.get(idp_login(fresh, live_server, "owen"))
    assert urlsplit(home.url).path == "/projects/"
    assert "owner@example.com" in home.text


def test_owner_with_2fa_links_after_the_second_step(sso, live_server):
    """An account with TOTP links only from a session that passed the code."""
    owner = UserFactory(email="totp-owner@example.com")
    device = TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    sso.account(
        "s-link-2fa",
        login="tina",
        email="tina@corp.example",
        email_verified=True,
        realm_roles=["kreo-user"],
    )
    session = requests.Session()
    _password_login(session, live_server, owner, device=device)
    session.get(_link(session, live_server, "tina"))
    assert Identity.objects.get(subject="s-link-2fa").user == owner


def test_session_without_the_second_step_cannot_link(sso, client):
    """A session of a 2FA account that skipped the code may not start a link."""
    owner = UserFactory()
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    client.force_login(owner)
    response = client.post("/oidc/link/")
    assert response.status_code == 403
    assert errors.LINK_NEEDS_2FA in response.content.decode().replace("&#x27;", "'")


def test_identity_of_another_account_is_not_relinked(sso, live_server):
    """An IdP account already linked elsewhere cannot be linked again."""
    first_owner = UserFactory(email="first@example.com")
    Identity.objects.create(user=first_owner, issuer=sso.url, subject="s-taken")
    sso.account(
        "s-taken",
        login="tom",
        email="tom@corp.example",
        email_verified=True,
        realm_roles=["kreo-user"],
    )
    second = UserFactory(email="second@example.com")
    session = requests.Session()
    _password_login(session, live_server, second)
    page = session.get(_link(session, live_server, "tom"))
    assert page.status_code == 403
    assert errors.IDENTITY_TAKEN in page.text
    event = AuditEvent.objects.filter(event_type="auth.sso.failure").last()
    assert event.error_code == "identity_taken"
    assert Identity.objects.get(subject="s-taken").user == first_owner
    # The signed-in owner stays signed in.
    assert session.get(f"{live_server.url}/projects/").status_code == 200


def test_link_needs_a_signed_in_owner(sso, live_server):
    """Signed out, the link URL only sends to the login page: nothing opens."""
    session = requests.Session()
    page = session.get(f"{live_server.url}/accounts/login/")
    response = session.post(
        f"{live_server.url}/oidc/link/",
        data={"csrfmiddlewaretoken": _csrf(page)},
        allow_redirects=False,
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/accounts/login/")
