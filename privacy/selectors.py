"""Reads of the privacy app."""

from datetime import datetime

from privacy.models import DataExport


def exports_kept_past(*, before: datetime) -> list[dict]:
    """Data exports whose archive is still stored although they expired before
    ``before``: id, owner id, expiry."""
    return [
        {"id": str(pk), "user_id": user_id, "expires_at": expires_at}
        for pk, user_id, expires_at in DataExport.objects.filter(expires_at__lt=before)
        .exclude(blob="")
        .order_by("expires_at")
        .values_list("pk", "user_id", "expires_at")
    ]
