"""SSO sessions: roles re-read at the IdP after the refresh interval, MFA
from amr for staff, and sign-out that ends the IdP session too."""

import re
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from accounts.admin_site import ADMIN_NEEDS_OTP
from accounts.models import User
from audit.models import AuditEvent
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso
AUDIT_PAGE = "/admin/audit/auditevent/"


def _account(provider, sub, **fields):
    fields.setdefault("login", sub)
    fields.setdefault("email", f"{fields['login']}@example.com")
    fields.setdefault("email_verified", True)
    return provider.account(sub, **fields)


def _csrf(session, url) -> str:
    page = session.get(url)
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]


def _signed_in_auditor(sso, live_server, sub, login):
    _account(sso, sub, login=login, realm_roles=["kreo-auditor"], amr=["pwd", "otp"])
    session = requests.Session()
    session.get(idp_login(session, live_server, login))
    page = session.get(f"{live_server.url}{AUDIT_PAGE}")
    assert page.status_code == 200, page.text
    assert "Select audit event to view" in page.text
    return session


def test_role_removed_at_the_idp_is_gone_after_the_refresh_interval(
    sso, live_server, settings
):
    """An auditor whose role is removed in the IdP keeps access until the
    refresh interval passes; the next request then re-reads the roles
    (prompt=none) and the audit pages are gone."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 2
    session = _signed_in_auditor(sso, live_server, "s-aud-1", "audrey")
    _account(sso, "s-aud-1", login="audrey", realm_roles=["kreo-user"], amr=["pwd"])
    # Within the interval: the app has not asked the IdP again yet.
    assert session.get(f"{live_server.url}{AUDIT_PAGE}").status_code == 200
    time.sleep(2.5)
    page = session.get(f"{live_server.url}{AUDIT_PAGE}")
    refresh = sso.seen()["authorization"][-1]
    assert refresh["prompt"] == "none"
    assert page.status_code == 403
    assert ADMIN_NEEDS_OTP in page.text
    user = User.objects.get(email="audrey@example.com")
    assert not user.is_staff
    assert not user.groups.filter(name="Auditor").exists()
    event = AuditEvent.objects.filter(event_type="auth.sso.roles").last()
    assert event.details["groups_removed"] == ["Auditor"]
    assert AuditEvent.objects.filter(event_type="auth.sso.refresh").exists()
    # Still signed in as a normal user.
    assert session.get(f"{live_server.url}/projects/").status_code == 200


def test_last_role_removed_ends_the_session_at_refresh(sso, live_server, settings):
    """With no allowed role left, the refresh signs the user out with the
    no-role page, and the audit trail says why."""
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 1
    session = _signed_in_auditor(sso, live_server, "s-aud-2", "audra")
    _account(sso, "s-aud-2", login="audra", realm_roles=[], amr=["pwd", "otp"])
    time.sleep(1.5)
    page = session.get(f"{live_server.url}{AUDIT_PAGE}")
    assert page.status_code == 403
    assert "no role in Kreo" in page.text
    failure = AuditEvent.objects.filter(event_type="auth.sso.failure").last()
    assert failure.error_code == "no_allowed_role"
    assert failure.actor_id == User.objects.get(email="audra@example.com").pk
    again = session.get(f"{live_server.url}/projects/", allow_redirects=False)
    assert again.status_code == 302 and "/accounts/login/" in again.headers["Location"]


def test_staff_without_mfa_at_the_idp_must_enrol_here(sso, live_server):
    """A staff role signed in with a password only (amr=["pwd"]) gets no
    admin: our own 2FA enrolment comes first."""
    _account(sso, "s-adm-1", login="adam", realm_roles=["kreo-admin"], amr=["pwd"])
    session = requests.Session()
    session.get(idp_login(session, live_server, "adam"))
    page = session.get(f"{live_server.url}/admin/", allow_redirects=False)
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/accounts/security/2fa/")


def test_staff_with_mfa_at_the_idp_reach_the_admin(sso, live_server):
    """amr containing "otp" satisfies the staff 2FA policy; amr and acr are
    kept on the identity."""
    _account(
        sso,
        "s-adm-2",
        login="adele",
        realm_roles=["kreo-admin"],
        amr=["pwd", "otp"],
        acr="2",
    )
    session = requests.Session()
    session.get(idp_login(session, live_server, "adele"))
    page = session.get(f"{live_server.url}/admin/")
    assert page.status_code == 200, page.text
    assert "Kreo administration" in page.text
    identity = User.objects.get(email="adele@example.com").sso_identities.get()
    assert identity.amr == ["pwd", "otp"] and identity.acr == "2"


def test_sign_out_ends_the_idp_session_with_id_token_hint(sso, live_server):
    """Sign out ends our session, then sends the browser to the IdP's
    end-session endpoint with id_token_hint; afterwards the IdP asks for a
    login again."""
    _account(sso, "s-out", login="olga", realm_roles=["kreo-user"])
    session = requests.Session()
    session.get(idp_login(session, live_server, "olga"))
    token = _csrf(session, f"{live_server.url}/projects/")
    out = session.post(
        f"{live_server.url}/oidc/logout/",
        data={"csrfmiddlewaretoken": token},
        allow_redirects=False,
    )
    assert out.status_code == 302
    location = out.headers["Location"]
    assert location.startswith(f"{sso.url}/protocol/openid-connect/logout?")
    query = parse_qs(urlsplit(location).query)
    assert query["post_logout_redirect_uri"] == [f"{live_server.url}/accounts/login/"]
    confirm = session.get(location)
    seen = sso.seen()["end_session"][-1]
    assert seen["id_token_hint"] == query["id_token_hint"][0]
    assert seen["id_token_hint"].count(".") == 2
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)[1]
    action = re.search(r'action="([^"]+)"', confirm.text)[1]
    done = session.post(
        urljoin(confirm.url, action), data={"xsrf": xsrf, "logout": "yes"}
    )
    assert urlsplit(done.url).path == "/accounts/login/"
    home = session.get(f"{live_server.url}/projects/", allow_redirects=False)
    assert home.status_code == 302
    again = session.get(f"{live_server.url}/oidc/authenticate/")
    assert "Sign in to the test realm" in again.text
    assert AuditEvent.objects.filter(event_type="auth.sso.logout").exists()


def test_local_sign_out_still_works_through_the_same_button(live_server, client):
    """Without SSO the sign-out button ends the local session only."""
    from accounts.tests.factories import UserFactory

    user = UserFactory()
    client.force_login(user)
    response = client.post("/oidc/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/projects/").status_code == 302


def test_staff_with_our_totp_pass_our_second_step_after_sso(sso, live_server):
    """An SSO admin without MFA at the IdP but with our TOTP enrolled goes
    through our code step; only then is the admin open."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    _account(sso, "s-adm-3", login="ada3", realm_roles=["kreo-admin"], amr=["pwd"])
    session = requests.Session()
    session.get(idp_login(session, live_server, "ada3"))  # first visit: enrol
    user = User.objects.get(email="ada3@example.com")
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    session = requests.Session()
    step = session.get(idp_login(session, live_server, "ada3"))
    assert urlsplit(step.url).path == "/accounts/login/verify/"
    pending = session.get(f"{live_server.url}/admin/", allow_redirects=False)
    assert pending.status_code == 302  # not signed in yet: to the login page
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=6)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', step.text)[1]
    session.post(step.url, data={"csrfmiddlewaretoken": token, "token": f"{code:06d}"})
    page = session.get(f"{live_server.url}/admin/")
    assert page.status_code == 200 and "Kreo administration" in page.text
