"""End to end in real Chromium: sign-up, mail, verify, 2FA, recovery codes."""

import base64
import os
import re
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker
from django.urls import reverse
from django_otp.oath import totp

from accounts.models import User
from accounts.tests.conftest import GOOD_TOKEN
from accounts.views import OTP_INVALID
from audit.models import AuditEvent
from kreo.celery import app as celery_app

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL = "e2e.person@example.test"
PASSWORD = "a sturdy passphrase for e2e 9"

# Stands in for Google's widget script (no Internet here): it fills the
# response field as the solved widget would. It runs under the page's real
# CSP, which must allow the reCAPTCHA origin for this to work.
WIDGET_STAND_IN = f"""
document.querySelectorAll('.g-recaptcha').forEach(function (box) {{
  var field = document.createElement('textarea');
  field.name = 'g-recaptcha-response';
  field.hidden = true;
  field.value = '{GOOD_TOKEN}';
  box.appendChild(field);
}});
"""


@contextmanager
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is missing: run the suite with `make test`.")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread: no ORM calls
    # inside this block (they would open a connection nobody closes).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def code(secret: str, drift: int = 0) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key, drift=drift):06d}"


def sign_in(page, base):
    page.goto(base + reverse("accounts:login"))
    page.fill("input[name=username]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")


def sign_out(page):
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/accounts/login/"))


@pytest.mark.celery
def test_signup_verify_login_2fa_and_recovery_in_chromium(
    live_server, smtp, siteverify
):
    """A person signs up, verifies by mail, enrols TOTP, uses a recovery code once.

    The site runs in pytest-django's live server, the browser is Debian's
    Chromium, the mail comes over SMTP, the CAPTCHA is checked by the local
    siteverify server, the verification mail is sent by a real Celery worker.
    The database is read only once the browser is closed.
    """
    worker = start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    )
    with worker, chromium() as browser:
        _journey(browser, live_server.url, smtp)
    user = User.objects.get(email=EMAIL)
    assert user.is_active and user.email_verified_at is not None
    successes = AuditEvent.objects.filter(event_type="auth.login.success")
    assert successes.count() == 3
    assert AuditEvent.objects.filter(event_type="auth.2fa.failed").count() == 1


def _journey(browser, base, smtp) -> None:
    context = browser.new_context()
    context.route(
        re.compile(r"https://www\.google\.com/recaptcha/api\.js.*"),
        lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=WIDGET_STAND_IN
        ),
    )
    page = context.new_page()
    csp_violations = []
    page.on(
        "console",
        lambda m: csp_violations.append(m.text) if "Content Security" in m.text else 0,
    )

    page.goto(base + reverse("accounts:signup"))
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button:has-text('Sign up')")
    page.wait_for_url(re.compile(r"/accounts/signup/done/"))

    smtp.wait_for(1)  # the worker sends it after the sign-up commits
    (mail,) = smtp.to(EMAIL)
    link = re.search(r"https?://\S+", smtp.body(mail)).group(0)
    assert link.startswith(base)
    page.goto(link)
    assert EMAIL in page.content()  # the page names the address it confirms
    page.click("button:has-text('Confirm my email address')")
    # The browser that signed up is signed in by its own confirmation.
    page.wait_for_url(re.compile(r"/projects/"))
    assert f"{EMAIL} is confirmed. You are signed in." in page.content()
    page.goto(base + reverse("accounts:otp-enrol"))
    assert page.locator("img[alt^='QR code']").evaluate("i => i.naturalWidth") > 0
    secret = page.inner_text("#otp-secret")
    page.fill("input[name=token]", code(secret))
    page.click("button:has-text('Confirm')")
    codes = page.locator(".recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    sign_out(page)

    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/login/verify/"))
    page.fill("input[name=token]", code(secret, drift=1))  # the next code
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r"/projects/"))
    sign_out(page)

    sign_in(page, base)
    page.fill("input[name=token]", codes[0])
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r"/projects/"))
    sign_out(page)

    sign_in(page, base)
    page.fill("input[name=token]", codes[0])
    page.click("button:has-text('Verify')")
    assert OTP_INVALID in page.content()
    assert "/accounts/login/verify/" in page.url
    context.close()
    assert csp_violations == []
