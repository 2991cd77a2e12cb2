"""Per-request figures and one structured log line per request."""

from __future__ import annotations

import logging
import time

from audit.context import get_correlation_id
from monitoring import ipfilter, metrics

# JSON lines on stdout in production (LOGGING in kreo/settings): a log shipper
# reads them; silent below INFO elsewhere.
logger = logging.getLogger("kreo.request")
UNRESOLVED = "<unresolved>"


class RequestMetricsMiddleware:
    """Time each request, count its status, and log it as one line.

    Sits just inside ``audit.middleware.AuditMiddleware``, so the line carries
    the request's correlation id (the ``X-Correlation-ID`` support is given).
    The user id is logged only when something in the request already loaded
    the user: logging never costs a session or user query.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        duration = time.perf_counter() - start
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else UNRESOLVED
        status = response.status_code
        metrics.request_latency(view).observe(duration)
        metrics.responses(status).inc()
        if status == 429:
            metrics.throttled(view).inc()
        if logger.isEnabledFor(logging.INFO):
            user = getattr(request, "_cached_user", None)
            logger.info(
                "%s %s %s",
                request.method,
                request.path,
                status,
                extra={
                    "correlation_id": get_correlation_id(),
                    "user_id": getattr(user, "pk", None),
                    "view": view,
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                },
            )
        return response


class IPFilterMiddleware:
    """Refuse requests from the IP deny list, and ``/admin/`` requests from
    outside its allow list, before anything reads the session or the database.

    Sits outside ``audit.middleware.AuditMiddleware``: a refused request is
    counted and summarised (``monitoring.ipfilter``), not written one row at
    a time, so a flood from a blocked network costs no database writes.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refused = ipfilter.refusal(request)
        if refused is not None:
            return refused
        return self.get_response(request)
