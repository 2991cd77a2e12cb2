"""CAPTCHA writes: the audit event of a CAPTCHA that was not accepted."""

from django.http import HttpRequest

from audit.models import AuditEvent, Outcome
from audit.services import audit_record


def captcha_failure_record(
    *, request: HttpRequest, scope: str, code: str, description: str
) -> AuditEvent:
    """Record that the CAPTCHA of form ``scope`` was not accepted.

    ``code`` says why: ``unavailable`` (the verify endpoint could not answer),
    ``rejected`` (not solved), or an ALTCHA refusal (``altcha_forged``,
    ``altcha_expired``, ``altcha_replayed``, ``altcha_wrong``,
    ``altcha_malformed``), so an auditor can tell a bot from a slow user.
    """
    return audit_record(
        event_type="auth.captcha.failed",
        request=request,
        outcome=Outcome.FAILURE,
        error_code=code,
        error_description=description,
        details={"scope": scope},
    )
