"""Account mail. Sent after the transaction commits, never inside it.

Mail whose timing would tell who has an account (sign-up, verification,
password reset) is sent only from ``accounts.tasks``, off the request path.
"""

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string


def _send(to: str, template: str, context: dict) -> None:
    subject = render_to_string(f"accounts/email/{template}_subject.txt", context)
    body = render_to_string(f"accounts/email/{template}.txt", context)
    transaction.on_commit(
        lambda: send_mail(
            " ".join(subject.split()), body, settings.DEFAULT_FROM_EMAIL, [to]
        )
    )


def verification_send(*, user, link: str) -> None:
    _send(user.email, "verify", {"user": user, "link": link})


def signup_existing_send(*, user, login_link: str, reset_link: str) -> None:
    _send(
        user.email,
        "signup_existing",
        {"user": user, "login_link": login_link, "reset_link": reset_link},
    )


def lockout_send(*, user, until, reset_link: str) -> None:
    _send(
        user.email, "lockout", {"user": user, "until": until, "reset_link": reset_link}
    )


def password_reset_send(
    *, user, protocol: str, domain: str, uid: str, token: str
) -> None:
    _send(
        user.email,
        "password_reset",
        {
            "user": user,
            "protocol": protocol,
            "domain": domain,
            "uid": uid,
            "token": token,
        },
    )


def security_notice_send(*, user, notice: str, context: dict) -> None:
    """A change to the account's security (``accounts.services.NOTICES``)."""
    _send(user.email, f"security_{notice}", {"user": user, **context})
