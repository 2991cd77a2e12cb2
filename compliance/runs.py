"""A run of the checks as the schedule and the admin start it: the results
stored, a control that went from pass to fail raised as an alert, the run
audited.

Compliance is an app on top and writes only through ``kreo`` and ``audit``,
with one exception the issue asks for (#19: "a change from pass to fail
raises an alert through the monitoring app"): a regression is raised with
``monitoring.services.alert_raise``, so it is mailed (and posted to the
webhook), acknowledged and resolved like every other alert, with no second
alerting path to drift from the first. ``kreo/tests/test_layers.py`` lists
this import as the one allowed write between apps on top.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from django.db import transaction

from audit.services import audit_record
from compliance import services
from compliance.catalogue import control_get
from compliance.models import CheckRun, CheckStatus, ControlResult
from monitoring import rules as monitoring_rules
from monitoring import services as monitoring_services

RUN_EVENT = "compliance.run"
RUN_REQUEST_EVENT = "compliance.run.request"
REGRESSION_RULE = "compliance.control_failed"
SYSTEM_LABEL = "compliance"


def _previous(result: ControlResult) -> ControlResult | None:
    """The control's result before ``result``'s run."""
    return (
        ControlResult.objects.filter(control_id=result.control_id)
        .exclude(run_id=result.run_id)
        .filter(checked_at__lte=result.checked_at, run_id__lt=result.run_id)
        .order_by("-checked_at", "-id")
        .first()
    )


def regressions(*, run: CheckRun) -> list[ControlResult]:
    """The results of ``run`` that fail where the control passed the run before."""
    found = []
    for result in run.results.filter(status=CheckStatus.FAIL).order_by("control_id"):
        before = _previous(result)
        if before is not None and before.status == CheckStatus.PASS:
            found.append(result)
    return found


def _hit(result: ControlResult) -> monitoring_rules.Hit:
    try:
        item = control_get(result.control_id)
        title, iso, soc2 = item.title, list(item.iso27001), list(item.soc2)
    except KeyError:  # a control removed from the catalogue since
        title, iso, soc2 = result.control_id, [], []
    return monitoring_rules.Hit(
        rule=REGRESSION_RULE,
        severity="high",
        subject_kind="system",
        subject=result.control_id,
        summary=f"Control {result.control_id} now fails: {result.summary}"[:512],
        first_seen=result.checked_at,
        last_seen=result.checked_at,
        details={
            "control": result.control_id,
            "title": title,
            "iso27001": iso,
            "soc2": soc2,
            "run": result.run_id,
            "result": result.pk,
        },
    )


def checks_run_recorded(
    *,
    trigger: str,
    actor=None,
    only: list[str] | None = None,
    now: datetime | None = None,
) -> CheckRun:
    """Run the checks, raise an alert for each control that went from pass to
    fail, and audit the run with its counts."""
    run = services.checks_run(trigger=trigger, actor=actor, now=now, only=only)
    alerts = []
    with transaction.atomic():
        for result in regressions(run=run):
            alert, _created = monitoring_services.alert_raise(hit=_hit(result))
            alerts.append(alert.pk)
        counts = Counter(run.results.values_list("status", flat=True))
        audit_record(
            event_type=RUN_EVENT,
            actor=actor,
            actor_label="" if actor else SYSTEM_LABEL,
            target=run,
            details={
                "trigger": trigger,
                "statuses": dict(sorted(counts.items())),
                "regressions": alerts,
            },
        )
    return run
