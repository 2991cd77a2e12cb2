"""The invitations admin: readable, read-only, and a revoke that is audited."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from projects import invitations
from projects.admin import REVOKED_COUNT
from projects.invitations import LINK_REVOKED
from projects.models import Invitation, Membership, Role
from projects.tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:projects_invitation_changelist"


@pytest.fixture
def owner():
    return UserFactory(email="owner@example.test")


@pytest.fixture
def project(owner):
    return MembershipFactory(user=owner, role=Role.OWNER).project


def _invite(project, owner, email, **fields):
    return Invitation.objects.create(
        project=project,
        email=email,
        role=Role.EDITOR,
        invited_by=owner,
        expires_at=fields.pop("expires_at", timezone.now() + timedelta(days=7)),
        **fields,
    )


def _mailed_link(invitation) -> str:
    invitations.invitation_mail(
        invitation_id=invitation.pk, protocol="http", domain="testserver"
    )
    return re.search(r"http://testserver(\S+)", mail.outbox[-1].body)[1]


@pytest.fixture
def staff(client, otp_login):
    user = UserFactory(is_staff=True, is_superuser=True, email="ops@example.test")
    otp_login(client, user)
    return user


def test_list_shows_who_invited_whom_and_the_state(client, staff, project, owner):
    """Project, address, role, inviter, dates and a state in words; filterable
    by state and searchable by address."""
    _invite(project, owner, "pending@example.test")
    _invite(
        project,
        owner,
        "late@example.test",
        expires_at=timezone.now() - timedelta(days=1),
    )
    _invite(project, owner, "gone@example.test", revoked_at=timezone.now())
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    text = page.content.decode()
    for heading in ("Project", "Email", "Role", "Invited by", "Expires at", "State"):
        assert f">{heading}<" in text, heading
    assert "owner@example.test" in text
    for state in ("Pending", "Expired", "Revoked"):
        assert f">{state}<" in text
    expired = client.get(reverse(CHANGELIST), {"state": "expired"}).content.decode()
    assert "late@example.test" in expired
    assert "pending@example.test" not in expired
    found = client.get(reverse(CHANGELIST), {"q": "gone@"}).content.decode()
    assert "gone@example.test" in found
    assert "late@example.test" not in found


def test_detail_is_read_only_and_nothing_is_added_or_deleted(
    client, staff, project, owner
):
    """No form field to edit, no add page, no delete (the record stays)."""
    invitation = _invite(project, owner, "someone@example.test")
    change = reverse("admin:projects_invitation_change", args=[invitation.pk])
    page = client.get(change)
    assert page.status_code == 200
    assert b'name="email"' not in page.content
    assert client.post(change, {"email": "evil@example.test"}).status_code == 403
    assert client.get(reverse("admin:projects_invitation_add")).status_code == 403
    delete = reverse("admin:projects_invitation_delete", args=[invitation.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    invitation.refresh_from_db()
    assert invitation.email == "someone@example.test"
    assert b"delete_selected" not in client.get(reverse(CHANGELIST)).content


def test_revoke_action_goes_through_the_service(client, staff, project, owner):
    """The link stops working, the audit trail names staff and ``via`` admin,
    an accepted invitation is left as it was (a warning says so), and nobody
    joined."""
    pending = _invite(project, owner, "invitee@example.test")
    link = _mailed_link(pending)
    accepted = _invite(project, owner, "done@example.test", accepted_at=timezone.now())
    response = client.post(
        reverse(CHANGELIST),
        {
            "action": "revoke",
            "_selected_action": [pending.pk, accepted.pk],
        },
        follow=True,
    )
    assert response.status_code == 200
    said = [m.message for m in response.context["messages"]]
    assert REVOKED_COUNT.format(count=1) in said
    assert "done@example.test: " + invitations.NOT_PENDING in said
    pending.refresh_from_db()
    accepted.refresh_from_db()
    assert pending.revoked_by == staff and pending.revoked_at is not None
    assert accepted.revoked_at is None
    event = AuditEvent.objects.get(event_type="project.invite.revoke")
    assert event.actor_id == staff.pk
    assert event.details["via"] == "admin"
    assert event.details["email"] == "invitee@example.test"
    invitee = UserFactory(email="invitee@example.test")
    other = Client()
    other.force_login(invitee)
    refused = other.post(link)
    assert LINK_REVOKED in refused.content.decode()
    assert not Membership.objects.filter(user=invitee).exists()


def test_staff_who_may_only_view_cannot_revoke(client, otp_login, project, owner):
    """Without the change permission the action is not offered, and a forged
    POST of it revokes nothing."""
    viewer = UserFactory(is_staff=True, email="reader@example.test")
    viewer.user_permissions.add(Permission.objects.get(codename="view_invitation"))
    otp_login(client, viewer)
    pending = _invite(project, owner, "invitee@example.test")
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    assert b'value="revoke"' not in page.content
    client.post(
        reverse(CHANGELIST), {"action": "revoke", "_selected_action": [pending.pk]}
    )
    pending.refresh_from_db()
    assert pending.revoked_at is None
    assert not AuditEvent.objects.filter(event_type="project.invite.revoke").exists()
