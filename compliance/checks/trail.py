"""The audit trail: verified and anchored (A.8.15), kept and archived on
schedule (A.8.15, A.5.33), reviewed on time (A.8.15, A.8.16)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from audit import health as audit_health
from audit import selectors as audit_selectors
from compliance.catalogue import Outcome, control
from compliance.checks.common import hours, iso, sentence
from compliance.models import CheckStatus

# The full verification runs daily (AUDIT_VERIFY_FULL_SECONDS); an hour's
# grace for the beat before the last one counts as stale.
VERIFY_GRACE_SECONDS = 3600
# Archival runs hourly (AUDIT_ARCHIVE_INTERVAL_SECONDS); events may stay a day
# past retention before the trail counts as late (a slow or retried run).
ARCHIVE_GRACE = timedelta(days=1)


def _anchor_problem(now: datetime, evidence: dict) -> str:
    status = audit_health.anchor_status()
    seal = audit_selectors.seal_latest()
    grace = 3 * settings.AUDIT_ANCHOR_SECONDS  # as audit_verify allows
    # anchor_status measures from the wall clock; the check judges at ``now``.
    shift = (now - timezone.now()).total_seconds()
    age = None if status.age_seconds is None else status.age_seconds + shift
    evidence["anchor"] = {
        "newest_seal": status.newest_seal,
        "anchored_seal": status.anchored_seal,
        "age_seconds": None if age is None else round(age),
        "grace_seconds": grace,
    }
    if seal is None:
        return ""
    seal_age = (now - seal.sealed_at).total_seconds()
    if status.anchored_seal is None:
        if seal_age > grace:
            return f"no anchor pins the trail (seal {seal.seq} is {seal_age:.0f} s old)"
        return ""
    if status.behind and age is not None and age > grace:
        return (
            f"the newest anchor is {age:.0f} s old (grace {grace} s) and seals "
            f"{status.anchored_seal + 1}..{status.newest_seal} are in none"
        )
    return ""


@control(
    id="audit-chain",
    title="The audit trail verifies and its anchors are current",
    iso27001=("A.8.15", "A.5.28"),
    soc2=("CC7.2", "CC7.3"),
    evidence="The latest recorded verification (event id, time, scope, result, "
    "problems), the newest seal and the newest anchor outside the database.",
)
def audit_chain(now: datetime) -> Outcome:
    evidence: dict = {}
    verified = audit_selectors.verification_latest()
    seal = audit_selectors.seal_latest()
    evidence["newest_seal"] = (
        {"seq": seal.seq, "last_id": seal.last_id, "sealed_at": iso(seal.sealed_at)}
        if seal
        else None
    )
    limit = settings.AUDIT_VERIFY_FULL_SECONDS + VERIFY_GRACE_SECONDS
    problems = []
    if verified is None:
        problems.append("the trail has never been verified")
    else:
        age = (now - verified.occurred_at).total_seconds()
        evidence["verification"] = {
            "event_id": verified.pk,
            "at": iso(verified.occurred_at),
            "age_hours": hours(age),
            "limit_hours": hours(limit),
            "outcome": verified.outcome,
            "scope": verified.details.get("scope"),
            "events": verified.details.get("events"),
            "problems": verified.details.get("problems"),
            "first_problem": verified.error_description,
        }
        if verified.outcome != "success":
            problems.append(
                f"the last verification (event {verified.pk}) failed: "
                f"{verified.error_description or verified.error_code}"
            )
        elif age > limit:
            problems.append(
                f"the last verification is {hours(age):.1f} h old "
                f"(limit {hours(limit):.0f} h)"
            )
    anchor = _anchor_problem(now, evidence)
    if anchor:
        problems.append(anchor)
    evidence["problems"] = problems
    if problems:
        return Outcome(CheckStatus.FAIL, sentence(problems), evidence)
    return Outcome(
        CheckStatus.PASS,
        f"Verified {evidence['verification']['age_hours']:.1f} h ago "
        f"(event {verified.pk}); anchors current.",
        evidence,
    )


@control(
    id="audit-retention",
    title="Audit events past retention are archived (Object Lock) on schedule",
    iso27001=("A.8.15", "A.5.33"),
    soc2=("CC7.2",),
    evidence="Retention setting, the oldest event in the hot store, the archives "
    "by state, the oldest unfinished archive and the newest archive.",
)
def audit_retention(now: datetime) -> Outcome:
    retention = timedelta(days=settings.AUDIT_RETENTION_DAYS)
    oldest = audit_selectors.event_oldest()
    summary = audit_selectors.archive_summary()
    unfinished, newest = summary["oldest_unfinished"], summary["newest"]
    evidence = {
        "retention_days": settings.AUDIT_RETENTION_DAYS,
        "archive_bucket": settings.AUDIT_ARCHIVE_S3_BUCKET or None,
        "oldest_hot_event": (
            {"id": oldest.pk, "occurred_at": iso(oldest.occurred_at)}
            if oldest
            else None
        ),
        "archives_by_state": summary["by_state"],
        "oldest_unfinished_archive": (
            {
                "id": unfinished.pk,
                "state": unfinished.state,
                "created_at": iso(unfinished.created_at),
            }
            if unfinished
            else None
        ),
        "newest_archive": (
            {
                "id": newest.pk,
                "last_id": newest.last_id,
                "last_at": iso(newest.last_at),
                "state": newest.state,
                "object_lock": newest.object_lock,
            }
            if newest
            else None
        ),
    }
    problems = []
    if oldest is not None and now - oldest.occurred_at > retention + ARCHIVE_GRACE:
        days = (now - oldest.occurred_at).days
        problems.append(
            f"event {oldest.pk} is {days} days old, past the "
            f"{settings.AUDIT_RETENTION_DAYS}-day retention, and not archived"
        )
    if unfinished is not None and now - unfinished.created_at > ARCHIVE_GRACE:
        problems.append(f"archive {unfinished.pk} is still {unfinished.state}")
    if newest is not None and not newest.object_lock:
        problems.append(f"archive {newest.pk} is not under Object Lock")
    if problems:
        return Outcome(CheckStatus.FAIL, sentence(problems), evidence)
    return Outcome(
        CheckStatus.PASS,
        f"Nothing older than {settings.AUDIT_RETENTION_DAYS} days (+1 day) in the hot "
        "store; archives finished.",
        evidence,
    )


@control(
    id="log-review",
    title="Log reviews are opened every period and signed off in time",
    iso27001=("A.8.15", "A.8.16"),
    soc2=("CC7.2", "CC7.3", "CC4.1"),
    evidence="The latest review (period, notable events, sign-off by whom and "
    "when) and every review pending sign-off with its age.",
)
def log_review(now: datetime) -> Outcome:
    period = timedelta(days=settings.AUDIT_REVIEW_DAYS)
    latest = audit_selectors.review_latest()
    pending = list(audit_selectors.review_pending())
    # A review is due for sign-off one period after its own period ends.
    lapsed = [r for r in pending if now - r.period_end > period]
    evidence = {
        "review_days": settings.AUDIT_REVIEW_DAYS,
        "latest": (
            {
                "id": latest.pk,
                "period_start": iso(latest.period_start),
                "period_end": iso(latest.period_end),
                "notable": latest.notable_count,
                "signed_off_by": latest.signed_off_label or None,
                "signed_off_at": iso(latest.signed_off_at),
            }
            if latest
            else None
        ),
        "pending": [
            {
                "id": r.pk,
                "period_end": iso(r.period_end),
                "notable": r.notable_count,
                "overdue": r in lapsed,
            }
            for r in pending
        ],
    }
    problems = []
    if latest is None:
        problems.append("no log review has been opened")
    elif now - latest.period_end > 2 * period:
        problems.append(
            f"no review opened since {latest.period_end:%Y-%m-%d} "
            f"(every {settings.AUDIT_REVIEW_DAYS} days)"
        )
    for review in lapsed:
        problems.append(
            f"review {review.pk} (period ending {review.period_end:%Y-%m-%d}) "
            "not signed off in time"
        )
    if problems:
        return Outcome(CheckStatus.FAIL, sentence(problems), evidence)
    return Outcome(
        CheckStatus.PASS,
        f"Reviews current; {len(pending)} awaiting sign-off within their period.",
        evidence,
    )
