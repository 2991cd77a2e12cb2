"""Alert channels: a mail to staff and a signed, Slack-compatible webhook.

The webhook's body is JSON ``{"text": ...}`` (what a Slack incoming webhook
takes). It is signed so that the receiver can tell it came from here and is
fresh: ``X-Kreo-Timestamp`` is the Unix time of sending and
``X-Kreo-Signature`` is ``sha256=`` + hex HMAC-SHA256, keyed with
``MONITORING_WEBHOOK_SECRET``, over the timestamp, a dot, and the body bytes.
The receiver recomputes it, compares in constant time and refuses a
timestamp older than a few minutes (a replay).

Sent with the standard library: one POST with a timeout needs no client
library, and the only URL is the operator's setting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from monitoring import selectors
from monitoring.models import Alert

SIGNATURE_HEADER = "X-Kreo-Signature"
TIMESTAMP_HEADER = "X-Kreo-Timestamp"
MAIL_SUBJECT = "[Kreo alert] {severity}: {summary}"
MAIL_BODY = (
    "{summary}\n\n"
    "Rule: {rule}\nSeverity: {severity}\nSubject: {kind} {subject}\n"
    "First seen: {first_seen}\nLast seen: {last_seen}\nCount: {count}\n\n"
    "Acknowledge or resolve it in the admin at {link}\n"
)


class WebhookError(Exception):
    pass


def _link(alert: Alert) -> str:
    return f"/admin/monitoring/alert/{alert.pk}/change/"


def alert_text(alert: Alert) -> str:
    return (
        f"[{alert.severity.upper()}] {alert.summary} "
        f"(rule {alert.rule}, {alert.subject_kind} {alert.subject}, "
        f"alert #{alert.pk}, first seen {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC)"
    )


def mail_recipients() -> list[str]:
    return list(settings.MONITORING_ALERT_EMAILS) or selectors.admin_group_emails()


def alert_mail(alert: Alert) -> int:
    """Mail the alert to the staff; the number of recipients."""
    to = mail_recipients()
    if not to:
        return 0
    send_mail(
        MAIL_SUBJECT.format(severity=alert.severity.upper(), summary=alert.summary)[
            :200
        ],
        MAIL_BODY.format(
            summary=alert.summary,
            rule=alert.rule,
            severity=alert.severity,
            kind=alert.subject_kind,
            subject=alert.subject,
            first_seen=alert.first_seen.isoformat(),
            last_seen=alert.last_seen.isoformat(),
            count=alert.count,
            link=_link(alert),
        ),
        settings.DEFAULT_FROM_EMAIL,
        to,
    )
    return len(to)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_post(alert: Alert) -> int:
    """POST the alert to ``MONITORING_WEBHOOK_URL``; its HTTP status.

    Raises ``WebhookError`` on anything but a 2xx answer in time.
    """
    url = settings.MONITORING_WEBHOOK_URL
    if not url.startswith(("https://", "http://")):
        raise WebhookError(f"not an http(s) URL: {url[:80]!r}")
    body = json.dumps({"text": alert_text(alert)}).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(settings.MONITORING_WEBHOOK_SECRET, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(  # noqa: S310  # nosec B310 - scheme checked above
            request, timeout=settings.MONITORING_WEBHOOK_TIMEOUT_SECONDS
        ) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code} from the webhook") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookError(f"webhook unreachable: {exc}") from exc
