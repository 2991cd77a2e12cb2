"""Invitations: the same answer for every address, a link only its address can use.

Mail goes through the local SMTP server (aiosmtpd); the mail tasks run in
this process after commit (``mail_now``), as the accounts tests run theirs.
"""

import re
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.http import urlencode

from accounts.models import User
from accounts.tests.conftest import GOOD_TOKEN
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_signup import PASSWORD as SIGNUP_PASSWORD
from accounts.tests.test_signup import link_in, same_bytes
from audit.models import AuditEvent
from kreo.celery import app as celery_app
from projects import invitations
from projects.invitations import (
    LINK_EXPIRED,
    LINK_REVOKED,
    LINK_TAMPERED,
    LINK_USED,
    LINK_WRONG_ADDRESS,
)
from projects.models import Invitation, Membership, Role
from projects.tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]+"')
SIGNED_AT = re.compile(r":[0-9A-Za-z]+:[0-9A-Za-z_-]+;")


@pytest.fixture
def owner(client):
    user = UserFactory(email="owner@example.test")
    client.force_login(user)
    return user


@pytest.fixture
def project(owner):
    return MembershipFactory(user=owner, role=Role.OWNER).project


def invite(client, project, email, role="editor", **extra):
    url = reverse("projects:members", args=[project.pk])
    return client.post(url, {"email": email, "role": role}, **extra)


def path_of(link: str) -> str:
    return link.split("testserver", 1)[1]


def invited_link(client, project, smtp, mail_now, email, role="editor") -> str:
    with mail_now():
        assert invite(client, project, email, role).status_code == 302
    return path_of(link_in(smtp, email.lower()))


def refusals():
    return list(
        AuditEvent.objects.filter(event_type="project.invite.refused")
        .order_by("pk")
        .values_list("error_code", flat=True)
    )


def raw(response) -> bytes:
    """Status, headers, cookies and body, without the per-request parts: the
    CSRF token, and the time (and so the signature) of the signed message
    cookie; its content, the message itself, stays."""
    cookies = "".join(sorted(c.OutputString() for c in response.cookies.values()))
    cookies = SIGNED_AT.sub(":", cookies)
    return CSRF.sub(b"", same_bytes(response)) + cookies.encode()


def test_invitation_round_trip_for_an_account_and_a_new_address(
    client, owner, project, smtp, siteverify, mail_now
):
    """Both addresses get the byte-identical answer and a mail; each joins only
    after accepting, signed in with the invited address (a new person signs up
    first); the inviter is told; the link then works no more."""
    UserFactory(email="known@example.test")
    client.get(reverse("projects:members", args=[project.pk]))  # device cookie
    with mail_now():
        known = invite(client, project, "Known@Example.test")
        client.get(reverse("projects:members", args=[project.pk]))  # its message
        unknown = invite(client, project, "newcomer@example.test")
    assert known.status_code == unknown.status_code == 302
    assert raw(known) == raw(unknown)
    page = client.get(reverse("projects:members", args=[project.pk]))
    assert page.content.count(invitations.INVITED.format(days=7).encode()) == 1
    assert invitations.INVITED.format(days=7).encode() in page.content
    assert b"known@example.test" in page.content  # pending, listed
    assert b"newcomer@example.test" in page.content
    assert not Membership.objects.filter(project=project).exclude(user=owner).exists()
    stored = Invitation.objects.get(email="known@example.test")
    assert len(stored.token_digest) == 64

    # The account holder: signs in, sees the invitation, accepts.
    known_link = path_of(link_in(smtp, "known@example.test"))
    assert known_link.split("/")[-2] not in stored.token_digest  # digest only
    person = Client()
    response = person.get(known_link)
    assert response.status_code == 200
    login = f"{reverse('accounts:login')}?{urlencode({'next': known_link})}"
    assert escape(login).encode() in response.content  # "Sign in", then back
    response = person.post(
        login, {"username": "known@example.test", "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == known_link
    assert b"Accept and join" in person.get(known_link).content
    assert not Membership.objects.filter(user__email="known@example.test").exists()
    with mail_now():
        response = person.post(known_link)
    assert response.status_code == 302
    assert response["Location"] == project.get_absolute_url()
    membership = Membership.objects.get(user__email="known@example.test")
    assert membership.role == Role.EDITOR
    (told,) = smtp.to("owner@example.test")
    assert "known@example.test accepted your invitation" in smtp.body(told)
    replay = person.post(known_link)
    assert replay.status_code == 410 and LINK_USED.encode() in replay.content

    # The new address: the link page offers sign-in and sign-up; after both,
    # the same link joins.
    new_link = path_of(link_in(smtp, "newcomer@example.test"))
    stranger = Client()
    page = stranger.get(new_link)
    assert (
        page.status_code == 200
        and b"Sign up with newcomer@example.test" in page.content
    )
    signup_url = f"{reverse('accounts:signup')}?{urlencode({'next': new_link})}"
    assert escape(signup_url).encode() in page.content
    assert stranger.get(signup_url).status_code == 200
    with mail_now():
        response = stranger.post(
            signup_url,
            {
                "email": "newcomer@example.test",
                "password1": SIGNUP_PASSWORD,
                "password2": SIGNUP_PASSWORD,
                "g-recaptcha-response": GOOD_TOKEN,
            },
        )
    assert response.status_code == 302
    confirm = [
        re.search(r"https?://\S+", smtp.body(m)).group(0)
        for m in smtp.to("newcomer@example.test")
        if "/accounts/" in smtp.body(m)
    ][0]
    # Confirmed in this browser: signed in, and back at the invitation.
    response = stranger.post(path_of(confirm))
    assert response.status_code == 302 and response["Location"] == new_link
    assert b"Accept and join" in stranger.get(new_link).content
    with mail_now():
        assert stranger.post(new_link).status_code == 302
    assert Membership.objects.get(user__email="newcomer@example.test").role == "editor"
    assert len(smtp.to("owner@example.test")) == 2
    types = set(AuditEvent.objects.values_list("event_type", flat=True))
    assert {"project.invite.create", "project.invite.accept"} <= types
    assert "project.member.add" in types


def test_a_link_for_another_address_joins_nobody(client, project, smtp, mail_now):
    """Signed in as someone else: a clear 400, nothing joined, audited."""
    link = invited_link(client, project, smtp, mail_now, "carol@example.test")
    mallory = Client()
    mallory.force_login(UserFactory(email="mallory@example.test"))
    for send in (mallory.get, mallory.post):
        response = send(link)
        assert response.status_code == 400
        assert LINK_WRONG_ADDRESS.encode() in response.content
    assert not Membership.objects.filter(user__email="mallory@example.test").exists()
    assert refusals() == ["wrong_address", "wrong_address"]
    # The link is not spent: carol can still use it.
    carol = Client()
    carol.force_login(UserFactory(email="carol@example.test"))
    assert carol.post(link).status_code == 302


@pytest.mark.parametrize("case", ["expired", "revoked", "renewed", "forged", "cut"])
def test_a_bad_link_is_refused_with_a_clear_page(client, project, smtp, mail_now, case):
    """Expired, revoked, superseded, forged or damaged: nothing joined, audited."""
    link = invited_link(client, project, smtp, mail_now, "dave@example.test")
    invitation = Invitation.objects.get(email="dave@example.test")
    token = link.rstrip("/").split("/")[-1]
    expected = {
        "expired": (410, LINK_EXPIRED, "expired"),
        "revoked": (410, LINK_REVOKED, "revoked"),
        "renewed": (400, LINK_TAMPERED, "tampered"),
        "forged": (400, LINK_TAMPERED, "tampered"),
        "cut": (400, LINK_TAMPERED, "tampered"),
    }[case]
    if case == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    elif case == "revoked":
        url = reverse("projects:invitation-revoke", args=[project.pk, invitation.pk])
        assert client.post(url).status_code == 302
        page = client.get(reverse("projects:members", args=[project.pk]))
        assert b"dave@example.test" in page.content  # in the revoke message only
        assert b"Revoke the invitation of dave" not in page.content
    elif case == "renewed":
        with mail_now():
            invite(client, project, "dave@example.test", role="viewer")
        assert Invitation.objects.get(email="dave@example.test").role == "viewer"
    elif case == "forged":
        # A well-signed link (as if the key leaked) with a guessed secret.
        forged = signing.dumps([invitation.pk, "guess"], salt=invitations.SALT)
        link = reverse("projects:invitation-accept", args=[forged])
    elif case == "cut":
        link = reverse("projects:invitation-accept", args=[token[:-3] + "abc"])
    dave = Client()
    dave.force_login(UserFactory(email="dave@example.test"))
    status, message, code = expected
    for send in (dave.get, dave.post):
        response = send(link)
        assert response.status_code == status
        assert message.encode() in response.content
    assert not Membership.objects.filter(user__email="dave@example.test").exists()
    assert refusals() == [code, code]


def test_an_old_signature_expires_even_if_the_row_says_otherwise(
    client, project, smtp, mail_now, settings
):
    """The signature's own age is checked too (a row edited in the database)."""
    link = invited_link(client, project, smtp, mail_now, "erin@example.test")
    settings.KREO_INVITATION_DAYS = 0
    erin = Client()
    erin.force_login(UserFactory(email="erin@example.test"))
    response = erin.post(link)
    assert response.status_code == 410 and LINK_EXPIRED.encode() in response.content
    assert not Membership.objects.filter(user__email="erin@example.test").exists()


def test_role_change_and_removal_are_mailed_and_audited(
    client, project, smtp, mail_now
):
    member = MembershipFactory(
        project=project, user=UserFactory(email="frank@example.test"), role="viewer"
    )
    with mail_now():
        client.post(
            reverse("projects:member-role", args=[project.pk, member.pk]),
            {"role": "editor"},
        )
        client.post(reverse("projects:member-remove", args=[project.pk, member.pk]))
    role_mail, removed_mail = smtp.to("frank@example.test")
    assert "You are now editor" in smtp.body(role_mail)
    assert "removed you" in smtp.body(removed_mail)
    types = list(AuditEvent.objects.values_list("event_type", flat=True))
    assert "project.member.role" in types and "project.member.remove" in types


def test_the_api_invites_with_the_same_answer_and_joins_nobody(
    owner, project, smtp, mail_now, settings
):
    """202 with the same bytes for an account and an unknown address; mail to
    both; nobody joins; invitations are rate limited."""
    settings.ACCOUNTS_RATES = {**settings.ACCOUNTS_RATES, "invite-account": "3/m"}
    UserFactory(email="known@example.test")
    api = Client()
    api.force_login(owner)
    url = f"/api/projects/{project.pk}/members/"
    with mail_now():
        known = api.post(
            url,
            {"email": "known@example.test", "role": "viewer"},
            content_type="application/json",
        )
        unknown = api.post(
            url,
            {"email": "ghost@example.test", "role": "viewer"},
            content_type="application/json",
        )
    assert known.status_code == unknown.status_code == 202
    assert same_bytes(known) == same_bytes(unknown)
    assert known.json() == {"detail": invitations.INVITED.format(days=7)}
    assert smtp.to("known@example.test") and smtp.to("ghost@example.test")
    assert list(project.memberships.values_list("user__email", flat=True)) == [
        "owner@example.test"
    ]

    statuses = [
        api.post(
            url,
            {"email": f"probe{i}@example.test", "role": "viewer"},
            content_type="application/json",
        ).status_code
        for i in range(3)
    ]
    assert statuses == [202, 429, 429]  # 2 already counted in this minute
    limited = api.post(
        url,
        {"email": "p@example.test", "role": "viewer"},
        content_type="application/json",
    )
    assert limited.status_code == 429 and "Retry-After" in limited
    assert (
        limited.json()["detail"]
        == "Too many attempts. Please wait a while before trying again."
    )
    assert AuditEvent.objects.filter(event_type="auth.ratelimit.hit").exists()
    assert Invitation.objects.filter(project=project).count() == 3


@pytest.mark.django_db(transaction=True)
def test_an_invitation_with_the_broker_down_answers_as_usual(
    client, owner, project, broker_down
):
    """The broker down: the owner gets the usual answer for an account and for
    an unknown address; each mail that could not be queued is an audit error."""
    UserFactory(email="known@example.test")
    client.get(reverse("projects:members", args=[project.pk]))
    known = invite(client, project, "known@example.test")
    client.get(reverse("projects:members", args=[project.pk]))
    unknown = invite(client, project, "nobody@example.test")
    assert known.status_code == unknown.status_code == 302
    assert raw(known) == raw(unknown)
    events = AuditEvent.objects.filter(event_type="project.mail.unqueued")
    assert [(e.outcome, e.error_code) for e in events] == [
        ("error", "broker_unavailable")
    ] * 2


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_mails_the_link_and_the_notice(smtp):
    """Through the broker and a real Celery worker: the invitation mail, then,
    once accepted, the inviter's notice."""
    owner = UserFactory(email="boss@example.test")
    project = MembershipFactory(user=owner, role=Role.OWNER).project
    UserFactory(email="grace@example.test")
    boss, grace = Client(), Client()
    boss.force_login(owner)
    worker = start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    )
    with worker:
        assert invite(boss, project, "grace@example.test").status_code == 302
        smtp.wait_for(1)
        link = path_of(link_in(smtp, "grace@example.test"))
        grace.force_login(User.objects.get(email="grace@example.test"))
        assert grace.post(link).status_code == 302
        smtp.wait_for(2)
    assert Membership.objects.get(user__email="grace@example.test").role == "editor"
    (notice,) = smtp.to("boss@example.test")
    assert "grace@example.test accepted your invitation" in smtp.body(notice)


def test_the_api_lists_and_revokes_pending_invitations(
    client, owner, project, smtp, mail_now
):
    """Owners list pending invitations and revoke one; its link then says so."""
    link = invited_link(client, project, smtp, mail_now, "hank@example.test")
    url = f"/api/projects/{project.pk}/invitations/"
    (listed,) = client.get(url).json()
    assert (listed["email"], listed["role"]) == ("hank@example.test", "editor")
    assert listed["invited_by"] == "owner@example.test"
    assert "token_digest" not in listed
    assert client.delete(f"{url}{listed['id']}/").status_code == 204
    assert client.get(url).json() == []
    again = client.delete(f"{url}{listed['id']}/")
    assert again.status_code == 400 and invitations.NOT_PENDING in again.json()[0]
    hank = Client()
    hank.force_login(UserFactory(email="hank@example.test"))
    response = hank.post(link)
    assert response.status_code == 410 and LINK_REVOKED.encode() in response.content
    assert AuditEvent.objects.filter(event_type="project.invite.revoke").count() == 1
