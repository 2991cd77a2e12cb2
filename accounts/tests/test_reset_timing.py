"""A reset request does no mail work on the request path, known address or not.

Sending the reset mail inside the request made a known address answer an SMTP
round trip slower than an unknown one. These tests prove the fix by structure,
not by a clock: the local SMTP server counts every conversation, and the
broker's queue is read directly.
"""

import re

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client
from django.urls import reverse

from accounts.models import User
from accounts.tests.conftest import GOOD_TOKEN
from accounts.tests.factories import UserFactory
from accounts.tests.test_signup import same_bytes
from audit.models import AuditEvent
from kreo.celery import app as celery_app

NEW_PASSWORD = "a brand new long password 7"  # noqa: S105
KNOWN, UNKNOWN = "known@example.test", "nobody@example.test"


def reset(client, email):
    return client.post(
        reverse("accounts:password-reset"),
        {"email": email, "g-recaptcha-response": GOOD_TOKEN},
    )


def queued() -> int:
    """Messages waiting in this run's Celery queue on the configured broker."""
    with celery_app.connection_for_read() as conn:
        name = celery_app.conf.task_default_queue
        return conn.default_channel.queue_declare(
            queue=name, durable=True, auto_delete=False
        ).message_count


def use_link_once(inbox, address):
    """The mailed link sets a new password once, then is refused."""
    (message,) = inbox.to(address)
    link = re.search(r"https?://testserver(\S+)", inbox.body(message)).group(1)
    client = Client()
    form = client.get(link, follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302
    assert User.objects.get(email=address).check_password(NEW_PASSWORD)
    assert "not valid" in Client().get(link, follow=True).content.decode()


@pytest.mark.django_db
def test_the_request_opens_no_smtp_conversation_for_either_address(
    smtp, siteverify, django_capture_on_commit_callbacks, mail_now
):
    """Both answers leave the mail server untouched; the known one's mail follows."""
    UserFactory(email=KNOWN)
    client = Client()
    with django_capture_on_commit_callbacks() as known_after:
        known = reset(client, KNOWN)
    with django_capture_on_commit_callbacks() as unknown_after:
        unknown = reset(client, UNKNOWN)
    assert known.status_code == 302
    assert known["Location"] == reverse("accounts:password-reset-done")
    assert same_bytes(known) == same_bytes(unknown)
    assert smtp.sessions == 0 and smtp.messages == []

    with mail_now():  # what runs after commit: nothing for the unknown address
        for callback in unknown_after:
            callback()
    assert smtp.sessions == 0
    with mail_now():
        for callback in known_after:
            callback()
    assert smtp.sessions == 1 and smtp.to(UNKNOWN) == []
    use_link_once(smtp, KNOWN)


@pytest.mark.django_db
def test_accounts_that_cannot_reset_get_no_mail_and_the_same_answer(
    smtp, siteverify, mail_now
):
    """Inactive accounts and accounts without a usable password are not told."""
    UserFactory(email="inactive@example.test", is_active=False)
    UserFactory(email="sso@example.test")
    User.objects.filter(email="sso@example.test").update(password="!")  # SSO only
    client = Client()
    with mail_now():
        answers = [
            same_bytes(reset(client, email))
            for email in ("inactive@example.test", "sso@example.test", UNKNOWN)
        ]
    assert answers[0] == answers[1] == answers[2]
    assert smtp.sessions == 0


@pytest.mark.django_db
def test_account_is_checked_again_when_the_mail_is_sent(
    smtp, siteverify, django_capture_on_commit_callbacks, mail_now
):
    """An account deactivated after the request but before the task gets no link."""
    user = UserFactory(email=KNOWN)
    with django_capture_on_commit_callbacks() as after:
        reset(Client(), KNOWN)
    User.objects.filter(pk=user.pk).update(is_active=False)
    with mail_now():
        for callback in after:
            callback()
    assert smtp.sessions == 0


@pytest.mark.django_db
def test_audit_and_rate_limits_are_unchanged(smtp, siteverify, mail_now):
    """Every request is audited alike; the fourth for one account is refused."""
    UserFactory(email=KNOWN)
    client = Client()
    with mail_now():
        statuses = [reset(client, KNOWN).status_code for _ in range(4)]
        reset(client, UNKNOWN)
    assert statuses == [302, 302, 302, 429]
    assert len(smtp.to(KNOWN)) == 3
    events = AuditEvent.objects.filter(event_type="auth.password.reset_requested")
    assert sorted(e.details["email"] for e in events) == [KNOWN] * 3 + [UNKNOWN]


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_known_address_queues_one_task_that_a_real_worker_mails(smtp, siteverify):
    """Through the real broker: one message for a known address, none for an
    unknown one, no mail until a worker takes it, then a working link."""
    UserFactory(email=KNOWN)
    client = Client()
    before = queued()
    known = reset(client, KNOWN)
    assert queued() == before + 1
    unknown = reset(client, UNKNOWN)
    assert queued() == before + 1
    assert same_bytes(known) == same_bytes(unknown)
    assert smtp.sessions == 0

    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        smtp.wait_for(1)
    assert queued() == 0
    assert smtp.sessions == 1 and smtp.to(UNKNOWN) == []
    use_link_once(smtp, KNOWN)
