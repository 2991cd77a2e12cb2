"""The one recording function every app calls for its audit events."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from audit.models import AuditEvent, Outcome
from kreo.net import client_ip


def audit_record(
    *,
    event_type: str,
    actor=None,
    request: HttpRequest | None = None,
    outcome: str = Outcome.SUCCESS,
    target: Any = None,
    error_code: str = "",
    error_description: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event. ``request`` supplies the source and destination."""
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    event = AuditEvent(
        occurred_at=timezone.now(),
        event_type=event_type,
        outcome=outcome,
        actor=actor,
        actor_label=getattr(actor, "email", "") if actor else "",
        error_code=error_code,
        error_description=error_description[:512],
        release=settings.KREO_RELEASE,
        details=details or {},
    )
    if request is not None:
        event.source_ip = client_ip(request)
        event.user_agent = request.META.get("HTTP_USER_AGENT", "")[:512]
        event.method = request.method or ""
        event.path = request.path[:512]
    if target is not None:
        event.target_type = target._meta.label_lower
        event.target_id = str(target.pk)
    event.save()
    return event
