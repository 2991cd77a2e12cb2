"""Account jobs: mail that must not be sent on the request path."""

from celery import shared_task

from accounts import services


@shared_task(
    name="accounts.tasks.password_reset_send",
    autoretry_for=(OSError,),  # smtplib's errors and refused connections
    retry_backoff=True,
    max_retries=5,
)
def password_reset_send(*, user_id: int, protocol: str, domain: str) -> bool:
    """Mail the reset link; retried with backoff while the relay is unreachable."""
    return services.password_reset_mail(
        user_id=user_id, protocol=protocol, domain=domain
    )


@shared_task(
    name="accounts.tasks.verification_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def verification_send(*, user_id: int, protocol: str, domain: str) -> bool:
    """Mail a verification link (sign-up or resend); retried like the reset mail."""
    return services.verification_mail(user_id=user_id, protocol=protocol, domain=domain)


@shared_task(
    name="accounts.tasks.signup_existing_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def signup_existing_send(*, user_id: int, protocol: str, domain: str) -> bool:
    """Tell an account's owner of a sign-up with their address; retried likewise."""
    return services.signup_existing_mail(
        user_id=user_id, protocol=protocol, domain=domain
    )


@shared_task(
    name="accounts.tasks.security_notice_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def security_notice_send(
    *,
    user_id: int,
    notice: str,
    protocol: str,
    domain: str,
    ip: str,
    browser: str,
    at: str,
    details: dict | None = None,
) -> bool:
    """Tell an account's owner of a sign-in from a new device, a password
    change or reset, 2FA turned off or a new API token; retried likewise."""
    return services.security_notice_mail(
        user_id=user_id,
        notice=notice,
        protocol=protocol,
        domain=domain,
        ip=ip,
        browser=browser,
        at=at,
        details=details,
    )
