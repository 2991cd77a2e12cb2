"""The compliance cockpit in the admin: controls with their status, mapping
and last evidence, a drill-down per control, the charts, "Run checks now".

Wired into the admin by ``compliance.admin`` (so the admin's own guards come
first: a staff account with a verified second factor); these views then
admit only the Admin and Auditor groups.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from audit.services import audit_record
from compliance import charts, runs, selectors, series, tasks
from compliance.catalogue import control_get, controls
from compliance.models import CheckRun, CheckStatus
from kreo.permissions import GlobalRole, has_global_role

NOT_ALLOWED = "The compliance cockpit is for staff in the Admin or Auditor group."
QUEUED = (
    "Checks queued as task {task_id}: the cockpit shows their results once "
    "the worker has run them."
)
CHART_DAYS = 90
HISTORY_DAYS = 90
NOT_RUN = "not_run"
NOT_RUN_LABEL = "Not run yet"


def cockpit_allowed(user) -> bool:
    """Staff of the Admin or Auditor group (and superusers)."""
    return bool(
        getattr(user, "is_authenticated", False)
        and user.is_active
        and user.is_staff
        and (
            has_global_role(user, GlobalRole.ADMIN)
            or has_global_role(user, GlobalRole.AUDITOR)
        )
    )


def _guard(request: HttpRequest) -> None:
    if not cockpit_allowed(request.user):
        raise PermissionDenied(NOT_ALLOWED)


def _pretty(evidence) -> str:
    return json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False)


def _short(evidence, limit: int = 160) -> str:
    text = json.dumps(evidence, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _markup(svg: str) -> str:
    """A chart's markup for the template: charts.py writes every element and
    escapes every text it puts in, so it goes in as it is."""
    # The docstring says why the markup is safe.
    return mark_safe(svg)  # noqa: S308  # nosec B308, B703


def _context(request: HttpRequest, admin_site, title: str) -> dict:
    return {
        **admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": CheckRun._meta,
        "app_label": "compliance",
    }


def cockpit(request: HttpRequest, admin_site) -> HttpResponse:
    _guard(request)
    latest = selectors.results_latest()
    rows = []
    counts: dict[tuple[str, str], int] = {}
    for item in controls():
        result = latest.get(item.id)
        status = result.status if result else NOT_RUN
        label = CheckStatus(status).label if result else NOT_RUN_LABEL
        counts[(status, label)] = counts.get((status, label), 0) + 1
        rows.append(
            {
                "control": item,
                "status": status,
                "status_label": label,
                "result": result,
                "evidence_short": _short(result.evidence) if result else "",
                "evidence_pretty": _pretty(result.evidence) if result else "",
            }
        )
    end = timezone.localdate()
    start = end - timedelta(days=CHART_DAYS - 1)
    data = series.daily(start=start, end=end)
    figures = [
        {
            "title": chart.title,
            "svg": _markup(charts.svg(chart)),
            "key": chart.key,
            "columns": [label for _key, label, _data in chart.lines],
            "table": charts.table(chart),
        }
        for chart in charts.charts_from(data)
    ]
    context = {
        **_context(request, admin_site, "Compliance cockpit"),
        "rows": rows,
        "counts": [(s, label, n) for (s, label), n in sorted(counts.items())],
        "chart_days": CHART_DAYS,
        "run": selectors.run_latest(),
        "figures": figures,
        "start": start,
        "end": end,
    }
    return TemplateResponse(request, "compliance/cockpit.html", context)


def control_detail(request: HttpRequest, admin_site, control_id: str) -> HttpResponse:
    _guard(request)
    try:
        item = control_get(control_id)
    except KeyError:
        raise Http404("No such control.") from None
    since = timezone.now() - timedelta(days=HISTORY_DAYS)
    history = list(
        selectors.result_history(control_id=control_id, since=since)
        .select_related("run")
        .order_by("-checked_at", "-id")
    )
    context = {
        **_context(request, admin_site, f"Control {item.id}"),
        "control": item,
        "latest": history[0] if history else None,
        "latest_pretty": _pretty(history[0].evidence) if history else "",
        "history": [(row, _pretty(row.evidence)) for row in history],
        "history_days": HISTORY_DAYS,
    }
    return TemplateResponse(request, "compliance/control.html", context)


@require_POST
def run_now(request: HttpRequest, admin_site) -> HttpResponse:
    """Queue a run of every check for the signed-in staff member, audited."""
    _guard(request)
    actor_id = request.user.pk
    task_id = str(uuid.uuid4())
    audit_record(
        event_type=runs.RUN_REQUEST_EVENT,
        request=request,
        details={"task_id": task_id},
    )
    transaction.on_commit(
        lambda: tasks.checks_run.apply_async(
            kwargs={"trigger": CheckRun.Trigger.ADMIN, "actor_id": actor_id},
            task_id=task_id,
        )
    )
    messages.success(request, QUEUED.format(task_id=task_id))
    return HttpResponseRedirect(reverse("admin:compliance_cockpit"))
