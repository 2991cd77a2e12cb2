"""Invitations: an owner invites an address; the person it belongs to accepts.

The owner's answer is the same whether or not the address has an account (no
enumeration), and nobody joins a project without accepting while signed in
with the invited address. The link carries ``signing.dumps([id, secret])``;
only the SHA-256 of the secret is stored, and the secret is made by the mail
task, so it passes neither through the database nor through the broker.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from kombu.exceptions import OperationalError as BrokerUnavailable

from audit.models import Outcome
from audit.services import audit_record
from projects import emails
from projects.models import Invitation, Membership, Project, Role
from projects.permissions import Action, forget_roles, require

logger = logging.getLogger(__name__)

SALT = "projects.invitation"

INVITED = (
    "Invitation sent. If it is accepted within {days} days, that person joins "
    "with the role you chose; until then it is listed below."
)
ALREADY_MEMBER = "{email} is already a member of this project."
ROLE_CHOICE = "Choose one of {roles}."
NOT_PENDING = "This invitation was already accepted or revoked."
# What the link page says when the link cannot be used (nothing is joined).
LINK_TAMPERED = "This invitation link is not valid. Check that it was copied whole."
LINK_EXPIRED = "This invitation has expired. Ask the project owner for a new one."
LINK_USED = "This invitation has already been used."
LINK_REVOKED = "This invitation was withdrawn by the project owner."
LINK_WRONG_ADDRESS = (
    "This invitation was sent to another e-mail address. Sign out, then sign in "
    "(or sign up) with the address the invitation was sent to."
)
LINK_PROJECT_GONE = "The project of this invitation no longer exists."


@dataclass
class InvitationRefused(Exception):
    """A link that cannot be used: ``code`` for the audit, ``status`` for HTTP."""

    code: str
    message: str
    status: int


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _lifetime() -> timedelta:
    return timedelta(days=settings.KREO_INVITATION_DAYS)


def _queue(request, task, **kwargs) -> None:
    """Queue ``task`` once the transaction commits; a down broker is logged and
    audited, never an answer that differs (the page says what it always says)."""

    def send():
        try:
            task.delay(**kwargs)
        except BrokerUnavailable as exc:
            logger.error("mail task %s not queued: %s", task.name, exc)
            audit_record(
                event_type="project.mail.unqueued",
                request=request,
                outcome=Outcome.ERROR,
                error_code="broker_unavailable",
                error_description=str(exc)[:200],
                details={"task": task.name, **kwargs},
            )

    transaction.on_commit(send)


def _site(request) -> dict:
    if request is None:  # a command or a test: the first allowed host
        hosts = [h for h in settings.ALLOWED_HOSTS if h and h[0] not in "*."]
        return {"protocol": "https", "domain": hosts[0] if hosts else "localhost"}
    return {"protocol": request.scheme, "domain": request.get_host()}


def invitation_create(
    *, actor, project: Project, email: str, role: str, request=None
) -> Invitation:
    """Invite ``email`` to ``project`` with ``role`` and mail it a link.

    Whether the address has an account is never looked at: the answer and the
    work done are the same. A pending invitation of the same address is
    renewed (new role, new expiry, new link; the old link stops working).
    """
    from projects import tasks

    require(actor, Action.MANAGE_MEMBERS, project)
    if role not in Role.values:
        raise ValidationError(
            {"role": ROLE_CHOICE.format(roles=", ".join(Role.values))}, code="role"
        )
    email = normalise_email(email)
    if project.memberships.filter(user__email__iexact=email).exists():
        raise ValidationError(
            {"email": ALREADY_MEMBER.format(email=email)}, code="already_member"
        )
    expires = timezone.now() + _lifetime()
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .filter(project=project, email=email, accepted_at=None, revoked_at=None)
            .first()
        )
        renewed = invitation is not None
        if invitation is None:
            invitation = Invitation(project=project, email=email)
        invitation.role, invitation.invited_by = role, actor
        invitation.expires_at, invitation.token_digest = expires, ""
        try:
            with transaction.atomic():
                invitation.save()
        except IntegrityError:  # a concurrent invitation of the same address
            invitation = Invitation.objects.select_for_update().get(
                project=project, email=email, accepted_at=None, revoked_at=None
            )
            invitation.role, invitation.invited_by = role, actor
            invitation.expires_at, invitation.token_digest = expires, ""
            invitation.save()
            renewed = True
        audit_record(
            event_type="project.invite.create",
            actor=actor,
            request=request,
            target=project,
            details={
                "invitation": invitation.pk,
                "email": email,
                "role": role,
                "renewed": renewed,
                "expires_at": expires.isoformat(),
            },
        )
        _queue(
            request,
            tasks.invitation_send,
            invitation_id=invitation.pk,
            **_site(request),
        )
    return invitation


def invitation_mail(*, invitation_id: int, protocol: str, domain: str) -> bool:
    """Make the link's secret, keep its digest, mail the link (from the task).

    Nothing is sent for an invitation accepted, revoked or expired since it
    was queued.
    """
    invitation = (
        Invitation.objects.select_related("project", "invited_by")
        .filter(
            pk=invitation_id,
            accepted_at=None,
            revoked_at=None,
            expires_at__gt=timezone.now(),
        )
        .first()
    )
    if invitation is None:
        return False
    secret = secrets.token_urlsafe(32)
    Invitation.objects.filter(pk=invitation.pk).update(token_digest=_digest(secret))
    token = signing.dumps([invitation.pk, secret], salt=SALT)
    path = reverse("projects:invitation-accept", args=[token])
    emails.invitation_send(invitation=invitation, link=f"{protocol}://{domain}{path}")
    return True


def _refused(code: str, message: str, status: int) -> InvitationRefused:
    return InvitationRefused(code=code, message=message, status=status)


def _resolve(token: str, *, lock: bool = False) -> Invitation:
    """The invitation a link names while it can still be used, else refused."""
    try:
        pk, secret = signing.loads(
            token, salt=SALT, max_age=_lifetime().total_seconds()
        )
    except signing.SignatureExpired as exc:
        raise _refused("expired", LINK_EXPIRED, 410) from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise _refused("tampered", LINK_TAMPERED, 400) from exc
    rows = Invitation.objects.select_related("project", "invited_by")
    if lock:
        rows = rows.select_for_update(of=("self",))
    invitation = rows.filter(pk=pk).first() if isinstance(pk, int) else None
    if invitation is None or not isinstance(secret, str):
        raise _refused("tampered", LINK_TAMPERED, 400)
    if not invitation.token_digest or not constant_time_compare(
        invitation.token_digest, _digest(secret)
    ):
        # A forged secret, or the link of an invitation renewed since.
        raise _refused("tampered", LINK_TAMPERED, 400)
    if invitation.revoked_at is not None:
        raise _refused("revoked", LINK_REVOKED, 410)
    if invitation.accepted_at is not None:
        raise _refused("used", LINK_USED, 410)
    if invitation.expires_at <= timezone.now():
        raise _refused("expired", LINK_EXPIRED, 410)
    if invitation.project.deleted_at is not None:
        raise _refused("project_gone", LINK_PROJECT_GONE, 410)
    return invitation


def _check(token: str, user, *, lock: bool = False) -> Invitation:
    invitation = _resolve(token, lock=lock)
    if user is not None and user.is_authenticated:
        if normalise_email(user.email) != invitation.email:
            raise _refused("wrong_address", LINK_WRONG_ADDRESS, 400)
    return invitation


def _audit_refusal(exc: InvitationRefused, *, user, request) -> None:
    audit_record(
        event_type="project.invite.refused",
        actor=user if user is not None and user.is_authenticated else None,
        request=request,
        outcome=Outcome.DENIED,
        error_code=exc.code,
        error_description=exc.message,
    )


def invitation_peek(*, user, token: str, request=None) -> Invitation:
    """The invitation a link names, for the page before accepting (no change).

    A link that cannot be used raises ``InvitationRefused``, audited.
    """
    try:
        return _check(token, user)
    except InvitationRefused as exc:
        _audit_refusal(exc, user=user, request=request)
        raise


def invitation_accept(*, user, token: str, request=None) -> Membership:
    """Join the invitation's project with its role; the link is then used up.

    Only for the signed-in owner of the invited address. Tell the inviter.
    """
    from projects import tasks

    try:
        with transaction.atomic():
            invitation = _check(token, user, lock=True)
            project = invitation.project
            membership = project.memberships.filter(user=user).first()
            joined = membership is None
            if joined:
                membership = Membership.objects.create(
                    project=project, user=user, role=invitation.role
                )
            invitation.accepted_at, invitation.accepted_by = timezone.now(), user
            invitation.save(update_fields=["accepted_at", "accepted_by"])
            forget_roles(user)
            audit_record(
                event_type="project.invite.accept",
                actor=user,
                request=request,
                target=project,
                details={
                    "invitation": invitation.pk,
                    "role": membership.role,
                    "joined": joined,
                    "invited_by": invitation.invited_by_id,
                },
            )
            if joined:
                audit_record(
                    event_type="project.member.add",
                    actor=user,
                    request=request,
                    target=project,
                    details={
                        "user": user.pk,
                        "email": user.email,
                        "role": membership.role,
                        "invitation": invitation.pk,
                    },
                )
            if joined and invitation.invited_by_id:
                _queue(
                    request,
                    tasks.member_notice_send,
                    user_id=invitation.invited_by_id,
                    project_id=str(project.pk),
                    kind="accepted",
                    role=membership.role,
                    about=user.email,
                )
    except InvitationRefused as exc:
        _audit_refusal(exc, user=user, request=request)
        raise
    return membership


@transaction.atomic
def invitation_revoke(
    *, actor, invitation: Invitation, request=None, staff: bool = False
) -> Invitation:
    """Withdraw a pending invitation: its link stops working at once.

    ``staff`` is for the admin, whose own permissions already decided.
    """
    if not staff:
        require(actor, Action.MANAGE_MEMBERS, invitation.project)
    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if not locked.pending:
        raise ValidationError(NOT_PENDING, code="not_pending")
    locked.revoked_at, locked.revoked_by = timezone.now(), actor
    locked.save(update_fields=["revoked_at", "revoked_by"])
    audit_record(
        event_type="project.invite.revoke",
        actor=actor,
        request=request,
        target=locked.project,
        details={
            "invitation": locked.pk,
            "email": locked.email,
            "role": locked.role,
            "via": "admin" if staff else "user",
        },
    )
    return locked


def member_notice_queue(
    *, request, user_id, project: Project, kind: str, role=""
) -> None:
    """Tell a member, after commit, that their role changed or they were removed."""
    from projects import tasks

    _queue(
        request,
        tasks.member_notice_send,
        user_id=user_id,
        project_id=str(project.pk),
        kind=kind,
        role=role,
        about="",
    )


def member_notice_mail(
    *, user_id: int, project_id: str, kind: str, role: str = "", about: str = ""
) -> bool:
    """Send one notice (from the task); nothing if the account is gone."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    project = Project.objects.filter(pk=project_id).first()
    if user is None or project is None:
        return False
    emails.member_notice_send(
        to=user.email, kind=kind, project=project, role=role, about=about
    )
    return True
