"""The shared cache down: sign-in fails closed with a clear 503, the rest works.

The cache here is a real outage, not a stand-in: a Redis address where
nothing listens (connection refused, as when Redis is killed), or the
embedded default's SQLite cache with its file locked by another process.
``kreo/tests/test_faults_redis.py`` kills a real Redis under gunicorn.
"""

import socket
import sqlite3
import time

import pytest
from django.urls import reverse

from accounts.middleware import SIGN_IN_UNAVAILABLE
from accounts.tests.conftest import GOOD_TOKEN as GOOD
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent
from projects.models import Role
from projects.tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CacheSwitch:
    """Turn the shared cache off (a Redis address nobody answers on) and on."""

    def __init__(self, settings):
        self.settings = settings
        self.working = settings.CACHES

    def down(self) -> None:
        url = f"redis://127.0.0.1:{_closed_port()}/0"
        self.settings.CACHES = {
            "default": {"BACKEND": "kreo.cache.RedisCache", "LOCATION": url},
            "ratelimit": {"BACKEND": "kreo.cache.RedisCounterCache", "LOCATION": url},
        }

    def up(self) -> None:
        self.settings.CACHES = self.working


@pytest.fixture
def cache(settings):
    return CacheSwitch(settings)


@pytest.fixture
def cache_down(cache):
    cache.down()
    return cache


def _refused(response) -> None:
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0


def test_sign_in_page_and_attempts_answer_503_in_the_layout(client, cache_down):
    """With the cache down the sign-in page and each attempt answer 503 with
    Retry-After and the message in the site's layout; each refused attempt is
    one audit event naming the address tried; nobody is signed in."""
    user = UserFactory()
    page = client.get(reverse("accounts:login"))
    _refused(page)
    body = page.content.decode()
    assert SIGN_IN_UNAVAILABLE.split(".")[0] in body
    assert "<html" in body and 'href="/"' in body  # the site's layout
    assert "Traceback" not in body and "ConnectionError" not in body
    for _ in range(3):
        attempt = client.post(
            reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
        )
        _refused(attempt)
    assert "_auth_user_id" not in client.session
    events = AuditEvent.objects.filter(event_type="auth.unavailable")
    assert events.count() == 3
    assert {e.actor_label for e in events} == {user.email}
    assert {e.outcome for e in events} == {"error"}
    assert {e.error_code for e in events} == {"cache_unavailable"}


def test_api_clients_get_json(client, cache_down):
    """A client that asks for JSON gets the message and retry_after as JSON."""
    response = client.post(
        reverse("accounts:login"),
        {"username": "someone@example.com", "password": "x"},
        headers={"Accept": "application/json"},
    )
    _refused(response)
    assert response.json() == {
        "detail": SIGN_IN_UNAVAILABLE,
        "retry_after": int(response["Retry-After"]),
    }


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("accounts:signup", {"email": "new@example.com", "password1": "x"}),
        ("accounts:password-reset", {"email": "someone@example.com"}),
        ("accounts:resend", {"email": "someone@example.com"}),
    ],
)
def test_every_rate_limited_form_fails_closed(client, cache_down, name, data):
    """Sign-up, password reset and resend refuse with 503 (their counters are
    in the cache) and write nothing but the audit event of the refusal."""
    from accounts.models import User

    users = User.objects.count()
    response = client.post(reverse(name), data)
    _refused(response)
    assert SIGN_IN_UNAVAILABLE.split(".")[0] in response.content.decode()
    assert User.objects.count() == users
    assert AuditEvent.objects.filter(event_type="auth.unavailable").count() == 1


def test_the_code_step_fails_closed(client, cache):
    """A sign-in that reached the 2FA step when the cache fails is refused
    with 503 at the code step, and stays not signed in."""
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    first = client.post(
        reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
    )
    assert first.status_code == 302
    cache.down()
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=6)
    response = client.post(reverse("accounts:login-otp"), {"token": f"{code:06d}"})
    _refused(response)
    assert "_auth_user_id" not in client.session


def test_signed_in_pages_and_health_keep_working(client, otp_login, cache):
    """A signed-in user's project pages and /healthz answer 200 while the cache
    is down (sessions are in the database); sign-in answers 200 again as soon
    as the cache is back, with no restart."""
    member = MembershipFactory(role=Role.OWNER)
    otp_login(client, member.user)
    cache.down()
    assert client.get(reverse("projects:list")).status_code == 200
    detail = reverse("projects:detail", args=[member.project.pk])
    assert client.get(detail).status_code == 200
    assert client.get("/healthz").status_code == 200
    client.logout()
    _refused(client.get(reverse("accounts:login")))
    cache.up()
    assert client.get(reverse("accounts:login")).status_code == 200


def test_a_locked_embedded_cache_fails_fast(client, settings, tmp_path):
    """The embedded default's cache file held by another process: a sign-in
    attempt answers 503 within seconds instead of hanging, and the next one
    after the lock is released goes through to the password check."""
    user = UserFactory()
    settings.KREO_CACHE_TIMEOUT = 1.0
    settings.CACHES = {
        alias: {
            "BACKEND": "kreo.cache.SharedCache",
            "LOCATION": str(tmp_path / alias),
            "FAIL_AFTER": 1.0,
        }
        for alias in ("default", "ratelimit")
    }
    assert client.get(reverse("accounts:login")).status_code == 200  # files made
    holder = sqlite3.connect(tmp_path / "ratelimit" / "000" / "cache.db", timeout=0)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = client.post(
            reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
        )
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _refused(response)
    assert elapsed < 5, f"the refusal took {elapsed:.1f} s"
    assert AuditEvent.objects.filter(event_type="auth.unavailable").count() == 1
    again = client.post(
        reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
    )
    assert again.status_code == 302


@pytest.fixture
def broker_down():
    """Point the Celery app at a Redis broker that does not answer."""
    from kreo.celery import app

    working = app.conf.broker_url

    def reconnect(url: str) -> None:
        app.conf.broker_url = url
        # Celery keeps its connection and producer pools (it drops them the
        # same way after a fork).
        app._pool = None
        app.amqp._producer_pool = None

    reconnect(f"redis://127.0.0.1:{_closed_port()}/0")
    yield
    reconnect(working)


@pytest.mark.django_db(transaction=True)
def test_account_mail_with_the_broker_down_answers_as_usual(
    client, broker_down, siteverify
):
    """Password reset with the task broker down (the cache up): a known address
    answers exactly as an unknown one (no 500, no 503 that would tell which
    addresses have accounts); the mail that could not be queued is an audit
    event naming the account, for the operator."""
    user = UserFactory()
    url = reverse("accounts:password-reset")
    # A real commit (transactional test): the mail is queued inside the request.
    known = client.post(url, {"email": user.email, "g-recaptcha-response": GOOD})
    unknown = client.post(
        url, {"email": "nobody@example.com", "g-recaptcha-response": GOOD}
    )
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    event = AuditEvent.objects.get(event_type="auth.mail.unqueued")
    assert event.target_id == str(user.pk)
    assert event.error_code == "broker_unavailable"
    assert event.outcome == "error"


@pytest.mark.parametrize("engine", ["cache", "cached_db"])
def test_sessions_on_the_cache_are_refused(settings, engine):
    """The system check refuses a session engine on the cache: signed-in users
    must keep working while Redis is down; the database engine passes."""
    from kreo.checks import session_engine_check

    assert session_engine_check() == []
    settings.SESSION_ENGINE = f"django.contrib.sessions.backends.{engine}"
    assert [e.id for e in session_engine_check()] == ["kreo.E011"]


@pytest.fixture
def read_only_cache(settings, tmp_path):
    """The embedded default's cache folder made unwritable (immutable, so even
    root cannot write it: the tests run as root)."""
    import shutil
    import subprocess

    from kreo.cache import SharedCache

    folder = tmp_path / "ratelimit"
    SharedCache(str(folder), {}).close()
    paths = [str(folder), *(str(p) for p in folder.rglob("*"))]
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *paths]).returncode:  # noqa: S603
        pytest.skip("chattr +i is not available here")
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {"BACKEND": "kreo.cache.SharedCache", "LOCATION": str(folder)},
    }
    yield folder
    subprocess.run([chattr, "-i", *paths], check=True)  # noqa: S603


def test_an_unwritable_cache_folder_answers_503(client, read_only_cache):
    """var/cache that cannot be written: the sign-in page and an attempt answer
    503 with the message at once (not a 500, not a hang)."""
    started = time.monotonic()
    page = client.get(reverse("accounts:login"))
    attempt = client.post(
        reverse("accounts:login"), {"username": "a@example.com", "password": "x"}
    )
    _refused(page)
    _refused(attempt)
    assert SIGN_IN_UNAVAILABLE.split(".")[0] in attempt.content.decode()
    assert time.monotonic() - started < 5
