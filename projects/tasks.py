"""Project jobs: invitation mail, notices to members and image thumbnails,
off the request path."""

from celery import shared_task

from projects import invitations, thumbnails
from projects.storage import StorageUnavailable


@shared_task(
    name="projects.tasks.invitation_send",
    autoretry_for=(OSError,),  # smtplib's errors and refused connections
    retry_backoff=True,
    max_retries=5,
)
def invitation_send(*, invitation_id: int, protocol: str, domain: str) -> bool:
    """Mail an invitation's link; retried with backoff while the relay is down."""
    return invitations.invitation_mail(
        invitation_id=invitation_id, protocol=protocol, domain=domain
    )


@shared_task(
    name="projects.tasks.member_notice_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def member_notice_send(
    *, user_id: int, project_id: str, kind: str, role: str = "", about: str = ""
) -> bool:
    """Tell a member what changed: an invitation accepted, a new role, removal."""
    return invitations.member_notice_mail(
        user_id=user_id, project_id=project_id, kind=kind, role=role, about=about
    )


@shared_task(
    name="projects.tasks.thumbnail_make",
    autoretry_for=(StorageUnavailable,),
    retry_backoff=True,
    max_retries=5,
)
def thumbnail_make(*, file_id: str) -> bool:
    """Make an uploaded image's thumbnail; retried while storage is down."""
    return thumbnails.thumbnail_make(file_id=file_id)
