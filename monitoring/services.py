"""Writes of the monitoring app: running the rules, raising and handling alerts."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import selectors as audit_selectors
from audit.models import Outcome
from audit.services import audit_record
from kreo.cache import CacheUnavailable
from kreo.net import client_ip
from monitoring import ipfilter, rules, selectors
from monitoring.models import (
    ACTIVE_STATES,
    Alert,
    AlertState,
    IPListKind,
    IPRule,
    IPRuleSource,
    RuleCursor,
    SubjectKind,
)

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
                alert, created = alert_raise(hit=hit)
                summary["opened" if created else "updated"] += 1
                if ip_block_for_alert(alert=alert) is not None:
                    summary["blocked"] = summary.get("blocked", 0) + 1
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


# --- The IP deny list and the /admin/ allow list (monitoring.ipfilter) ---

IP_NEEDS_REASON = "Say why: an IP filter entry needs a reason."
IP_EXPIRY_PAST = "The expiry is in the past: leave it empty, or pick a later time."
IP_LOCKS_YOU_OUT = (
    "This would shut you out of the admin: your address {ip} would be outside "
    "every /admin/ allow entry. Add an entry for your own network first."
)
IP_BLOCKS_YOU = "This would block your own address ({ip})."


class IPRuleError(ValueError):
    pass


def _ip_fields(rule: IPRule) -> dict:
    return {
        "kind": rule.kind,
        "network": rule.network,
        "reason": rule.reason,
        "expires_at": rule.expires_at.isoformat() if rule.expires_at else None,
        "source": rule.source,
    }


def _ip_clean(
    *, kind: str, network: str, reason: str, expires_at: datetime | None
) -> dict:
    if kind not in IPListKind.values:
        raise IPRuleError(f"Unknown list: {kind!r}.")
    try:
        parsed = ipfilter.parse_network(network, deny=kind == IPListKind.DENY)
    except ipfilter.NetworkError as exc:
        raise IPRuleError(str(exc)) from None
    reason = (reason or "").strip()
    if not reason:
        raise IPRuleError(IP_NEEDS_REASON)
    if expires_at is not None and expires_at <= timezone.now():
        raise IPRuleError(IP_EXPIRY_PAST)
    return {
        "kind": kind,
        "network": str(parsed),
        "reason": reason[:500],
        "expires_at": expires_at,
    }


def ip_rule_lockout_error(
    *, request: HttpRequest | None, change: dict | None, exclude_id: int | None
) -> str | None:
    """Why the change (``kind``/``network``/``expires_at``, or a removal
    when ``change`` is None) would lock the staff member making it out of
    the admin, or None. Read only: admin forms ask before saving."""
    if request is None:
        return None
    ip = client_ip(request)
    address = ipaddress.ip_address(ip)
    rows = [r for r in selectors.ip_rules_in_force() if r[0] != exclude_id]
    if change is not None:
        rows.append((0, change["kind"], change["network"], change["expires_at"]))
    table = ipfilter.Table.build(None, rows)
    if table.denied(address) is not None:
        return IP_BLOCKS_YOU.format(ip=ip)
    if not table.admin_allowed(address):
        return IP_LOCKS_YOU_OUT.format(ip=ip)
    return None


def _ip_guard(request, change, exclude_id) -> None:
    error = ip_rule_lockout_error(request=request, change=change, exclude_id=exclude_id)
    if error:
        raise IPRuleError(error)


@transaction.atomic
def ip_rule_create(
    *,
    actor,
    kind: str,
    network: str,
    reason: str,
    expires_at: datetime | None = None,
    request: HttpRequest | None = None,
) -> IPRule:
    """Add a deny or admin-allow entry (audited); every process applies it
    within ``MONITORING_IPFILTER_REFRESH_SECONDS`` of the commit."""
    fields = _ip_clean(kind=kind, network=network, reason=reason, expires_at=expires_at)
    _ip_guard(request, fields, None)
    rule = IPRule.objects.create(
        **fields, created_by=actor, created_label=getattr(actor, "email", "")
    )
    audit_record(
        event_type="monitoring.ip_rule.create",
        actor=actor,
        request=request,
        target=rule,
        details=_ip_fields(rule),
    )
    transaction.on_commit(ipfilter.changed)
    return rule


@transaction.atomic
def ip_rule_update(
    *,
    actor,
    rule_id: int,
    kind: str,
    network: str,
    reason: str,
    expires_at: datetime | None = None,
    request: HttpRequest | None = None,
) -> IPRule:
    """Change an entry (audited with its values before and after)."""
    fields = _ip_clean(kind=kind, network=network, reason=reason, expires_at=expires_at)
    rule = IPRule.objects.select_for_update().get(pk=rule_id)
    _ip_guard(request, fields, rule.pk)
    before = _ip_fields(rule)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.save()
    audit_record(
        event_type="monitoring.ip_rule.change",
        actor=actor,
        request=request,
        target=rule,
        details={"before": before, "after": _ip_fields(rule)},
    )
    transaction.on_commit(ipfilter.changed)
    return rule


@transaction.atomic
def ip_rule_delete(*, actor, rule_id: int, request: HttpRequest | None = None) -> None:
    """Remove an entry (audited with what it was)."""
    rule = IPRule.objects.select_for_update().get(pk=rule_id)
    _ip_guard(request, None, rule.pk)
    audit_record(
        event_type="monitoring.ip_rule.delete",
        actor=actor,
        request=request,
        target=rule,
        details=_ip_fields(rule),
    )
    rule.delete()
    transaction.on_commit(ipfilter.changed)


def _block_network(address) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The address alone for IPv4; for IPv6 its /MONITORING_AUTOBLOCK_IPV6_PREFIX
    (one host usually holds a whole /64 and can move within it at will)."""
    if address.version == 4:
        return ipaddress.ip_network(address)
    prefix = settings.MONITORING_AUTOBLOCK_IPV6_PREFIX
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def ip_block_for_alert(*, alert: Alert) -> IPRule | None:
    """Block the IP an alert is about for ``MONITORING_AUTOBLOCK_SECONDS``,
    when ``MONITORING_AUTOBLOCK`` is on and the alert's rule is one of
    ``MONITORING_AUTOBLOCK_RULES``. Not when a deny entry covers the address
    already, nor inside the ``/admin/`` allow list (the staff's own
    networks). The block names the alert and the alert the block."""
    if (
        not settings.MONITORING_AUTOBLOCK
        or alert.rule not in settings.MONITORING_AUTOBLOCK_RULES
        or alert.subject_kind != SubjectKind.IP
    ):
        return None
    try:
        address = ipaddress.ip_address(alert.subject)
    except ValueError:
        return None
    table = ipfilter.Table.build(None, selectors.ip_rules_in_force())
    if table.denied(address) is not None or (table.in_admin_allow(address)):
        return None
    seconds = settings.MONITORING_AUTOBLOCK_SECONDS
    rule = IPRule.objects.create(
        kind=IPListKind.DENY,
        network=str(_block_network(address)),
        reason=f"Automatic, alert #{alert.pk}: {alert.summary}"[:500],
        expires_at=timezone.now() + timedelta(seconds=seconds),
        source=IPRuleSource.RULE,
        alert=alert,
        created_label=SYSTEM_LABEL,
    )
    alert.details = {
        **alert.details,
        "ip_block": {
            "id": rule.pk,
            "network": rule.network,
            "expires_at": rule.expires_at.isoformat(),
        },
    }
    alert.save(update_fields=["details"])
    audit_record(
        event_type="monitoring.ip_rule.create",
        actor_label=SYSTEM_LABEL,
        target=rule,
        details={**_ip_fields(rule), "alert_id": alert.pk, "rule": alert.rule},
    )
    transaction.on_commit(ipfilter.changed)
    return rule


SUMMARY_LOOKBACK_WINDOWS = 5


def ip_block_summary(*, now: float | None = None) -> int:
    """Write one audit event per filter entry and finished window in which it
    refused requests (counted in the shared cache by ``monitoring.ipfilter``);
    return how many were written. Each window is summarised once, whichever
    worker runs this first."""
    seconds = settings.MONITORING_IPFILTER_SUMMARY_SECONDS
    current = ipfilter.window_of(time.time() if now is None else now)
    windows = range(current - SUMMARY_LOOKBACK_WINDOWS, current)
    since = datetime.fromtimestamp(windows[0] * seconds, tz=UTC)
    networks = {
        str(pk): (network, kind)
        for pk, kind, network, _ in selectors.ip_rules_in_force(since=since)
        if kind == IPListKind.DENY
    }
    networks[ipfilter.ADMIN_ENTRY] = ("", IPListKind.ADMIN_ALLOW)
    written = 0
    for entry, (network, kind) in networks.items():
        for window in windows:
            written += _ip_window_summary(entry, network, kind, window, seconds)
    return written


def _ip_window_summary(entry, network, kind, window, seconds) -> int:
    count_key = ipfilter.COUNT_KEY.format(entry=entry, window=window)
    try:
        count = cache.get(count_key)
        if not count or not cache.add(f"{count_key}:done", 1, seconds * 10):
            return 0
        first_ip = cache.get(ipfilter.FIRST_IP_KEY.format(entry=entry, window=window))
    except CacheUnavailable:
        return 0
    audit_record(
        event_type="monitoring.ip.blocked",
        actor_label=SYSTEM_LABEL,
        outcome=Outcome.DENIED,
        target_type="monitoring.iprule" if entry != ipfilter.ADMIN_ENTRY else "",
        target_id=entry if entry != ipfilter.ADMIN_ENTRY else "",
        details={
            "list": kind,
            "network": network,
            "requests": int(count),
            "first_ip": first_ip or "",
            "window_start": datetime.fromtimestamp(
                window * seconds, tz=UTC
            ).isoformat(),
            "window_seconds": seconds,
        },
    )
    return 1
