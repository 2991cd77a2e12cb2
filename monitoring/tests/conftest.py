"""Real parts for the monitoring tests: SMTP (shared with accounts), a
loopback webhook receiver, and settings that let a test's events be read at once."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from accounts.tests.conftest import mail_now, smtp  # noqa: F401 - fixtures
from kreo.celery import app as celery_app
from monitoring import notify

WEBHOOK_SECRET = "webhook-test-secret-" + "s" * 20  # noqa: S105


@pytest.fixture
def rules_now(settings):
    """Rules read events as soon as they are written; sign-in limits and the
    adaptive CAPTCHA out of the way, so a test can fail many sign-ins."""
    settings.MONITORING_RULES_SETTLE_SECONDS = 0
    settings.ACCOUNTS_CAPTCHA_AFTER_ACCOUNT = 10_000
    settings.ACCOUNTS_CAPTCHA_AFTER_IP = 10_000
    settings.ACCOUNTS_LOCKOUT_THRESHOLD = 10_000
    settings.ACCOUNTS_RATES = {
        **settings.ACCOUNTS_RATES,
        "login-ip": "10000/m",
        "login-account": "10000/m",
    }
    settings.MONITORING_ALERT_EMAILS = ["soc@example.test"]
    return settings


class Receiver:
    """What the loopback webhook receiver got, and what it answers."""

    def __init__(self):
        self.status = 200
        self.requests: list[dict] = []
        self.arrived = threading.Condition()

    def verified(self) -> list[dict]:
        """Bodies whose signature checks out with the shared secret."""
        return [
            json.loads(r["body"])
            for r in self.requests
            if r["signature"]
            == notify.sign(WEBHOOK_SECRET, r["timestamp"] or "", r["body"])
        ]


@pytest.fixture
def webhook(settings):
    """A real HTTP server on loopback taking the alert webhook's POSTs."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.arrived:
                state.requests.append(
                    {
                        "body": body,
                        "timestamp": self.headers.get(notify.TIMESTAMP_HEADER),
                        "signature": self.headers.get(notify.SIGNATURE_HEADER),
                    }
                )
                state.arrived.notify_all()
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.MONITORING_WEBHOOK_URL = f"http://127.0.0.1:{server.server_address[1]}/h"
    settings.MONITORING_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.MONITORING_WEBHOOK_BACKOFF_SECONDS = 0
    settings.MONITORING_WEBHOOK_RETRIES = 3
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def retries_now(django_capture_on_commit_callbacks):
    """Like ``mail_now``, but a task's retries run at once in this process
    (Celery re-applies an eager task that retries, unless errors propagate)."""

    @contextmanager
    def run():
        celery_app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                yield callbacks
        finally:
            celery_app.conf.task_always_eager = False

    return run


@pytest.fixture(autouse=True)
def _fresh_ip_filter(settings):
    """Each test starts from the database's entries, and leaves no process
    copy of its (rolled back) entries to the next test; refusal counters of
    earlier tests (entry ids come back after a rollback) are not seen."""
    import uuid

    from monitoring import ipfilter

    caches = {**settings.CACHES}
    caches["default"] = {
        **caches["default"],
        "KEY_PREFIX": f"{caches['default'].get('KEY_PREFIX', '')}-{uuid.uuid4().hex}",
    }
    settings.CACHES = caches
    ipfilter.FILTER.reset()
    yield
    ipfilter.FILTER.reset()
