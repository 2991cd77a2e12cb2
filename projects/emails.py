"""Project mail: invitations and notices to members, sent from ``projects.tasks``."""

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string


def _send(to: str, template: str, context: dict) -> None:
    subject = render_to_string(f"projects/email/{template}_subject.txt", context)
    body = render_to_string(f"projects/email/{template}.txt", context)
    send_mail(" ".join(subject.split()), body, settings.DEFAULT_FROM_EMAIL, [to])


def invitation_send(*, invitation, link: str) -> None:
    _send(
        invitation.email,
        "invitation",
        {
            "invitation": invitation,
            "project": invitation.project,
            "inviter": invitation.invited_by,
            "link": link,
            "days": settings.KREO_INVITATION_DAYS,
        },
    )


def member_notice_send(*, to: str, kind: str, project, role: str, about: str) -> None:
    _send(
        to,
        f"member_{kind}",
        {"project": project, "role": role, "about": about},
    )
