"""Subscriptions through the real SMTP server and a loopback webhook receiver."""

import hashlib
import hmac
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.urls import reverse

from audit.models import AuditEvent
from status import forms, subscribe_views, subscriptions
from status.models import Delivery, IncidentStatus, Subscriber
from status.tests import factories

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://\S+/status/(subscribe/confirm|unsubscribe)/[^/\s]+/")


def _path(url: str) -> str:
    return "/status/" + url.split("/status/", 1)[1]


def _subscribe(client, **data):
    return client.post(reverse("status:subscribe"), data)


def test_round_trip_confirm_notify_unsubscribe(client, components, smtp, mail_now):
    """Subscribe, confirm by the mailed link, receive an update with a
    List-Unsubscribe header, leave by the link: no more mail."""
    with mail_now():
        response = _subscribe(client, email="Ann@Example.com", components=["api"])
    assert response.status_code == 200
    assert subscribe_views.CHECK_MAIL in response.content.decode()
    [first] = smtp.wait_for(1)
    assert first["Subject"] == "Confirm your subscription to Kreo status"
    confirm = LINK.search(smtp.body(first)).group(0)
    assert "/subscribe/confirm/" in confirm
    # Opening the link only shows a button (mail scanners open links).
    assert client.get(_path(confirm)).status_code == 200
    assert Subscriber.objects.get().confirmed_at is None
    assert client.post(_path(confirm)).status_code == 200
    assert Subscriber.objects.get().confirmed_at is not None

    with mail_now():
        factories.incident(
            components=[components["api"]],
            updates=[(IncidentStatus.INVESTIGATING, "API errors <b>rising</b>")],
        )
    messages = smtp.wait_for(2)
    update = messages[1]
    assert update["Subject"] == "[Kreo status] Uploads fail"
    assert "API errors <b>rising</b>" in smtp.body(update)  # plain text mail
    assert update["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = update["List-Unsubscribe"].strip("<>")
    # One-click (RFC 8058): a POST with no CSRF token, as mail clients send it.
    csrf_client = client.__class__(enforce_csrf_checks=True)
    response = csrf_client.post(_path(unsubscribe), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert not Subscriber.objects.exists()
    with mail_now():
        factories.incident(components=[components["api"]])
    assert len(smtp.messages) == 2
    assert AuditEvent.objects.filter(
        event_type="status.subscription.cancelled"
    ).exists()


def test_only_chosen_components_are_notified(components, smtp, mail_now):
    """A subscriber of Email hears nothing of an API incident."""
    subscriber = Subscriber.objects.create(
        kind="email", email="bo@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    subscriber.components.set([components["email"]])
    with mail_now():
        factories.incident(components=[components["api"]])
        factories.incident(title="Mail delayed", components=[components["email"]])
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "[Kreo status] Mail delayed"


def test_an_update_is_never_sent_twice(components, smtp, mail_now):
    """The notify task run again for the same update sends nothing more."""
    Subscriber.objects.create(
        kind="email", email="cy@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    with mail_now():
        incident = factories.incident()
    update = incident.updates.get()
    assert subscriptions.update_notify(update_id=update.pk) == 0
    assert len(smtp.wait_for(1)) == 1
    assert Delivery.objects.filter(update=update).count() == 1


def test_repeated_subscriptions_send_one_mail_and_reveal_nothing(
    client, components, smtp, mail_now
):
    """Asking again for a pending or a confirmed address: the same answer,
    and no second mail within the interval."""
    with mail_now():
        first = _subscribe(client, email="dee@example.com")
        second = _subscribe(client, email="dee@example.com")
    Subscriber.objects.update(confirmed_at="2026-01-01T00:00Z")
    with mail_now():
        third = _subscribe(client, email="dee@example.com")
        stranger = _subscribe(client, email="new@example.com")
    assert first.content == second.content == third.content
    assert third.content.replace(b"new@", b"dee@") == stranger.content.replace(
        b"new@", b"dee@"
    )
    smtp.wait_for(2)
    assert [m["To"] for m in smtp.messages] == ["dee@example.com", "new@example.com"]


def test_subscribing_is_rate_limited(client, components, settings):
    """Past the per-IP limit: 429 with Retry-After, nothing stored."""
    settings.STATUS_RATES = {**settings.STATUS_RATES, "subscribe-ip": "2/h"}
    for n in range(2):
        assert _subscribe(client, email=f"u{n}@example.com").status_code == 200
    response = _subscribe(client, email="u9@example.com")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert not Subscriber.objects.filter(email="u9@example.com").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not an address"}, forms.BAD_EMAIL),
        ({"email": "a@b@c"}, forms.BAD_EMAIL),
        (
            {"email": "ok@example.com", "components": ["nope"]},
            "Choose components from the list; “nope” is not one of them.",
        ),
        ({"email": "ok@example.com", "webhook": "javascript:alert(1)"}, forms.BAD_URL),
    ],
)
def test_bad_input_gets_a_clear_message(client, components, data, message):
    """Malformed address, unknown component, bad URL: 400 with the reason."""
    response = _subscribe(client, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Subscriber.objects.exists()


def test_webhooks_to_private_addresses_are_refused(client, components):
    """No SSRF: a webhook at a loopback address is refused by default."""
    response = _subscribe(
        client, email="e@example.com", webhook="https://127.0.0.1/hook"
    )
    assert response.status_code == 400
    assert subscriptions.WEBHOOK_NOT_PUBLIC in response.content.decode()


def test_forged_and_tampered_links_are_refused(client, components):
    """A made-up token, a token for another purpose, one of a deleted
    subscription: 400 with a clear text, no change."""
    subscriber = Subscriber.objects.create(kind="email", email="f@example.com")
    confirm = subscriptions.confirm_url(subscriber)
    # A confirm token is not an unsubscribe token.
    token = confirm.rstrip("/").rsplit("/", 1)[1]
    response = client.post(reverse("status:unsubscribe", kwargs={"token": token}))
    assert response.status_code == 400
    assert subscriptions.LINK_INVALID in response.content.decode()
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    response = client.post(
        reverse("status:subscribe-confirm", kwargs={"token": tampered})
    )
    assert response.status_code == 400
    subscriber.refresh_from_db()
    assert subscriber.confirmed_at is None


class Receiver:
    """A loopback HTTP server that checks each webhook's signature."""

    def __init__(self):
        self.secret = ""
        self.received = []
        self.valid = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers[subscriptions.TIMESTAMP_HEADER]
                mac = hmac.new(
                    receiver.secret.encode(),
                    stamp.encode() + b"." + body,
                    hashlib.sha256,
                ).hexdigest()
                given = self.headers[subscriptions.SIGNATURE_HEADER]
                receiver.valid.append(hmac.compare_digest(given, f"sha256={mac}"))
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver(settings):
    settings.STATUS_WEBHOOK_ALLOW_PRIVATE = True
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_webhook_is_signed_and_checked_by_the_receiver(
    client, components, smtp, mail_now, receiver
):
    """A confirmed webhook gets the update as Statuspage-shaped JSON, signed
    with HMAC-SHA256 under the secret shown once at confirmation."""
    with mail_now():
        _subscribe(client, email="ops@example.com", webhook=receiver.url)
    [message] = smtp.wait_for(1)
    confirm = LINK.search(smtp.body(message)).group(0)
    page = client.post(_path(confirm)).content.decode()
    subscriber = Subscriber.objects.get(kind="webhook")
    assert subscriber.secret in page
    receiver.secret = subscriber.secret
    with mail_now():
        factories.incident(title="Storage slow", components=[components["storage"]])
    assert receiver.arrived.wait(10)
    assert receiver.valid == [True]
    body = receiver.received[0]
    assert body["incident"]["name"] == "Storage slow"
    assert body["incident"]["incident_updates"][0]["status"] == "investigating"
    # A receiver holding a wrong secret would reject it.
    receiver.secret = "forged"
    receiver.arrived.clear()
    with mail_now():
        factories.incident(title="Again")
    assert receiver.arrived.wait(10)
    assert receiver.valid == [True, False]


def test_no_mail_leaves_before_the_commit(components, mail_now):
    """Without a commit (a rolled-back admin save) no notification goes."""
    Subscriber.objects.create(
        kind="email", email="g@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    factories.incident()
    assert mail.outbox == []


def test_one_address_is_rate_limited_across_addresses_of_senders(
    client, components, settings, smtp, mail_now
):
    """Past the per-address limit: still the same answer, but no more rows
    changed and no mail."""
    settings.STATUS_RATES = {**settings.STATUS_RATES, "subscribe-account": "1/h"}
    settings.STATUS_MAIL_INTERVAL_SECONDS = 0
    with mail_now():
        first = _subscribe(client, email="h@example.com")
        second = _subscribe(client, email="h@example.com")
    assert first.content == second.content
    smtp.wait_for(1)
    assert len(smtp.messages) == 1
