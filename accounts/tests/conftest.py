"""Real parts for the accounts tests: an SMTP server and a siteverify server."""

import email
import json
import socket
import threading
from contextlib import contextmanager
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller

from kreo.celery import app as celery_app

SITE_SECRET = "test-recaptcha-secret"  # noqa: S105
GOOD_TOKEN = "solved-captcha"  # noqa: S105


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self):
        self.messages = []
        self.sessions = 0  # SMTP conversations (EHLO), mail or not
        self.arrived = threading.Condition()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions += 1
        return responses

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list:
        return [
            m
            for m in self.messages
            if address in [a.addr_spec for a in m["To"].addresses]
        ]

    @staticmethod
    def body(message) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    def wait_for(self, count: int, seconds: float = 30) -> list:
        """Block until ``count`` messages have arrived (a worker sends them)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, seconds)
        return self.messages


@pytest.fixture
def smtp(settings):
    """A real SMTP server on a free loopback port; Django sends mail to it."""
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    yield inbox
    controller.stop()


class SiteVerify:
    """State of the local siteverify server: which tokens it accepts."""

    def __init__(self):
        self.accept_all = False
        self.tokens = {GOOD_TOKEN}
        self.requests = []


@pytest.fixture
def siteverify(settings):
    """reCAPTCHA as the CAPTCHA, checked by a local server speaking its
    siteverify protocol.

    It accepts ``GOOD_TOKEN`` (or any token with ``accept_all``) when the
    secret is right, and answers like Google: JSON with ``success`` and
    ``error-codes``.
    """
    state = SiteVerify()
    settings.KREO_CAPTCHA = "recaptcha"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            form = {
                k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()
            }
            state.requests.append(form)
            if form.get("secret") != SITE_SECRET:
                answer = {"success": False, "error-codes": ["invalid-input-secret"]}
            elif state.accept_all or form.get("response") in state.tokens:
                answer = {"success": True, "hostname": "testserver"}
            else:
                answer = {"success": False, "error-codes": ["invalid-input-response"]}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.RECAPTCHA_PRIVATE_KEY = SITE_SECRET
    settings.RECAPTCHA_VERIFY_URL = (
        f"http://127.0.0.1:{server.server_address[1]}/recaptcha/api/siteverify"
    )
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def mail_now(django_capture_on_commit_callbacks):
    """Run on-commit callbacks (mail) of what happens inside the block, and the
    Celery tasks they queue, in this process (as ``backups`` tests do); the
    worker path itself is covered by the ``celery``-marked tests."""

    @contextmanager
    def run():
        celery_app.conf.task_always_eager = True
        celery_app.conf.task_eager_propagates = True  # a failing task fails the test
        try:
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                yield callbacks
        finally:
            celery_app.conf.task_always_eager = False
            celery_app.conf.task_eager_propagates = False

    return run
