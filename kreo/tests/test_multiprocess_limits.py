"""Limits and lockout hold across processes, as ``make run`` runs the product.

Each test starts the embedded default (``kreo.settings.local``, a fresh
``KREO_VAR_DIR``: SQLite, the shared cache under ``var/cache``, mail in
``var/mail``) with the very gunicorn command of ``make run``
(``scripts/run.py``: two sync workers) and talks to it over HTTP, one new TCP
connection per request, so either worker may answer. The access log names the
worker's pid for each request (``pid=`` in ``make run``'s log format): each
test checks that both workers answered. The kernel may hand every connection
to the same idle worker (seen on a loaded CI machine), so after two answers
in a row from one worker the next request is sent with an idle connection
parked in front of it: the first worker to accept takes the parked one and
waits on it, and the request goes to the other.

The CAPTCHA is recognised by its form field, named ``captcha``: the page
carries ``id="id_captcha"`` / ``for="id_captcha"`` or ``name="captcha"``
whatever the widget (reCAPTCHA or ALTCHA).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from accounts.services import LOGIN_INVALID
from kreo.testing.faults import serving
from scripts import run as make_run
from scripts import services

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/accounts/login/"
CAPTCHA_MARKER = re.compile(r'(?:id|for)="id_captcha"|name="captcha"')
WRONG = "not-the-password-1"  # nosec B105 - the wrong guess the tests send
LOCKED_SUBJECT = "Your Kreo account has been locked"


def _embedded_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment less every server the test legs name."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_"))
    }
    env.update(
        KREO_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="kreo.settings.local",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A migrated embedded default with the demo account: (var dir, email, password)."""
    var_dir = tmp_path_factory.mktemp("embedded-seed")

    def manage(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=_embedded_env(var_dir),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout

    manage("migrate", "--noinput", "-v", "0")
    found = re.search(r"demo login: (\S+) / (\S+)", manage("demo_seed"))
    assert found, "demo_seed printed no login"
    return var_dir, found.group(1), found.group(2)


class Site:
    """A running gunicorn of the embedded default, and an HTTP client for it."""

    def __init__(self, var_dir: Path, process: subprocess.Popen, url: str, log: Path):
        self.var_dir, self.process, self.url, self.log = var_dir, process, url, log
        self.session = requests.Session()
        # A new TCP connection for every request: the kernel hands each one
        # to whichever worker accepts first.
        self.session.headers["Connection"] = "close"
        self.sent = 0
        self.answered: list[int] = []

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        self.sent += 1
        joiner = "&" if "?" in path else "?"
        tagged = f"{path}{joiner}req={self.sent}"
        # Queued before the request, the parked connection is accepted first:
        # it holds one sync worker, so the other answers the request.
        host, port = self.url.removeprefix("http://").split(":")
        parked = (
            socket.create_connection((host, int(port)), timeout=10)
            if len(self.answered) >= 2 and len(set(self.answered[-2:])) == 1
            else None
        )
        try:
            response = self.session.request(
                method, self.url + tagged, timeout=60, allow_redirects=False, **kwargs
            )
        finally:
            if parked is not None:
                parked.close()
        response.worker = self.pid_of(tagged)
        self.answered.append(response.worker)
        return response

    def login_page(self) -> requests.Response:
        return self.request("GET", LOGIN)

    def login(self, email: str, password: str) -> requests.Response:
        token = self.session.cookies.get("csrftoken")
        if token is None:
            self.login_page()
            token = self.session.cookies["csrftoken"]
        return self.request(
            "POST",
            LOGIN,
            data={
                "username": email,
                "password": password,
                "csrfmiddlewaretoken": token,
            },
        )

    def pid_of(self, tagged: str) -> int:
        """The pid of the worker that answered, from the access log."""
        pattern = re.compile(re.escape(f" {tagged} HTTP/1.1") + r'".* pid=<?(\d+)')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = pattern.search(self.log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
            time.sleep(0.05)
        raise AssertionError(f"no access log line for {tagged}")

    def mails(self) -> list[str]:
        folder = self.var_dir / "mail"
        if not folder.exists():
            return []
        return [p.read_text(errors="replace") for p in sorted(folder.iterdir())]


@pytest.fixture
def start_site(seeded, tmp_path):
    """Start ``make run``'s gunicorn on a copy of the seeded embedded default."""
    with contextlib.ExitStack() as running:

        def start(**settings_env: str) -> Site:
            template, _, _ = seeded
            var_dir = tmp_path / "var"
            shutil.copytree(template, var_dir, ignore=shutil.ignore_patterns("cache"))
            port = services.free_port()
            command = make_run.process_commands("127.0.0.1", str(port))["web"]
            log = tmp_path / "gunicorn.log"
            url, process = running.enter_context(
                serving(
                    command,
                    _embedded_env(var_dir, **settings_env),
                    port,
                    log,
                    probe=lambda url: requests.get(f"{url}/healthz", timeout=30),
                    wait=180,
                )
            )
            return Site(var_dir, process, url, log)

        yield start


def test_lockout_at_the_threshold_whichever_worker_answers(seeded, start_site):
    """Five wrong passwords lock the account though two workers share them out;
    the lockout mail lands in var/mail and the right password is then refused.

    The CAPTCHA thresholds are raised here so every guess reaches the
    password check (the CAPTCHA has its own test below).
    """
    _, email, password = seeded
    site = start_site(KREO_CAPTCHA_AFTER_ACCOUNT="100", KREO_CAPTCHA_AFTER_IP="100")
    site.login_page()
    workers = []
    for attempt in range(1, 5):
        response = site.login(email, WRONG)
        workers.append(response.worker)
        assert response.status_code == 200, attempt
        assert LOGIN_INVALID in response.text
        assert site.mails() == [], f"locked after {attempt} failures"
    fifth = site.login(email, WRONG)
    workers.append(fifth.worker)
    assert fifth.status_code == 200
    mails = site.mails()
    assert len(mails) == 1, "no lockout mail after the fifth failure"
    assert LOCKED_SUBJECT in mails[0] and f"To: {email}" in mails[0]
    # Locked: the right password is refused, by whichever worker answers. On
    # a loaded machine one worker may take every connection for a while: ask
    # again (up to 12 times) until a second worker has answered too.
    for _ in range(12):
        right = site.login(email, password)
        workers.append(right.worker)
        assert right.status_code == 200, "a locked account signed in"
        assert LOGIN_INVALID in right.text
        if len(set(workers)) >= 2 and len(workers) >= 8:
            break
    assert len(set(workers)) >= 2, f"one worker answered everything: {workers}"


def test_captcha_shown_exactly_when_required_across_workers(seeded, start_site):
    """The CAPTCHA appears on the third failure for an account (and for any
    account after ten from one IP), never before, and once shown it is
    required: the right password without it does not sign in."""
    _, email, password = seeded
    site = start_site()
    workers = []
    page = site.login_page()
    assert not CAPTCHA_MARKER.search(page.text)
    for attempt in (1, 2):
        response = site.login(email, WRONG)
        workers.append(response.worker)
        assert LOGIN_INVALID in response.text
        assert not CAPTCHA_MARKER.search(response.text), f"CAPTCHA after {attempt}"
    third = site.login(email, WRONG)
    workers.append(third.worker)
    assert CAPTCHA_MARKER.search(third.text), "no CAPTCHA after the third failure"
    for _ in range(3):
        right = site.login(email, password)
        workers.append(right.worker)
        assert right.status_code == 200, "signed in without the CAPTCHA it asked for"
        assert CAPTCHA_MARKER.search(right.text)
        # Refused for the missing CAPTCHA, before any password check.
        assert LOGIN_INVALID not in right.text
    # An empty sign-in page asks only once the IP itself has 10 failures.
    assert not CAPTCHA_MARKER.search(site.login_page().text)
    for n in range(7):  # 3 + 7 = 10 failures from this IP
        response = site.login(f"nobody-{n}@example.com", WRONG)
        workers.append(response.worker)
        assert LOGIN_INVALID in response.text
    for _ in range(3):
        page = site.login_page()
        workers.append(page.worker)
        assert CAPTCHA_MARKER.search(page.text), "no CAPTCHA after 10 IP failures"
    assert len(set(workers)) >= 2, f"one worker answered everything: {workers}"


def test_login_rate_limit_per_ip_holds_across_workers(seeded, start_site):
    """The 31st sign-in attempt from one IP in 15 minutes (30/15m) is refused
    with 429 and Retry-After, though the attempts were shared by two workers."""
    site = start_site()
    site.login_page()
    workers = []
    for n in range(30):
        response = site.login(f"guess-{n}@example.com", WRONG)
        workers.append(response.worker)
        assert response.status_code == 200, f"limited after {n} attempts"
    refused = site.login("guess-30@example.com", WRONG)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    again = site.login("guess-31@example.com", WRONG)
    assert again.status_code == 429
    workers += [refused.worker, again.worker]
    assert len(set(workers)) >= 2, f"one worker answered everything: {workers}"


def test_page_limit_holds_across_workers(seeded, start_site):
    """Past KREO_RATE_PAGE (8/hour here) the next page view from one address
    is refused with 429 and Retry-After though two workers shared the views;
    a forged X-Forwarded-For starts no new count."""
    site = start_site(KREO_RATE_PAGE="8/hour")
    workers = []
    for n in range(8):
        response = site.request("GET", "/status/")
        workers.append(response.worker)
        assert response.status_code == 200, f"limited after {n} views"
    for forged in ("203.0.113.1", "198.51.100.2"):
        refused = site.request("GET", "/status/", headers={"X-Forwarded-For": forged})
        workers.append(refused.worker)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
    assert len(set(workers)) >= 2, f"one worker answered everything: {workers}"


def _altcha_payload(site: Site) -> str:
    """A challenge from the site, solved as the widget would (altcha's solver)."""
    import base64
    import json

    import altcha

    data = site.request("GET", "/accounts/captcha/challenge/").json()
    solution = altcha.solve_challenge(altcha.Challenge.from_dict(data), timeout=30)
    assert solution is not None
    return base64.b64encode(
        json.dumps({"challenge": data, "solution": solution.to_dict()}).encode()
    ).decode()


def test_a_solved_captcha_is_spent_for_every_worker(seeded, start_site):
    """A solved ALTCHA signs up once; the same payload sent again is refused
    with 400 whichever worker answers (the spent record is shared)."""
    site = start_site(KREO_ALTCHA_COST="1", KREO_ALTCHA_ATTEMPTS="20")
    site.request("GET", "/accounts/signup/")
    solved = _altcha_payload(site)

    def signup(email: str) -> requests.Response:
        password = "correct horse battery staple 42"  # nosec B105 - test input
        return site.request(
            "POST",
            "/accounts/signup/",
            data={
                "email": email,
                "password1": password,
                "password2": password,
                "captcha": solved,
                "csrfmiddlewaretoken": site.session.cookies["csrftoken"],
            },
        )

    first = signup("first@example.test")
    assert first.status_code == 302, first.text[:500]
    replays = []
    for n in range(12):
        again = signup(f"replay-{n}@example.test")
        assert again.status_code == 400, f"replay {n} answered {again.status_code}"
        replays.append(again.worker)
        if again.worker != first.worker:
            break
    assert any(worker != first.worker for worker in replays), (
        f"every replay reached the first worker {first.worker}: {replays}"
    )
