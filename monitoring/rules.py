"""Detection rules: plain functions over a batch of audit events.

Each rule takes the events in time order (``Event``; those the rules have
read before carry ``new=False`` and only fill the windows) and the
thresholds (``Limits``), and returns the ``Hit``s the *new* events make:
one per subject, counting the new events seen while the threshold held.
Nothing here reads or writes the database; ``monitoring.services`` feeds the
events in and turns hits into alerts.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from kreo.permissions import ADMIN_GROUP, AUDITOR_GROUP
from monitoring.models import Severity, SubjectKind

LOGIN_FAILURE = "auth.login.failure"
LOGIN_SUCCESS = "auth.login.success"
DOWNLOAD = "file.download"
RATE_LIMITED = "auth.ratelimit.hit"
STATUS_RATE_LIMITED = "status.ratelimit.hit"
REQUEST_RATE_LIMITED = "http.ratelimit.hit"  # kreo.limits, every endpoint
SSO_ROLES = "auth.sso.roles"
ADMIN_CHANGE = "admin.change"
PRIVILEGED_GROUPS = frozenset({ADMIN_GROUP, AUDITOR_GROUP})
PRIVILEGED_FIELDS = ("is_staff", "is_superuser")
USER_CHANGE_PATH = re.compile(r"^/admin/accounts/user/(\d+)/change/$")
# Events the windowed rules look back over (read again from the trail).
WINDOWED_TYPES = (
    LOGIN_FAILURE,
    LOGIN_SUCCESS,
    DOWNLOAD,
    RATE_LIMITED,
    STATUS_RATE_LIMITED,
    REQUEST_RATE_LIMITED,
)
WINDOWED = frozenset(WINDOWED_TYPES)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: datetime
    type: str
    outcome: str
    actor_id: int | None
    actor_label: str
    ip: str | None
    target_type: str
    target_id: str
    path: str
    error_code: str
    details: dict
    correlation_id: str
    new: bool = True

    @classmethod
    def from_row(cls, row: Sequence, *, new: bool = True) -> Event:
        """An event from a tuple of ``audit.selectors.STREAM_FIELDS``."""
        return cls(*row, new=new)

    @property
    def account(self) -> str:
        """The account a sign-in tried: the e-mail typed, else the actor."""
        typed = self.details.get("email") if isinstance(self.details, dict) else ""
        return str(typed or self.actor_label or self.actor_id or "").lower()


@dataclass(frozen=True)
class Limits:
    stuffing_failures: int = 30
    stuffing_accounts: int = 5
    spray_accounts: int = 15
    spray_success_rate: float = 0.1
    brute_force_failures: int = 10
    signin_window: timedelta = timedelta(minutes=5)
    downloads_per_minute: int = 50
    rate_limited_per_minute: int = 20
    # correlation id -> [(user pk, {field: [old, new]})] of user edits in the
    # admin (django-auditlog), for the privilege rule.
    user_changes: dict = field(default_factory=dict)

    @classmethod
    def from_settings(cls, **extra) -> Limits:
        return cls(
            stuffing_failures=settings.MONITORING_STUFFING_FAILURES,
            stuffing_accounts=settings.MONITORING_STUFFING_ACCOUNTS,
            spray_accounts=settings.MONITORING_SPRAY_ACCOUNTS,
            spray_success_rate=settings.MONITORING_SPRAY_SUCCESS_RATE,
            brute_force_failures=settings.MONITORING_BRUTE_FORCE_FAILURES,
            signin_window=timedelta(seconds=settings.MONITORING_SIGNIN_WINDOW_SECONDS),
            downloads_per_minute=settings.MONITORING_DOWNLOADS_PER_MINUTE,
            rate_limited_per_minute=settings.MONITORING_429_PER_MINUTE,
            **extra,
        )

    @property
    def lookback(self) -> timedelta:
        """How far back the windowed rules need events read before."""
        return max(self.signin_window, timedelta(minutes=1))


@dataclass
class Hit:
    rule: str
    severity: str
    subject_kind: str
    subject: str
    summary: str
    first_seen: datetime
    last_seen: datetime
    count: int = 1
    first_event_id: int | None = None
    last_event_id: int | None = None
    details: dict = field(default_factory=dict)


class _Hits(dict):
    """Hits of one rule by subject; a repeat extends the hit."""

    def note(self, event: Event, first_seen: datetime, make: Callable[[], Hit]):
        hit = make()
        key = (hit.subject_kind, hit.subject)
        known = self.get(key)
        if known is None:
            hit.first_seen = min(first_seen, event.at)
            hit.last_seen = event.at
            hit.first_event_id = hit.last_event_id = event.id
            self[key] = hit
        else:
            known.count += 1
            known.last_seen = max(known.last_seen, event.at)
            known.last_event_id = event.id
            known.summary = hit.summary
            known.details.update(hit.details)


class _Window:
    """Events of one key within a sliding time window."""

    __slots__ = ("events", "failed", "successes")

    def __init__(self):
        self.events: deque[tuple[datetime, str, bool]] = deque()
        self.failed: Counter[str] = Counter()  # account -> failures in window
        self.successes = 0

    def add(self, at: datetime, account: str, failed: bool) -> None:
        self.events.append((at, account, failed))
        if failed:
            self.failed[account] += 1
        else:
            self.successes += 1

    def expire(self, before: datetime) -> None:
        events, failed = self.events, self.failed
        while events and events[0][0] < before:
            _, account, was_failed = events.popleft()
            if was_failed:
                failed[account] -= 1
                if not failed[account]:
                    del failed[account]
            else:
                self.successes -= 1

    @property
    def failures(self) -> int:
        return len(self.events) - self.successes

    @property
    def since(self) -> datetime:
        return self.events[0][0]


def _windowed(
    events: Iterable[Event],
    *,
    types: tuple[str, ...],
    key: Callable[[Event], object],
    window: timedelta,
    failed: Callable[[Event], bool],
    fires: Callable[[_Window], bool],
    make: Callable[[Event, object, _Window], Hit],
) -> list[Hit]:
    windows: dict[object, _Window] = {}
    hits = _Hits()
    for event in events:
        if event.type not in types:
            continue
        k = key(event)
        if k is None:
            continue
        win = windows.get(k)
        if win is None:
            win = windows[k] = _Window()
        win.add(event.at, event.account, failed(event))
        win.expire(event.at - window)
        if event.new and fires(win):
            hits.note(event, win.since, lambda e=event, k=k, w=win: make(e, k, w))
    return list(hits.values())


def _is_failure(event: Event) -> bool:
    return event.type == LOGIN_FAILURE


def credential_stuffing(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Many failed sign-ins over several accounts from one IP."""
    return _windowed(
        events,
        types=(LOGIN_FAILURE,),
        key=lambda e: e.ip,
        window=limits.signin_window,
        failed=_is_failure,
        fires=lambda w: (
            w.failures >= limits.stuffing_failures
            and len(w.failed) >= limits.stuffing_accounts
        ),
        make=lambda e, ip, w: Hit(
            rule="credential_stuffing",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.IP,
            subject=str(ip),
            summary=(
                f"Credential stuffing from {ip}: {w.failures} failed sign-ins "
                f"over {len(w.failed)} accounts"
            ),
            first_seen=e.at,
            last_seen=e.at,
            details={"failures": w.failures, "accounts": len(w.failed)},
        ),
    )


def password_spray(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Failures over many accounts from any IPs, with hardly any success."""

    def fires(w: _Window) -> bool:
        total = len(w.events)
        return (
            len(w.failed) >= limits.spray_accounts
            and w.successes < limits.spray_success_rate * total
        )

    return _windowed(
        events,
        types=(LOGIN_FAILURE, LOGIN_SUCCESS),
        key=lambda e: "sign-in",
        window=limits.signin_window,
        failed=_is_failure,
        fires=fires,
        make=lambda e, _k, w: Hit(
            rule="password_spray",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.SYSTEM,
            subject="sign-in",
            summary=(
                f"Password spray: failures on {len(w.failed)} accounts, "
                f"{w.successes} of {len(w.events)} sign-ins succeeded"
            ),
            first_seen=e.at,
            last_seen=e.at,
            details={"accounts": len(w.failed), "successes": w.successes},
        ),
    )


def brute_force(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Many failures on one account from one IP."""
    return _windowed(
        events,
        types=(LOGIN_FAILURE,),
        key=lambda e: (e.account, e.ip) if e.account else None,
        window=limits.signin_window,
        failed=_is_failure,
        fires=lambda w: w.failures >= limits.brute_force_failures,
        make=lambda e, k, w: Hit(
            rule="brute_force",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.USER,
            subject=k[0],
            summary=(
                f"Brute force on {k[0]}: {w.failures} failed sign-ins from {k[1]}"
            ),
            first_seen=e.at,
            last_seen=e.at,
            details={"ip": k[1], "failures": w.failures},
        ),
    )


def mass_download(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """More file downloads by one user in a minute than anyone reads."""
    return _windowed(
        events,
        types=(DOWNLOAD,),
        key=lambda e: e.actor_id,
        window=timedelta(minutes=1),
        failed=lambda e: True,
        fires=lambda w: len(w.events) > limits.downloads_per_minute,
        make=lambda e, uid, w: Hit(
            rule="mass_download",
            severity=Severity.HIGH,
            subject_kind=SubjectKind.USER,
            subject=str(uid),
            summary=(
                f"Mass download by {e.actor_label or uid}: "
                f"{len(w.events)} files in a minute"
            ),
            first_seen=e.at,
            last_seen=e.at,
            details={"downloads_per_minute": len(w.events)},
        ),
    )


def rate_limit_storm(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Request limits refusing one IP, or one signed-in user, again and again."""
    found = []
    for kind, key in ((SubjectKind.IP, "ip"), (SubjectKind.USER, "actor_id")):
        found += _windowed(
            events,
            types=(RATE_LIMITED, STATUS_RATE_LIMITED, REQUEST_RATE_LIMITED),
            key=lambda e, key=key: getattr(e, key),
            window=timedelta(minutes=1),
            failed=lambda e: True,
            fires=lambda w: len(w.events) >= limits.rate_limited_per_minute,
            make=lambda e, who, w, kind=kind: Hit(
                rule="rate_limit_storm",
                severity=Severity.MEDIUM,
                subject_kind=kind,
                subject=str(who),
                summary=(
                    f"429 storm from {kind.label.lower()} "
                    f"{who if kind == SubjectKind.IP else e.actor_label or who}: "
                    f"{len(w.events)} refusals in a minute"
                ),
                first_seen=e.at,
                last_seen=e.at,
                details={"per_minute": len(w.events)},
            ),
        )
    return found


FLOOD_SUPPRESSED = "audit.flood.suppressed"  # audit.bounded
ANONYMOUS_4XX_BUCKET = "anon4xx:"


def request_flood(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Anonymous errors (404s of a scan, refused forms) from one IP past the
    audit bound in a minute: the audit middleware stopped recording them one
    by one, and says so once a minute, which is what this reads."""

    def make(e: Event) -> Hit:
        ip = str(e.details.get("bucket", ""))[len(ANONYMOUS_4XX_BUCKET) :]
        per_minute = e.details.get("per_minute")
        return Hit(
            rule="request_flood",
            severity=Severity.MEDIUM,
            subject_kind=SubjectKind.IP,
            subject=ip,
            summary=f"Flood of anonymous errors from {ip}: over {per_minute} a minute",
            first_seen=e.at,
            last_seen=e.at,
            details={"per_minute": per_minute},
        )

    return _single(
        events,
        lambda e: (
            e.type == FLOOD_SUPPRESSED
            and isinstance(e.details, dict)
            and str(e.details.get("bucket", "")).startswith(ANONYMOUS_4XX_BUCKET)
        ),
        make,
    )


def _single(events: Sequence[Event], match, make) -> list[Hit]:
    hits = _Hits()
    for event in events:
        if event.new and match(event):
            hits.note(event, event.at, lambda e=event: make(e))
    return list(hits.values())


def _privilege_grants(event: Event, limits: Limits) -> tuple[str, list[str]] | None:
    """(user, what was granted) when ``event`` made someone privileged."""
    if event.type == SSO_ROLES:
        d = event.details or {}
        granted = sorted(PRIVILEGED_GROUPS & set(d.get("groups_added") or []))
        if d.get("staff_changed") and d.get("is_staff"):
            granted.append("staff")
        return (event.target_id, granted) if granted else None
    if event.type == ADMIN_CHANGE and USER_CHANGE_PATH.match(event.path or ""):
        for pk, changes in limits.user_changes.get(event.correlation_id, ()):
            granted = [
                name
                for name in PRIVILEGED_FIELDS
                if str((changes.get(name) or ["", ""])[-1]) == "True"
            ]
            if granted:
                return (str(pk), granted)
    return None


def privilege_change(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """A user made staff, superuser, Admin or Auditor (SSO roles or the admin)."""
    hits = _Hits()
    for event in events:
        if not event.new or event.type not in (SSO_ROLES, ADMIN_CHANGE):
            continue
        grant = _privilege_grants(event, limits)
        if grant is None:
            continue
        user, granted = grant

        def make(e=event, user=user, granted=granted) -> Hit:
            by = e.actor_label or "single sign-on"
            return Hit(
                rule="privilege_change",
                severity=Severity.HIGH,
                subject_kind=SubjectKind.USER,
                subject=user,
                summary=f"User {user} made {', '.join(granted)} (by {by})",
                first_seen=e.at,
                last_seen=e.at,
                details={"granted": granted, "by": by},
            )

        hits.note(event, event.at, make)
    return list(hits.values())


def _system(rule: str, severity: str, subject: str, text: str):
    def make(e: Event) -> Hit:
        return Hit(
            rule=rule,
            severity=severity,
            subject_kind=SubjectKind.SYSTEM,
            subject=subject,
            summary=f"{text} ({e.error_code or e.outcome})",
            first_seen=e.at,
            last_seen=e.at,
            details={"error_code": e.error_code, "event_id": e.id},
        )

    return make


def audit_trail_failure(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Verification of the trail failed (a cut, edit or bad seal), the sealer
    rejected events whose MAC fails (forged with the database's rights),
    archival failed, or the outage spool refused events."""
    failed = ("failure", "error")
    return [
        *_single(
            events,
            lambda e: e.type == "audit.verify" and e.outcome in failed,
            _system(
                "audit_verify_failed",
                Severity.CRITICAL,
                "audit trail",
                "Audit trail verification failed",
            ),
        ),
        *_single(
            events,
            lambda e: e.type == "audit.archive" and e.outcome in failed,
            _system(
                "audit_archive_failed",
                Severity.HIGH,
                "audit archive",
                "Audit archival failed",
            ),
        ),
        *_single(
            events,
            lambda e: e.type == "audit.seal.rejected",
            _system(
                "audit_seal_rejected",
                Severity.CRITICAL,
                "audit trail",
                "Audit events rejected by the sealer (MAC check failed)",
            ),
        ),
        *_single(
            events,
            lambda e: e.type == "audit.spool.overflow",
            _system(
                "audit_spool_overflow",
                Severity.CRITICAL,
                "audit spool",
                "Audit events refused by a full spool",
            ),
        ),
    ]


def backup_failure(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """A backup set failed or is incomplete (3-2-1 not met), or a restore
    drill failed."""

    def incomplete(e: Event) -> bool:
        state = (e.details or {}).get("state")
        return e.type == "backup.create" and (
            e.outcome in ("failure", "error") or state == "incomplete"
        )

    return [
        *_single(
            events,
            incomplete,
            _system(
                "backup_incomplete",
                Severity.HIGH,
                "backups",
                "Backup failed or incomplete",
            ),
        ),
        *_single(
            events,
            lambda e: e.type == "backup.drill" and e.outcome != "success",
            _system(
                "backup_drill_failed",
                Severity.HIGH,
                "restore drill",
                "Restore drill failed",
            ),
        ),
    ]


RULES: tuple[Callable[[Sequence[Event], Limits], list[Hit]], ...] = (
    credential_stuffing,
    password_spray,
    brute_force,
    mass_download,
    rate_limit_storm,
    request_flood,
    privilege_change,
    audit_trail_failure,
    backup_failure,
)


def evaluate(events: Sequence[Event], limits: Limits) -> list[Hit]:
    """Every rule's hits over ``events`` (sorted here by time, then id)."""
    ordered = sorted(events, key=lambda e: (e.at, e.id))
    return [hit for rule in RULES for hit in rule(ordered, limits)]
