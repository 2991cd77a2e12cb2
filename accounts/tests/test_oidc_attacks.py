"""Bad SSO responses are refused with a clear page and an audit event with
the reason; nobody ends up signed in. The tokens come from a real provider."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from accounts.models import User
from accounts.oidc import errors
from accounts.oidc.models import Identity
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import follow_to_callback, idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, oidc_impostor, sso = op.oidc_provider, op.oidc_impostor, op.sso


def _account(provider, sub, **fields):
    fields.setdefault("login", sub)
    fields.setdefault("email", f"{fields['login']}@example.com")
    fields.setdefault("email_verified", True)
    fields.setdefault("realm_roles", ["kreo-user"])
    return provider.account(sub, **fields)


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def check_refused(session, live_server, page, code, message=errors.SSO_FAILED):
    status = 403 if code in errors.FORBIDDEN else 400
    assert page.status_code == status, page.text
    assert "Single sign-on refused" in page.text
    assert message in page.text.replace("&#x27;", "'")
    event = AuditEvent.objects.filter(event_type="auth.sso.failure").last()
    assert event is not None and event.error_code == code
    assert event.outcome == "failure"
    home = session.get(f"{live_server.url}/projects/", allow_redirects=False)
    assert home.status_code == 302 and "/accounts/login/" in home.headers["Location"]
    assert not AuditEvent.objects.filter(event_type="auth.sso.success").exists()


def test_wrong_state_is_refused(sso, live_server):
    """A callback whose state this browser never sent is refused."""
    _account(sso, "s-state", login="eve1")
    session = requests.Session()
    callback = idp_login(session, live_server, "eve1")
    page = session.get(_with_query(callback, state="forged-state"))
    check_refused(session, live_server, page, "state_mismatch")


def test_callback_without_any_flow_is_refused(sso, live_server):
    """A code delivered to a browser that started no flow (login CSRF) fails."""
    _account(sso, "s-csrf", login="eve2")
    victim, attacker = requests.Session(), requests.Session()
    callback = idp_login(attacker, live_server, "eve2")
    page = victim.get(callback)
    check_refused(victim, live_server, page, "state_mismatch")


def test_replayed_code_is_refused(sso, live_server):
    """A code already exchanged, replayed into a fresh flow, is refused by the
    provider's token endpoint and so by us."""
    _account(sso, "s-replay", login="eve3")
    first = requests.Session()
    used = idp_login(first, live_server, "eve3")
    assert first.get(used).status_code == 200
    attacker = requests.Session()
    fresh = idp_login(attacker, live_server, "eve3")
    replay = _with_query(fresh, code=parse_qs(urlsplit(used).query)["code"][0])
    page = attacker.get(replay)
    check_refused_after_success(attacker, live_server, page, "code_rejected")


def check_refused_after_success(session, live_server, page, code):
    assert page.status_code == 400, page.text
    assert errors.SSO_FAILED in page.text.replace("&#x27;", "'")
    event = AuditEvent.objects.filter(event_type="auth.sso.failure").last()
    assert event.error_code == code
    home = session.get(f"{live_server.url}/projects/", allow_redirects=False)
    assert home.status_code == 302


def test_id_token_signed_by_another_key_is_refused(
    sso, oidc_impostor, live_server, settings
):
    """An impostor provider claiming our issuer and key id, with its own key,
    answers the code exchange: the signature does not check out against
    the real provider's JWKS."""
    _account(oidc_impostor, "s-impostor", login="eve4")
    base = f"{oidc_impostor.url}/protocol/openid-connect"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{base}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{base}/token"
    session = requests.Session()
    page = session.get(idp_login(session, live_server, "eve4"))
    check_refused(session, live_server, page, "bad_signature")
    assert not User.objects.filter(email="eve4@example.com").exists()


def test_wrong_audience_is_refused(sso, live_server):
    """An ID token issued for another client is refused."""
    _account(sso, "s-aud", login="eve5")
    session = requests.Session()
    callback = idp_login(session, live_server, "eve5")
    sso.next_id_token(audience="some-other-app")
    page = session.get(callback)
    check_refused(session, live_server, page, "wrong_audience")


def test_expired_token_is_refused(sso, live_server):
    """An ID token that expired (signed by a clock two hours behind) fails."""
    _account(sso, "s-exp", login="eve6")
    session = requests.Session()
    callback = idp_login(session, live_server, "eve6")
    sso.next_id_token(clockOffset=-7200)
    page = session.get(callback)
    check_refused(session, live_server, page, "expired_token")


def test_nonce_mismatch_is_refused(sso, live_server):
    """An authorization request whose nonce was swapped on the way to the IdP
    yields an ID token with a nonce this session never issued."""
    _account(sso, "s-nonce", login="eve7")
    session = requests.Session()
    start = session.get(f"{live_server.url}/oidc/authenticate/", allow_redirects=False)
    tampered = _with_query(start.headers["Location"], nonce="attacker-nonce")
    callback_prefix = f"{live_server.url}/oidc/callback/"
    page = follow_to_callback(session, tampered, callback_prefix)
    action = page.text.split('action="', 1)[1].split('"', 1)[0]
    posted = session.post(
        page.url.split("/interaction/")[0] + action,
        data={"login": "eve7"},
        allow_redirects=False,
    )
    callback = follow_to_callback(session, posted.headers["Location"], callback_prefix)
    assert sso.seen()["authorization"][-1]["nonce"] == "attacker-nonce"
    page = session.get(callback)
    check_refused(session, live_server, page, "nonce_mismatch")


def test_no_allowed_role_is_refused_with_a_clear_page(sso, live_server):
    """A valid sign-in without any Kreo role gets a 403 page saying so, and
    no account."""
    _account(sso, "s-norole", login="nora", realm_roles=["offline_access"])
    session = requests.Session()
    page = session.get(idp_login(session, live_server, "nora"))
    check_refused(session, live_server, page, "no_allowed_role", errors.NO_ALLOWED_ROLE)
    assert not User.objects.filter(email="nora@example.com").exists()


def test_unverified_email_creates_no_account(sso, live_server):
    """An email the IdP has not verified is not used to make an account."""
    _account(sso, "s-unverified", login="una", email_verified=False)
    session = requests.Session()
    page = session.get(idp_login(session, live_server, "una"))
    check_refused(
        session, live_server, page, "email_unverified", errors.EMAIL_UNVERIFIED
    )
    assert not User.objects.filter(email="una@example.com").exists()


def test_idp_email_of_a_local_account_does_not_take_it_over(sso, live_server):
    """An IdP account claiming (verified) the email of an existing local
    account is not signed in as it, nor linked to it."""
    victim = UserFactory(email="victim@example.com")
    _account(sso, "s-takeover", login="mallory", email="victim@example.com")
    session = requests.Session()
    page = session.get(idp_login(session, live_server, "mallory"))
    check_refused(session, live_server, page, "link_required", errors.LINK_REQUIRED)
    assert not Identity.objects.filter(user=victim).exists()
    victim.refresh_from_db()
    assert list(victim.groups.all()) == []


def test_error_from_the_provider_is_refused(sso, live_server):
    """An error answer from the IdP (access_denied) ends in the refusal page."""
    session = requests.Session()
    start = session.get(f"{live_server.url}/oidc/authenticate/", allow_redirects=False)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    page = session.get(
        f"{live_server.url}/oidc/callback/?error=access_denied&state={state}"
    )
    check_refused(session, live_server, page, "provider_error")


def test_stray_callback_link_does_not_sign_anyone_out(sso, live_server):
    """A callback URL this browser did not start (a link or image planted by
    someone else) is refused without ending the signed-in session."""
    _account(sso, "s-stray", login="stella")
    session = requests.Session()
    session.get(idp_login(session, live_server, "stella"))
    page = session.get(f"{live_server.url}/oidc/callback/?code=x&state=planted")
    assert page.status_code == 400
    event = AuditEvent.objects.filter(event_type="auth.sso.failure").last()
    assert event.error_code == "state_mismatch"
    assert session.get(f"{live_server.url}/projects/").status_code == 200


class _ListTokenEndpoint(BaseHTTPRequestHandler):
    """A broken token endpoint: 200 with JSON that is not a token response."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(["not", "a", "token"]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_token_response_that_is_not_an_object_is_refused(sso, live_server, settings):
    """The code exchange answers 200 with a JSON list: a refusal page with
    the reason, not a server error."""
    _account(sso, "s-list", login="lister")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ListTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{server.server_port}/"
        session = requests.Session()
        page = session.get(idp_login(session, live_server, "lister"))
        check_refused(session, live_server, page, "bad_token")
    finally:
        server.shutdown()
        server.server_close()
