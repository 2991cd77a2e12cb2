"""Passkeys in real Chromium with its virtual authenticator (DevTools'
WebAuthn domain): add one on the security page, sign out, sign in with it
alone, then use it as the second step after the password. The site's own
static/js/passkeys.js runs under the real CSP."""

import re

import pytest
from django.urls import reverse

from accounts.models import Passkey
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_e2e import chromium
from audit.models import AuditEvent
from kreo.tests.test_pages_browser import AXE, _check
from scripts.oidc_provider.fixtures import ensure_node_modules

pytestmark = pytest.mark.django_db(transaction=True)

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


def test_add_a_passkey_then_sign_in_with_it_alone_and_as_second_step(live_server):
    ensure_node_modules()  # axe-core, pinned in package.json
    assert AXE.exists()
    user = UserFactory(email="passkey.person@example.test")
    base = live_server.url
    with chromium() as browser:
        problems, credentials = _journey(browser, base, user.email)
        problems += _pages_with_a_passkey(browser, base, user.email, credentials[0])
    assert problems == []
    # The browser's authenticator holds one discoverable credential, ours.
    passkey = Passkey.objects.get(user=user)
    assert len(credentials) == 1 and credentials[0]["isResidentCredential"]
    assert passkey.name == "This browser"
    assert passkey.sign_count >= 4 and passkey.last_used_at is not None
    assert AuditEvent.objects.filter(event_type="auth.passkey.added").count() == 1
    used = AuditEvent.objects.filter(event_type="auth.passkey.used")
    assert sorted(e.details["purpose"] for e in used) == ["2fa", "2fa", "2fa", "login"]
    successes = AuditEvent.objects.filter(event_type="auth.login.success")
    assert [e.details["device"] for e in successes.order_by("id")] == [
        "",
        *["Passkey"] * 4,
    ]
    assert not AuditEvent.objects.filter(event_type="auth.passkey.rejected").exists()


def _journey(browser, base, email):
    context = browser.new_context()
    page = context.new_page()
    problems = []
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security" in m.text else 0,
    )
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR}
    )["authenticatorId"]

    # Password sign-in (no second factor yet), then add a passkey.
    page.goto(base + reverse("accounts:login"))
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/projects/"))
    page.goto(base + reverse("accounts:security"))
    page.fill("#passkey-name", "This browser")
    page.click("button:has-text('Add a passkey')")
    page.wait_for_selector("text=The passkey This browser has been added.")
    if "never" not in page.locator("#passkeys").inner_text():
        problems.append("the new passkey is not listed as never used")

    # Sign out; sign in with the passkey alone.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.click("button:has-text('Sign in with a passkey')")
    page.wait_for_url(re.compile(r"/projects/"))

    # Sign out; the password now asks for the second step: the passkey.
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/accounts/login/verify/"))
    page.click("button:has-text('Use a passkey')")
    page.wait_for_url(re.compile(r"/projects/"))
    page.goto(base + reverse("accounts:security"))
    if "This browser" not in page.locator("#passkeys").inner_text():
        problems.append("the passkey is not listed on the security page")

    credentials = cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator}
    )["credentials"]
    context.close()
    return problems, credentials


def _pages_with_a_passkey(browser, base, email, credential):
    """axe-core and phone width on the pages that only show with a passkey:
    the second step offering it, the security page listing it. (axe is
    injected, so this context bypasses the CSP; the journey above did not.)
    The credential is copied into this context's own virtual authenticator."""
    problems = []
    for width in (1280, 390):
        context = browser.new_context(
            viewport={"width": width, "height": 800}, bypass_csp=True
        )
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send(
            "WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR}
        )["authenticatorId"]
        cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": authenticator, "credential": credential},
        )
        page.goto(base + reverse("accounts:login"))
        page.fill("input[name=username]", email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(re.compile(r"/accounts/login/verify/"))
        page.wait_for_selector("button:has-text('Use a passkey')")
        problems += [f"login-otp {width}: {p}" for p in _check(page, width)]
        page.click("button:has-text('Use a passkey')")
        page.wait_for_url(re.compile(r"/projects/"))
        page.goto(base + reverse("accounts:security"))
        page.wait_for_selector("button:has-text('Add a passkey')")
        problems += [f"security {width}: {p}" for p in _check(page, width)]
        # Its counter went up: the next copy starts from here.
        credential = cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": authenticator}
        )["credentials"][0]
        context.close()
    return problems
