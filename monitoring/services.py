"""Writes of the monitoring app: running the rules, raising and handling alerts."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import selectors as audit_selectors
from audit.models import Outcome
from audit.services import audit_record
from monitoring import rules
from monitoring.models import ACTIVE_STATES, Alert, AlertState, RuleCursor

SYSTEM_LABEL = "monitoring"
ALERT_NEEDS_REASON = "Say why: acknowledging or resolving an alert needs a reason."
ALERT_ALREADY_RESOLVED = "This alert is resolved already."
ALERT_ALREADY_ACKNOWLEDGED = "This alert is acknowledged already."
SUPERSEDED = "Quiet for longer than the alert window; a new alert follows."


class AlertError(ValueError):
    pass


def _notify_later(alert_id: int) -> None:
    from monitoring import tasks

    transaction.on_commit(lambda: tasks.alert_notify.delay(alert_id=alert_id))
    if settings.MONITORING_WEBHOOK_URL:
        transaction.on_commit(lambda: tasks.webhook_send.delay(alert_id=alert_id))


def alert_raise(*, hit: rules.Hit) -> tuple[Alert, bool]:
    """Fold ``hit`` into the active alert of its rule and subject, or open a
    new alert (notified after commit); return the alert and whether it is new.

    An active alert last seen longer than ``MONITORING_ALERT_WINDOW_SECONDS``
    before the hit is resolved by the system first: the hit starts a new one.
    """
    window = timedelta(seconds=settings.MONITORING_ALERT_WINDOW_SECONDS)
    active = (
        Alert.objects.select_for_update()
        .filter(
            rule=hit.rule,
            subject_kind=hit.subject_kind,
            subject=hit.subject[:254],
            state__in=ACTIVE_STATES,
        )
        .first()
    )
    if active is not None and hit.first_seen - active.last_seen <= window:
        active.count += hit.count
        active.last_seen = max(active.last_seen, hit.last_seen)
        active.last_event_id = hit.last_event_id
        active.summary = hit.summary[:512]
        active.details = {**active.details, **hit.details}
        active.save(
            update_fields=["count", "last_seen", "last_event_id", "summary", "details"]
        )
        return active, False
    if active is not None:
        active.state = AlertState.RESOLVED
        active.resolved_label = SYSTEM_LABEL
        active.resolved_at = timezone.now()
        active.resolved_reason = SUPERSEDED
        active.save()
    alert = Alert.objects.create(
        rule=hit.rule,
        severity=hit.severity,
        subject_kind=hit.subject_kind,
        subject=hit.subject[:254],
        summary=hit.summary[:512],
        details=hit.details,
        first_seen=hit.first_seen,
        last_seen=hit.last_seen,
        count=hit.count,
        first_event_id=hit.first_event_id,
        last_event_id=hit.last_event_id,
    )
    audit_record(
        event_type="monitoring.alert.open",
        actor_label=SYSTEM_LABEL,
        target=alert,
        details={
            "rule": alert.rule,
            "severity": alert.severity,
            "subject": f"{alert.subject_kind}:{alert.subject}",
        },
    )
    _notify_later(alert.pk)
    return alert, True


def _limits(rows: list) -> rules.Limits:
    """Thresholds, plus the admin's user edits the privilege rule looks at."""
    cids = [
        row[12]
        for row in rows
        if row[2] == rules.ADMIN_CHANGE and rules.USER_CHANGE_PATH.match(row[9] or "")
    ]
    changes = audit_selectors.user_field_changes(correlation_ids=cids) if cids else {}
    return rules.Limits.from_settings(user_changes=changes)


def _cursor_start() -> None:
    """Create the cursor on the first run, just before the rules' look-back
    window: a new deployment watches from now on, not the whole hot store
    (which would mail an alert for every old attack)."""
    if RuleCursor.objects.filter(name="rules").exists():
        return
    since = timezone.now() - rules.Limits.from_settings().lookback
    RuleCursor.objects.get_or_create(
        name="rules",
        defaults={"last_event_id": audit_selectors.event_id_before(since)},
    )


def rules_run(*, batch_size: int | None = None, max_batches: int = 100) -> dict:
    """Run the rules over the audit events recorded since the last run.

    Batches of ``MONITORING_RULES_BATCH`` events, each in one transaction
    with the cursor row locked (one runner at a time); the windowed rules
    also see the events of their window that earlier runs read. Returns
    counts of events read and alerts opened and updated.
    """
    batch_size = batch_size or settings.MONITORING_RULES_BATCH
    _cursor_start()
    summary = {"events": 0, "opened": 0, "updated": 0}
    # Windowed rows this run read, up to the cursor it last wrote; when
    # another run moved the cursor since, they are read again.
    carried: list | None = None
    carried_to = -1
    for _ in range(max_batches):
        with transaction.atomic():
            cursor = RuleCursor.objects.select_for_update().get(name="rules")
            rows = audit_selectors.events_after(
                after_id=cursor.last_event_id,
                limit=batch_size,
                settle_seconds=settings.MONITORING_RULES_SETTLE_SECONDS,
            )
            if not rows:
                break
            limits = _limits(rows)
            since = min(row[1] for row in rows) - limits.lookback
            if carried is None or carried_to != cursor.last_event_id:
                earlier = audit_selectors.events_recent(
                    event_types=rules.WINDOWED_TYPES,
                    since=since,
                    up_to_id=cursor.last_event_id,
                )
            else:  # the previous batches' rows: no need to read them again
                earlier = [row for row in carried if row[1] >= since]
            carried = earlier + [row for row in rows if row[2] in rules.WINDOWED]
            events = [rules.Event.from_row(row, new=False) for row in earlier]
            events += [rules.Event.from_row(row) for row in rows]
            for hit in rules.evaluate(events, limits):
                _, created = alert_raise(hit=hit)
                summary["opened" if created else "updated"] += 1
            cursor.last_event_id = carried_to = rows[-1][0]
            cursor.events_read += len(rows)
            cursor.save()
            summary["events"] += len(rows)
        if len(rows) < batch_size:
            break
    return summary


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise AlertError(ALERT_NEEDS_REASON)
    return reason[:2000]


@transaction.atomic
def alert_acknowledge(
    *, actor, alert_id: int, reason: str, request: HttpRequest | None = None
) -> Alert:
    """Mark an open alert as seen and being handled by ``actor``, and why."""
    reason = _reason(reason)
    alert = Alert.objects.select_for_update().get(pk=alert_id)
    if alert.state == AlertState.RESOLVED:
        raise AlertError(ALERT_ALREADY_RESOLVED)
    if alert.state == AlertState.ACKNOWLEDGED:
        raise AlertError(ALERT_ALREADY_ACKNOWLEDGED)
    alert.state = AlertState.ACKNOWLEDGED
    alert.acknowledged_by = actor
    alert.acknowledged_label = actor.email
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_reason = reason
    alert.save()
    audit_record(
        event_type="monitoring.alert.acknowledge",
        actor=actor,
        request=request,
        target=alert,
        details={"rule": alert.rule, "reason": reason[:500]},
    )
    return alert


@transaction.atomic
def alert_resolve(
    *, actor, alert_id: int, reason: str, request: HttpRequest | None = None
) -> Alert:
    """Close an alert (open or acknowledged) as handled by ``actor``, and why."""
    reason = _reason(reason)
    alert = Alert.objects.select_for_update().get(pk=alert_id)
    if alert.state == AlertState.RESOLVED:
        raise AlertError(ALERT_ALREADY_RESOLVED)
    alert.state = AlertState.RESOLVED
    alert.resolved_by = actor
    alert.resolved_label = actor.email
    alert.resolved_at = timezone.now()
    alert.resolved_reason = reason
    alert.save()
    audit_record(
        event_type="monitoring.alert.resolve",
        actor=actor,
        request=request,
        target=alert,
        details={"rule": alert.rule, "reason": reason[:500]},
    )
    return alert


def webhook_failed_record(*, alert_id: int, attempts: int, error: str) -> None:
    """Record that the webhook gave up on an alert after its retries."""
    audit_record(
        event_type="monitoring.webhook.failed",
        actor_label=SYSTEM_LABEL,
        outcome=Outcome.ERROR,
        target_type="monitoring.alert",
        target_id=str(alert_id),
        error_code="webhook_failed",
        error_description=error[:512],
        details={"attempts": attempts},
    )
