"""Single sign-on once in real Chromium: the login page's button, the IdP's
form, back signed in; sign-out ends the IdP session too."""

import os
import re
from contextlib import contextmanager

import pytest

from audit.models import AuditEvent
from scripts.oidc_provider import fixtures as op
from scripts.services import ensure_chromium

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium():
    """Debian's Chromium through Playwright; the test reads the database only
    after this closes (an ORM call inside Playwright's event loop would open
    a connection of its own that is never closed)."""
    executable = ensure_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls
    # of the test run after the browser is closed.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def test_sso_in_chromium_from_button_to_sign_out(sso, live_server):
    """The "Continue with Microsoft" button sends kc_idp_hint=microsoft; after the IdP's
    form the user is on the projects page; "Sign out" passes the IdP's
    end-session page (id_token_hint) and lands on our login page."""
    sso.account(
        "s-browser",
        login="bea",
        email="bea@example.com",
        email_verified=True,
        realm_roles=["kreo-user"],
    )
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.click("#sso-microsoft")
        page.wait_for_selector("text=Sign in to the test realm")
        page.fill("input[name=login]", "bea")
        page.click("#signin")
        page.wait_for_url(re.compile(r"/projects/$"))
        assert "bea@example.com" in page.content()
        auth = sso.seen()["authorization"][-1]

        page.click("button:has-text('Sign out')")
        page.wait_for_selector("#confirm")
        page.click("#confirm")
        page.wait_for_url(re.compile(r"/accounts/login/"))
        page.goto(f"{live_server.url}/projects/")
        assert "/accounts/login/" in page.url
        page.close()

    assert auth["kc_idp_hint"] == "microsoft"
    assert auth["code_challenge_method"] == "S256"
    assert sso.seen()["end_session"][-1]["id_token_hint"].count(".") == 2
    assert AuditEvent.objects.filter(event_type="auth.sso.success").count() == 1
    assert AuditEvent.objects.filter(event_type="auth.sso.logout").count() == 1
