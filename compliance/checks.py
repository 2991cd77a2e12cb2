"""The control checks. Each reads through other apps' selectors or health
checks only, and returns an ``Outcome`` (see ``catalogue.py``)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from backups import selectors as backup_selectors
from compliance.catalogue import Outcome, control
from compliance.models import CheckStatus


@control(
    id="backup-age",
    title="A good backup no older than its limit, in three copies (3-2-1)",
    iso27001=("A.8.13",),
    soc2=("A1.2", "CC7.2"),
    evidence="The latest good backup set: its id, age, copies and their states.",
)
def backup_age(now: datetime) -> Outcome:
    latest = backup_selectors.backup_set_latest(good_only=True)
    limit_hours = settings.BACKUP_MAX_AGE_HOURS
    if latest is None:
        return Outcome(CheckStatus.FAIL, "No good backup set exists.", {})
    age_hours = (now - (latest.finished_at or latest.created_at)).total_seconds() / 3600
    copies = [
        {"number": c.number, "state": c.state, "location": c.location}
        for c in latest.copies.all()
    ]
    evidence = {
        "set_id": latest.pk,
        "finished_at": (latest.finished_at or latest.created_at).isoformat(),
        "age_hours": round(age_hours, 2),
        "limit_hours": limit_hours,
        "copies": copies,
    }
    if age_hours > limit_hours:
        return Outcome(
            CheckStatus.FAIL,
            f"The latest good backup is {age_hours:.1f} h old (limit {limit_hours} h).",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"The latest good backup is {age_hours:.1f} h old (limit {limit_hours} h).",
        evidence,
    )
