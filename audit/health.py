"""Read-only figures on the audit trail's tamper evidence, for health checks
and metrics (monitoring/): how far sealing lags, how old the newest anchor is.

Nothing here writes; nothing here runs on a request path other than a probe's.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from audit import anchors
from audit.models import AuditEvent, AuditSeal


def seal_lag_seconds() -> float:
    """Age of the oldest event not yet folded into a seal (0 when all are)."""
    last = AuditSeal.objects.order_by("-seq").values_list("last_id", flat=True).first()
    oldest = (
        AuditEvent.objects.filter(id__gt=last or 0)
        .order_by("id")
        .values_list("occurred_at", flat=True)
        .first()
    )
    if oldest is None:
        return 0.0
    return max(0.0, (timezone.now() - oldest).total_seconds())


@dataclass
class AnchorStatus:
    """The newest anchor outside the database against the newest seal in it."""

    newest_seal: int | None
    anchored_seal: int | None
    age_seconds: float | None

    @property
    def behind(self) -> bool:
        """True when the database holds seals no anchor pins yet."""
        return (self.newest_seal or 0) > (self.anchored_seal or 0)


def anchor_status() -> AnchorStatus:
    """Read the newest anchor from its store (S3 or the local folder)."""
    seal = AuditSeal.objects.order_by("-seq").values_list("seq", flat=True).first()
    newest = anchors._newest(anchors.store())
    if newest is None:
        return AnchorStatus(seal, None, None)
    top = max((s.get("seq", 0) for s in newest.seals), default=0)
    age = (timezone.now() - newest.at).total_seconds() if newest.at else None
    return AnchorStatus(seal, top, age)
