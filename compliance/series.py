"""Daily series for the cockpit's charts and the evidence pack.

Each series is a list of ``(date, value)``, one per day from ``start`` to
``end`` inclusive (the current time zone's dates); ``None`` is a day without
data (a gap in a chart, never a zero). Everything is read through the other
apps' selectors.

Where the figures come from:

- ``pass_rate``: the stored check results. Per day, each control's last
  result that day; the share with status "pass" among those that apply
  ("not applicable" left out; "warn", "fail", "error", "not checked" count as
  not passing). A day without any run is a gap.
- ``backup_age_hours``: the backup catalogue. At the end of each day (or now,
  for today), the hours since the latest good backup set finished before
  then; a gap before the first good set.
- ``failed_signins``: the audit trail, ``auth.login.failure`` events per day
  (wrong password or unknown account; a wrong second factor is
  ``auth.2fa.failed`` and not counted here).
- ``twofa_adoption``: the history is not derivable from the accounts tables
  (a removed device leaves no row) and rebuilding it from device
  added/removed events would also need every account's creation and
  deactivation. It comes from the daily 2FA control's stored evidence: per
  day, the last result whose evidence holds ``TWOFA_EVIDENCE_KEY`` (the
  share, 0 to 1, of active accounts with a confirmed second factor). A day
  without such a result is a gap.
- ``alerts_opened`` / ``alerts_closed``: the monitoring app, alerts first
  seen and resolved per day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone

from audit import selectors as audit_selectors
from backups import selectors as backup_selectors
from compliance import selectors
from compliance.models import CheckStatus
from monitoring import selectors as monitoring_selectors

Series = list[tuple[date, float | None]]

SERIES_KEYS = (
    "pass_rate",
    "backup_age_hours",
    "failed_signins",
    "twofa_adoption",
    "alerts_opened",
    "alerts_closed",
)
FAILED_SIGNIN_TYPES = ("auth.login.failure",)
# The key of the 2FA control's evidence holding the adoption share (0 to 1).
TWOFA_EVIDENCE_KEY = "twofa_adoption"
# The backup set states that count as a good backup (backups.models.SetState).
GOOD_BACKUP = "good"
PERIOD_BACKWARDS = "The period ends before it starts."


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz),
    )


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def _day_of(moment: datetime) -> date:
    return timezone.localtime(moment).date()


def _last_results_per_day(since: datetime, until: datetime) -> dict:
    """date -> {control id: its last result that day}."""
    per_day: dict[date, dict] = {}
    rows = selectors.results_between(start=since, end=until).order_by(
        "checked_at", "id"
    )
    for row in rows.iterator():
        per_day.setdefault(_day_of(row.checked_at), {})[row.control_id] = row
    return per_day


def pass_rate(per_day: dict, days: list[date]) -> Series:
    out: Series = []
    for day in days:
        results = [
            r
            for r in per_day.get(day, {}).values()
            if r.status != CheckStatus.NOT_APPLICABLE
        ]
        if not results:
            out.append((day, None))
            continue
        passing = sum(1 for r in results if r.status == CheckStatus.PASS)
        out.append((day, round(passing / len(results), 4)))
    return out


def twofa_adoption(per_day: dict, days: list[date]) -> Series:
    out: Series = []
    for day in days:
        value = None
        found = sorted(
            (r for r in per_day.get(day, {}).values() if isinstance(r.evidence, dict)),
            key=lambda r: (r.checked_at, r.pk),
        )
        for result in found:
            share = result.evidence.get(TWOFA_EVIDENCE_KEY)
            if isinstance(share, int | float) and not isinstance(share, bool):
                value = round(float(share), 4)
        out.append((day, value))
    return out


def backup_age_hours(days: list[date], until: datetime) -> Series:
    now = timezone.now()
    finished = sorted(
        (done or made)
        for done, made in backup_selectors.backup_set_list()
        .filter(state=GOOD_BACKUP, created_at__lt=until)
        .values_list("finished_at", "created_at")
    )
    out: Series = []
    for day in days:
        day_end = min(_bounds(day, day)[1], now)
        before = [moment for moment in finished if moment <= day_end]
        if not before or day_end < _bounds(day, day)[0]:
            out.append((day, None))
            continue
        age = (day_end - before[-1]).total_seconds() / 3600
        out.append((day, round(age, 2)))
    return out


def _counts(counts: dict, days: list[date]) -> Series:
    """A count per day; a day still to come is a gap, not a zero."""
    today = timezone.localdate()
    return [(day, None if day > today else float(counts.get(day, 0))) for day in days]


def daily(*, start: date, end: date) -> dict[str, Series]:
    """Every series of the cockpit from ``start`` to ``end`` (both included)."""
    if end < start:
        raise ValueError(PERIOD_BACKWARDS)
    since, until = _bounds(start, end)
    days = _days(start, end)
    per_day = _last_results_per_day(since, until)
    failed = audit_selectors.event_counts_per_day(
        event_types=FAILED_SIGNIN_TYPES, since=since, until=until
    )
    opened, closed = monitoring_selectors.alert_counts_per_day(since=since, until=until)
    return {
        "pass_rate": pass_rate(per_day, days),
        "backup_age_hours": backup_age_hours(days, until),
        "failed_signins": _counts(failed, days),
        "twofa_adoption": twofa_adoption(per_day, days),
        "alerts_opened": _counts(opened, days),
        "alerts_closed": _counts(closed, days),
    }
