"""Sign-up on the embedded default in real Chromium with the Internet cut off.

The embedded default promises to need no server: the CAPTCHA (ALTCHA, the
default ``KREO_CAPTCHA``) is solved by the vendored widget in the page, the
verification mail is sent by a real Celery worker with the embedded default's
file backend, and no request may leave the machine.
"""

import email
import os
import re
import time
from email import policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.urls import reverse

from accounts.models import User
from accounts.tests.test_e2e import ARGS, CHROMIUM
from audit.models import AuditEvent
from kreo.celery import app as celery_app
from kreo.settings import base as embedded_default

EMAIL = "offline.person@example.test"
PASSWORD = "a sturdy passphrase offline 7"
LOOPBACK = {"127.0.0.1", "localhost"}
# Belt and braces: besides the routes below, the browser cannot even resolve
# any other host name.
OFFLINE_ARGS = [
    *ARGS,
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]


def mails(folder: Path) -> list:
    """Messages the file backend wrote (one file per connection, split by it)."""
    found = []
    for path in sorted(folder.glob("*.log")) if folder.exists() else []:
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                found.append(email.message_from_bytes(chunk, policy=policy.default))
    return found


def wait_for_mail(folder: Path, seconds: float = 60) -> list:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = mails(folder)
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"no mail in {folder} after {seconds} s")


@pytest.mark.celery
def test_signup_solves_altcha_in_chromium_with_no_internet(
    live_server, settings, tmp_path
):
    """A person signs up offline: the widget solves the proof of work in the
    page, the form is accepted, the mail lands in the mail folder, its link
    confirms the address, and the browser never tried to reach another host.
    """
    assert django_settings.KREO_CAPTCHA == "altcha", "not the embedded default"
    # The embedded default writes mail to files (var/mail/ there; a fresh
    # folder here). Test settings otherwise keep mail in memory.
    assert embedded_default.EMAIL_BACKEND.endswith("filebased.EmailBackend")
    settings.EMAIL_BACKEND = embedded_default.EMAIL_BACKEND
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is missing: run the suite with `make test`.")
    from playwright.sync_api import sync_playwright

    worker = start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    )
    # No ORM calls inside this block: Playwright's event loop runs here.
    with worker, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=OFFLINE_ARGS
        )
        try:
            seen = _journey(browser, live_server.url, tmp_path / "mail")
        finally:
            browser.close()

    assert seen["elsewhere"] == [], "the browser tried to leave the machine"
    assert seen["problems"] == []
    assert any(u.endswith("/accounts/captcha/challenge/") for u in seen["loopback"])
    assert any(u.endswith("/workers/pbkdf2.js") for u in seen["loopback"])
    user = User.objects.get(email=EMAIL)
    assert user.is_active and user.email_verified_at is not None
    assert not AuditEvent.objects.filter(event_type="auth.captcha.failed").exists()


def _journey(browser, base: str, mail_folder: Path) -> dict:
    seen = {"loopback": [], "elsewhere": [], "problems": []}
    context = browser.new_context()

    def only_loopback(route):
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            seen["loopback"].append(url)
            route.continue_()
        else:
            seen["elsewhere"].append(url)
            route.abort("internetdisconnected")

    def watch(request):
        # Every request the browser starts, routed or not (workers included).
        if urlsplit(request.url).hostname not in LOOPBACK:
            if not request.url.startswith(("data:", "blob:")):
                seen["elsewhere"].append(request.url)

    context.route("**/*", only_loopback)
    context.on("request", watch)
    page = context.new_page()
    page.on(
        "console",
        lambda m: m.type == "error" and seen["problems"].append(m.text),
    )
    page.on("pageerror", lambda exc: seen["problems"].append(str(exc)))

    page.goto(base + reverse("accounts:signup"))
    widget = page.locator("altcha-widget .altcha")
    assert widget.get_attribute("data-state") == "unverified"
    assert "I'm not a robot" in widget.inner_text()
    # Typing into the form starts the widget (auto="onfocus"): it fetches a
    # challenge and its worker searches for the answer while the person types.
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.locator("altcha-widget .altcha[data-state=verified]").wait_for(timeout=60_000)
    assert page.input_value("input[name=captcha]")
    page.click("button:has-text('Sign up')")
    page.wait_for_url(re.compile(r"/accounts/signup/done/"))

    (mail,) = wait_for_mail(mail_folder)
    assert mail["To"] == EMAIL
    body = mail.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https?://\S+", body).group(0)
    assert link.startswith(base)
    page.goto(link)
    page.click("button:has-text('Confirm my email address')")
    page.wait_for_url(re.compile(r"/projects/"))
    assert "is confirmed. You are signed in." in page.content()
    context.close()
    return seen
