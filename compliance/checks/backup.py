"""Backups (A.8.13) and restore drills (A.8.13, A1.2)."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from backups import selectors as backup_selectors
from compliance.catalogue import Outcome, control
from compliance.checks.common import hours, iso
from compliance.models import CheckStatus

COPIES = (1, 2, 3)
GOOD_COPY_STATES = ("done", "locked")
# A drill is due every BACKUP_DRILL_SECONDS; a day's grace for the beat.
DRILL_GRACE_SECONDS = 24 * 3600


def _copy_problems(copies: list[dict]) -> list[str]:
    problems = []
    by_number = {c["number"]: c for c in copies}
    for number in COPIES:
        copy = by_number.get(number)
        if copy is None:
            problems.append(f"copy {number} missing")
        elif copy["state"] not in GOOD_COPY_STATES:
            problems.append(f"copy {number} is {copy['state']}")
    locations = [c["location"] for c in copies if c["location"]]
    if len(set(locations)) < len(locations):
        problems.append("two copies share a location")
    offsite = by_number.get(3)
    if offsite is not None and not offsite["location"].startswith("s3://"):
        problems.append("copy 3 is not in S3")
    return problems


@control(
    id="backup-age",
    title="A good backup no older than its limit, in three copies (3-2-1)",
    iso27001=("A.8.13",),
    soc2=("A1.2", "CC7.2"),
    evidence="The latest good backup set: its id, age, copies, their states "
    "and locations.",
)
def backup_age(now: datetime) -> Outcome:
    latest = backup_selectors.backup_set_latest(good_only=True)
    limit_hours = settings.BACKUP_MAX_AGE_HOURS
    if latest is None:
        return Outcome(CheckStatus.FAIL, "No good backup set exists.", {})
    finished = latest.finished_at or latest.created_at
    age_hours = hours((now - finished).total_seconds())
    copies = [
        {"number": c.number, "state": c.state, "location": c.location}
        for c in latest.copies.all()
    ]
    problems = _copy_problems(copies)
    evidence = {
        "set_id": latest.pk,
        "finished_at": iso(finished),
        "age_hours": age_hours,
        "limit_hours": limit_hours,
        "copies": copies,
        "problems": problems,
    }
    age = f"The latest good backup (set {latest.pk}) is {age_hours:.1f} h old "
    age += f"(limit {limit_hours} h)"
    if age_hours > limit_hours:
        return Outcome(CheckStatus.FAIL, f"{age}.", evidence)
    if problems:
        return Outcome(
            CheckStatus.FAIL, f"{age}; 3-2-1 not met: {'; '.join(problems)}.", evidence
        )
    return Outcome(CheckStatus.PASS, f"{age}; three copies, one in S3.", evidence)


@control(
    id="restore-drill",
    title="A restore drill passed within its interval",
    iso27001=("A.8.13",),
    soc2=("A1.2", "A1.3"),
    evidence="The latest restore drill: its id, set, copy restored, times, "
    "result and mismatches.",
)
def restore_drill(now: datetime) -> Outcome:
    drill = backup_selectors.restore_drill_latest()
    limit = settings.BACKUP_DRILL_SECONDS + DRILL_GRACE_SECONDS
    if drill is None:
        return Outcome(CheckStatus.FAIL, "No restore drill has run.", {})
    moment = drill.finished_at or drill.started_at
    evidence = {
        "drill_id": drill.pk,
        "set_id": drill.backup_set_id,
        "copy_number": drill.copy_number,
        "started_at": iso(drill.started_at),
        "finished_at": iso(drill.finished_at),
        "ok": drill.ok,
        "mismatches": len(drill.mismatches or []),
        "error": (drill.error or "")[:300],
        "age_hours": hours((now - moment).total_seconds()),
        "limit_hours": hours(limit),
    }
    if drill.ok is False:
        return Outcome(
            CheckStatus.FAIL,
            f"The latest restore drill ({drill.pk}) failed: "
            f"{len(drill.mismatches or [])} mismatches. {drill.error[:200]}".strip(),
            evidence,
        )
    if drill.ok is None:
        return Outcome(
            CheckStatus.WARN, f"Restore drill {drill.pk} has not finished.", evidence
        )
    if (now - moment).total_seconds() > limit:
        return Outcome(
            CheckStatus.FAIL,
            f"The latest restore drill ({drill.pk}) is {evidence['age_hours']:.0f} h "
            f"old (limit {evidence['limit_hours']:.0f} h).",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"Restore drill {drill.pk} of set {drill.backup_set_id} passed "
        f"{evidence['age_hours']:.0f} h ago.",
        evidence,
    )
