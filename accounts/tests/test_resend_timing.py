"""Sign-up and resend do no mail work on the request path, whatever the address.

Resend mailed a link inside the request, and only for an unverified account,
so its answer took an SMTP round trip longer exactly when such an account
existed; sign-up mailed inline too. As for the reset request
(``test_reset_timing``), these tests prove the fix by structure, not by a
clock: the local SMTP server counts every conversation, and the broker's queue
is read directly. The ``celery``-marked tests let each request commit as in
production, so anything it sends after commit would reach the SMTP server.
"""

import re

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.services import VERIFY_INVALID
from accounts.tests.factories import UserFactory
from accounts.tests.test_reset_timing import queued
from accounts.tests.test_signup import PASSWORD, same_bytes, signup
from audit.models import AuditEvent
from kreo.celery import app as celery_app

PENDING, VERIFIED = "pending@example.test", "verified@example.test"
BARRED, UNKNOWN = "barred@example.test", "nobody@example.test"
TAKEN, NEW = "taken@example.test", "new@example.test"


def resend(client, email):
    return client.post(reverse("accounts:resend"), {"email": email})


def drain(smtp, count: int) -> None:
    """Let a real worker take every queued task; wait for ``count`` mails."""
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        smtp.wait_for(count)
    assert queued() == 0


def verify_path(inbox, message) -> str:
    link = re.search(r"https?://testserver(\S+)", inbox.body(message)).group(1)
    assert "/verify/" in link
    return link


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_resend_queues_a_task_only_for_an_unverified_account(smtp):
    """Unverified, verified, deactivated and unknown addresses get the same answer
    and no SMTP conversation; only the unverified one queues a task, which a
    real worker turns into a link that verifies once. Audit and limits as before."""
    UserFactory(email=PENDING, is_active=False)
    UserFactory(email=VERIFIED, email_verified_at=timezone.now())
    UserFactory(email=BARRED, is_active=False, email_verified_at=timezone.now())
    client = Client()
    before = queued()
    answers = []
    for count in (1, 2, 3):
        answers.append(same_bytes(resend(client, PENDING)))
        assert smtp.sessions == 0
        assert queued() == before + count
    for address in (VERIFIED, BARRED, UNKNOWN):
        answers.append(same_bytes(resend(client, address)))
    assert queued() == before + 3
    assert len(set(answers)) == 1
    assert resend(client, PENDING).status_code == 429  # the account limit, as before
    assert queued() == before + 3
    assert smtp.sessions == 0 and smtp.messages == []

    events = AuditEvent.objects.filter(event_type="auth.verify.resent")
    assert [e.actor.email for e in events] == [PENDING] * 3
    assert AuditEvent.objects.filter(event_type="auth.ratelimit.hit").count() == 1

    drain(smtp, 3)
    assert smtp.sessions == 3 and len(smtp.to(PENDING)) == 3
    paths = [verify_path(smtp, message) for message in smtp.to(PENDING)]
    client = Client()
    assert client.post(paths[-1]).status_code == 302
    assert User.objects.get(email=PENDING).is_active
    for path in paths:  # verified now: every link, older ones too, is spent
        assert VERIFY_INVALID in client.post(path).content.decode()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_signup_does_the_same_request_path_work_for_a_new_and_a_taken_address(
    smtp, siteverify
):
    """Either address queues one task and talks to no mail server; the worker
    then tells the owner of the taken address and mails the new one its link."""
    UserFactory(email=TAKEN)
    siteverify.accept_all = True
    client = Client()
    before = queued()
    taken = signup(client, TAKEN, token="first")
    assert smtp.sessions == 0 and queued() == before + 1
    new = signup(client, NEW, token="second")
    assert smtp.sessions == 0 and queued() == before + 2
    assert taken.status_code == 302
    assert same_bytes(taken) == same_bytes(new)

    drain(smtp, 2)
    assert smtp.sessions == 2
    (notice,) = smtp.to(TAKEN)
    assert "already has an" in smtp.body(notice)
    assert "/verify/" not in smtp.body(notice)
    (mail,) = smtp.to(NEW)
    assert Client().post(verify_path(smtp, mail)).status_code == 302
    login = {"username": NEW, "password": PASSWORD}
    assert Client().post(reverse("accounts:login"), login).status_code == 302


def _resend_then_verified(client, siteverify):
    user = UserFactory(email=PENDING, is_active=False)
    yield resend(client, PENDING)
    User.objects.filter(pk=user.pk).update(
        is_active=True, email_verified_at=timezone.now()
    )


def _signup_then_activated_by_staff(client, siteverify):
    yield signup(client, NEW)
    User.objects.filter(email=NEW).update(
        is_active=True, email_verified_at=timezone.now()
    )


def _signup_of_a_taken_address_then_erased(client, siteverify):
    UserFactory(email=TAKEN)
    yield signup(client, TAKEN)
    User.objects.filter(email=TAKEN).delete()


@pytest.mark.parametrize(
    "story",
    [
        _resend_then_verified,
        _signup_then_activated_by_staff,
        _signup_of_a_taken_address_then_erased,
    ],
)
@pytest.mark.django_db
def test_the_account_is_checked_again_when_the_mail_is_sent(
    story, smtp, siteverify, django_capture_on_commit_callbacks, mail_now
):
    """A change between the request and the task stops the mail: no stale link
    for an account that no longer awaits one, no notice for an erased one."""
    client = Client()
    steps = story(client, siteverify)
    with django_capture_on_commit_callbacks() as after:
        assert next(steps).status_code == 302
    next(steps, None)  # the change, made after the commit
    assert after  # the request did queue its mail
    with mail_now():
        for callback in after:
            callback()
    assert smtp.sessions == 0 and smtp.messages == []
