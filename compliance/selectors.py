"""Reads of the check results."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from compliance.models import CheckRun, ControlResult


def run_latest() -> CheckRun | None:
    return CheckRun.objects.filter(finished_at__isnull=False).first()


def results_latest() -> dict[str, ControlResult]:
    """Each control's most recent result, by control id."""
    latest: dict[str, ControlResult] = {}
    rows = ControlResult.objects.order_by("control_id", "-checked_at", "-id")
    for row in rows.iterator():
        latest.setdefault(row.control_id, row)
    return latest


def results_between(*, start: datetime, end: datetime) -> QuerySet[ControlResult]:
    return ControlResult.objects.filter(checked_at__gte=start, checked_at__lt=end)


def result_history(*, control_id: str, since: datetime) -> QuerySet[ControlResult]:
    return ControlResult.objects.filter(control_id=control_id, checked_at__gte=since)
