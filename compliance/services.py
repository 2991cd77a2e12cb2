"""Running the control checks and storing their results."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from compliance.catalogue import Control, Outcome, controls
from compliance.models import CheckRun, CheckStatus, ControlResult

log = logging.getLogger(__name__)


def _judge(item: Control, now: datetime) -> Outcome:
    try:
        outcome = item.check(now)
    except Exception as exc:  # a broken check must not stop the others
        log.exception("compliance check %s raised", item.id)
        return Outcome(CheckStatus.ERROR, f"{type(exc).__name__}: {exc}"[:512], {})
    if not isinstance(outcome, Outcome):
        return Outcome(CheckStatus.ERROR, f"check returned {type(outcome).__name__}")
    return outcome


def checks_run(
    *,
    trigger: str = CheckRun.Trigger.SCHEDULE,
    actor=None,
    now: datetime | None = None,
    only: list[str] | None = None,
) -> CheckRun:
    """Run every control's check (or those in ``only``) and store the results."""
    now = now or timezone.now()
    run = CheckRun.objects.create(started_at=now, trigger=trigger, actor=actor)
    for item in controls():
        if only and item.id not in only:
            continue
        outcome = _judge(item, now)
        with transaction.atomic():
            ControlResult.objects.create(
                run=run,
                control_id=item.id,
                checked_at=now,
                status=outcome.status,
                summary=outcome.summary[:512],
                evidence=outcome.evidence,
            )
    run.finished_at = timezone.now()
    run.save(update_fields=["finished_at"])
    return run
