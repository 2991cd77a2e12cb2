"""Verification of the trail, recorded; on a schedule, with an alert on failure.

Every run (``audit_verify`` or the beat entries ``audit verify hot`` and
``audit verify full``) is itself an ``audit.verify`` event, so the last
result is in the trail and the admin shows it. A scheduled run that fails
logs CRITICAL and mails the Auditor group.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from audit.services import audit_record
from audit.verify import Report, audit_verify
from kreo.permissions import AUDITOR_GROUP

logger = logging.getLogger(__name__)

ALERT_SUBJECT = "Kreo audit trail verification FAILED ({scope})"
ALERT_BODY = (
    "The scheduled {scope} verification of the audit trail found "
    "{count} problem(s).\n\nFirst: {first}\n\n{more}\n\n"
    "Run `manage.py audit_verify` for the full report. The trail may have been "
    "cut, rewritten or edited: keep the anchors and the archives as they are.\n"
)


def verification_run(
    *,
    archives: bool,
    actor_label: str,
    public_key: str = "",
    alert: bool = False,
    progress=None,
) -> Report:
    """Verify the trail, record the result as ``audit.verify``; alert if asked."""
    scope = "full" if archives else "hot"
    report = audit_verify(public_key=public_key, archives=archives, progress=progress)
    first = str(report.problems[0]) if report.problems else ""
    audit_record(
        event_type="audit.verify",
        actor_label=actor_label,
        outcome="success" if report.ok else "failure",
        error_code="" if report.ok else report.problems[0].kind,
        error_description=first[:512],
        details={
            "scope": scope,
            "events": report.events,
            "seals": report.seals,
            "anchors": report.anchors,
            "spooled": report.spooled,
            "keyed": report.keyed,
            "legacy": report.legacy,
            "spans": report.spans,
            "problems": len(report.problems),
        },
    )
    if alert and not report.ok:
        logger.critical(
            "audit trail verification (%s) FAILED: %d problems; first: %s",
            scope,
            len(report.problems),
            first,
        )
        _mail_auditors(scope, report)
    return report


def _mail_auditors(scope: str, report: Report) -> None:
    mail_auditors(
        ALERT_SUBJECT.format(scope=scope),
        ALERT_BODY.format(
            scope=scope,
            count=len(report.problems),
            first=report.problems[0],
            more="\n".join(str(p) for p in report.problems[1:20]),
        ),
    )


def mail_auditors(subject: str, body: str) -> None:
    """Mail an audit alert to the Auditor group (CRITICAL log if it has no one)."""
    to = list(
        get_user_model()
        .objects.filter(groups__name=AUDITOR_GROUP, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not to:
        logger.critical("audit alert %r: the Auditor group has no one", subject)
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)
