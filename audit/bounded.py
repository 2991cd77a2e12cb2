"""Audit writes bounded under a flood: N events per bucket per minute, then one
summary event for the rest of that minute.

A flood of refused or failing requests (404s from a scanner, 429s) must not
become a flood of database writes. The count lives on the shared rate-limit
cache, so the bound holds across every process.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from audit.models import AuditEvent, Outcome
from audit.services import audit_record
from kreo.cache import CacheUnavailable
from kreo.counters import window, window_count

logger = logging.getLogger(__name__)

SUPPRESSED = "audit.flood.suppressed"
WINDOW_SECONDS = 60


def audit_record_bounded(*, bucket: str, **fields) -> AuditEvent | None:
    """``audit_record(**fields)``, at most ``AUDIT_FLOOD_PER_MINUTE`` times per
    ``bucket`` (e.g. one client IP) per minute.

    The next one in the minute records a single ``audit.flood.suppressed``
    event (the bucket, the event type held back, the bound and the window);
    the rest of the minute records nothing. Without the cache the event is
    recorded: losing evidence is worse than a write.
    """
    limit = settings.AUDIT_FLOOD_PER_MINUTE
    index, left = window(WINDOW_SECONDS)
    try:
        seen = window_count(f"audit-flood:{bucket}:{index}", WINDOW_SECONDS)
    except CacheUnavailable:
        logger.warning("audit: flood bound without the cache; recording %s", bucket)
        seen = 0
    if seen <= limit:
        return audit_record(**fields)
    if seen > limit + 1:
        return None
    ends = timezone.now() + timedelta(seconds=left)
    return audit_record(
        event_type=SUPPRESSED,
        request=fields.get("request"),
        actor=fields.get("actor"),
        outcome=fields.get("outcome", Outcome.FAILURE),
        status_code=fields.get("status_code"),
        error_code="flood_suppressed",
        error_description=(
            f"More than {limit} {fields['event_type']} events from {bucket} in a "
            "minute: the rest of this minute is not recorded one by one."
        ),
        details={
            "bucket": bucket,
            "event_type": fields["event_type"],
            "per_minute": limit,
            "window_ends": ends.isoformat(),
        },
    )
