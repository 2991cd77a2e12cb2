"""Probes and metrics: liveness, readiness, OpenMetrics."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from monitoring import access, health, metrics

UNAUTHENTICATED = "Monitoring needs a bearer token (MONITORING_TOKEN)."
FORBIDDEN = "That monitoring token is not valid."


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: the process answers. No database, no
    cache, no detail, no authentication (a database outage must not get
    every pod restarted: that is what /readyz says)."""
    return HttpResponse("ok", content_type="text/plain")


def _spool() -> dict:
    from audit.spool import spool_status

    spooled = spool_status()
    state = (
        "full"
        if spooled["full"]
        else ("pending" if spooled["pending_bytes"] else "empty")
    )
    return {
        "state": state,
        "pending_bytes": spooled["pending_bytes"],
        "max_bytes": spooled["max_bytes"],
        "refused_events": spooled["refused"],
    }


@require_safe
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 503 while the database, the cache or file storage is out,
    or audit events are being lost (a full spool, until the next drain has
    recorded the loss on the trail).

    Anyone sees each check's state, with no detail and no personal data;
    staff, a bearer token or an allowed network also get the error texts,
    timings and the system checks (worker, beat, backups, sealing, anchors),
    which never change the status code.
    """
    results = health.run_checks(health.READINESS)
    checks: dict = {r.name: "ok" if r.ok else "unavailable" for r in results}
    checks["audit_spool"] = _spool()
    ready = all(r.ok for r in results) and checks["audit_spool"]["state"] != "full"
    body: dict = {"status": "ok" if ready else "unavailable", "checks": checks}
    if access.detail_allowed(request):
        detail = results + health.run_checks(health.SYSTEM)
        body["detail"] = {
            r.name: {
                "ok": r.ok,
                "error": r.error,
                "seconds": round(r.seconds, 4),
            }
            for r in detail
        }
    return JsonResponse(body, status=200 if ready else 503)


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """OpenMetrics / Prometheus text for a token holder or an allowed network."""
    verdict = access.access(request)
    if verdict == access.UNAUTHENTICATED:
        response = HttpResponse(UNAUTHENTICATED, status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if verdict == access.FORBIDDEN:
        return HttpResponse(FORBIDDEN, status=403, content_type="text/plain")
    body, content_type = metrics.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
