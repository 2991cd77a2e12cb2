"""Data: encryption at rest and key rotation (A.8.24), erasure on time
(A.8.10, A.5.34)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from audit import selectors as audit_selectors
from compliance.catalogue import Outcome, control
from compliance.checks.common import iso, sentence
from compliance.models import CheckStatus
from privacy import selectors as privacy_selectors
from projects import selectors as project_selectors

# Key-encryption keys are rotated at least yearly (keys_rotate).
KEY_ROTATION_MAX_DAYS = 365
# The purge runs daily: a day's grace past KREO_PURGE_AFTER_DAYS.
ERASURE_GRACE = timedelta(days=1)
# An erasure certificate's objects are removed right after its commit; one
# still open after an hour has stalled (storage down, worker lost).
CERTIFICATE_GRACE = timedelta(hours=1)
ERASURES_SHOWN_DAYS = 30


@control(
    id="encryption-at-rest",
    title="Every stored file in the current sealed format; data keys under the "
    "active key, rotated within a year",
    iso27001=("A.8.24", "A.8.12", "A.5.33"),
    soc2=("CC6.1", "CC6.7"),
    evidence="Files by storage format (and the first not in the current one), "
    "data keys by key-encryption key, the active key id and the last rotation.",
)
def encryption_at_rest(now: datetime) -> Outcome:
    current = project_selectors.file_format_current()
    formats = project_selectors.files_by_encryption()
    stale_files = sum(n for fmt, n in formats.items() if fmt != current)
    keys = project_selectors.data_keys_by_kek()
    active = settings.KREO_ACTIVE_KEY_ID
    stale_keys = sum(n for kek, n in keys.items() if kek != active)
    rotated = audit_selectors.event_latest(event_type="keys.rotate")
    evidence = {
        "current_format": current,
        "files_by_format": {fmt or "plaintext": n for fmt, n in formats.items()},
        "files_not_current": project_selectors.files_not_in_format(fmt=current)
        if stale_files
        else [],
        "active_key_id": active,
        "data_keys_by_kek": keys,
        "last_rotation": (
            {
                "event_id": rotated.pk,
                "at": iso(rotated.occurred_at),
                "rewrapped": rotated.details.get("rewrapped"),
            }
            if rotated
            else None
        ),
        "rotation_max_days": KEY_ROTATION_MAX_DAYS,
    }
    problems = []
    if stale_files:
        problems.append(f"{stale_files} file(s) not in {current}")
    if stale_keys:
        problems.append(f"{stale_keys} data key(s) not under the active key {active}")
    if problems:
        return Outcome(CheckStatus.FAIL, sentence(problems), evidence)
    files = sum(formats.values())
    done = (
        f"{files} file(s) in {current}, {sum(keys.values())} data key(s) under {active}"
    )
    if rotated is None:
        return Outcome(CheckStatus.WARN, f"{done}; no key rotation recorded.", evidence)
    age = (now - rotated.occurred_at).days
    if age > KEY_ROTATION_MAX_DAYS:
        return Outcome(
            CheckStatus.WARN,
            f"{done}; last key rotation {age} days ago "
            f"(limit {KEY_ROTATION_MAX_DAYS}).",
            evidence,
        )
    return Outcome(CheckStatus.PASS, f"{done}; keys rotated {age} days ago.", evidence)


@control(
    id="erasure-deadline",
    title="Deleted projects, stalled erasures and expired exports erased on time",
    iso27001=("A.8.10", "A.5.34"),
    soc2=("CC6.5", "P4.3"),
    evidence="Projects put aside past the purge deadline, erasure certificates "
    "not completed, expired exports still stored, and the erasures completed "
    "in the last 30 days (certificate id, subject, method, times).",
)
def erasure_deadline(now: datetime) -> Outcome:
    deadline = timedelta(days=settings.KREO_PURGE_AFTER_DAYS) + ERASURE_GRACE
    late_projects = project_selectors.projects_put_aside(before=now - deadline)
    stalled = project_selectors.erasures_unfinished(before=now - CERTIFICATE_GRACE)
    exports = privacy_selectors.exports_kept_past(before=now - ERASURE_GRACE)
    done = project_selectors.erasures_completed(
        since=now - timedelta(days=ERASURES_SHOWN_DAYS)
    )
    evidence = {
        "purge_after_days": settings.KREO_PURGE_AFTER_DAYS,
        "projects_overdue": [
            {**p, "deleted_at": iso(p["deleted_at"])} for p in late_projects
        ],
        "erasures_unfinished": [
            {
                "certificate": str(c.pk),
                "subject": f"{c.subject_type}:{c.subject_id}",
                "created_at": iso(c.created_at),
            }
            for c in stalled
        ],
        "exports_overdue": [{**e, "expires_at": iso(e["expires_at"])} for e in exports],
        "erasures_completed": [
            {
                "certificate": str(c.pk),
                "subject": f"{c.subject_type}:{c.subject_id}",
                "method": c.method,
                "created_at": iso(c.created_at),
                "completed_at": iso(c.completed_at),
            }
            for c in done
        ],
    }
    problems = []
    if late_projects:
        problems.append(
            f"{len(late_projects)} deleted project(s) not erased within "
            f"{settings.KREO_PURGE_AFTER_DAYS} days"
        )
    if stalled:
        problems.append(f"{len(stalled)} erasure(s) not completed")
    if exports:
        problems.append(f"{len(exports)} expired export(s) still stored")
    if problems:
        return Outcome(CheckStatus.FAIL, sentence(problems), evidence)
    return Outcome(
        CheckStatus.PASS,
        f"Nothing past its erasure deadline; {len(done)} erasure(s) completed in "
        f"{ERASURES_SHOWN_DAYS} days.",
        evidence,
    )
