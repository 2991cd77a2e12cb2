"""Prometheus / OpenMetrics figures of the running system.

Request figures (latency by view, responses by status, 429s, sign-ins by
outcome) are counted in each process as requests happen. Under gunicorn's
several workers they go to ``PROMETHEUS_MULTIPROC_DIR`` (set by
deploy/gunicorn/gunicorn.conf.py), where a scrape answered by any worker
reads them all. The system's figures (backup age, last drill, seal lag,
Celery queue lengths, alerts by rule and state) are read from the database
and the broker when scraped, so they are the same whichever worker answers.
"""

from __future__ import annotations

import functools
import logging
import os

from django.conf import settings
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from audit import health as audit_health
from backups import selectors as backup_selectors

logger = logging.getLogger(__name__)

# Not in prometheus_client's global registry: each scrape builds its own
# (one process's values, or every worker's files in multiprocess mode).
REQUEST_LATENCY = Histogram(
    "kreo_http_request_duration_seconds",
    "Time from the request reaching the application to its response, by view.",
    ["view"],
    registry=None,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RESPONSES = Counter(
    "kreo_http_responses", "Responses by HTTP status code.", ["status"], registry=None
)
THROTTLED = Counter(
    "kreo_http_throttled",
    "Requests refused by a request limit (429), by view.",
    ["view"],
    registry=None,
)
SIGN_INS = Counter(
    "kreo_sign_ins", "Sign-in attempts by outcome.", ["outcome"], registry=None
)
IP_BLOCKED = Counter(
    "kreo_ip_blocked",
    "Requests refused by the IP deny list or the /admin/ allow list.",
    ["list"],
    registry=None,
)
REQUEST_METRICS = (REQUEST_LATENCY, RESPONSES, THROTTLED, SIGN_INS, IP_BLOCKED)


# One labelled child per view or status, kept: ``labels()`` validates, locks
# and builds a key on every call, and the middleware asks on every request.
# URL names and status codes are few; the bound only caps a surprise.
@functools.lru_cache(maxsize=1024)
def request_latency(view: str):
    return REQUEST_LATENCY.labels(view=view)


@functools.lru_cache(maxsize=256)
def responses(status: int):
    return RESPONSES.labels(status=str(status))


@functools.lru_cache(maxsize=1024)
def throttled(view: str):
    return THROTTLED.labels(view=view)


def on_logged_in(sender, **kwargs) -> None:
    SIGN_INS.labels(outcome="success").inc()


def on_login_failed(sender, **kwargs) -> None:
    SIGN_INS.labels(outcome="failure").inc()


def _seconds_since(moment) -> float:
    return max(0.0, (timezone.now() - moment).total_seconds())


def celery_queues() -> list[str]:
    """The default queue and every queue a route sends tasks to."""
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            queues.add(route["queue"])
    return sorted(queues)


class SystemCollector:
    """Figures read when scraped; a source that fails leaves its figure out
    (and logs why) rather than failing the whole scrape."""

    def collect(self):
        for part in (self._backups, self._audit, self._alerts, self._celery):
            try:
                yield from part()
            except Exception:
                logger.warning("metrics: %s unavailable", part.__name__, exc_info=True)

    def _backups(self):
        latest = backup_selectors.backup_set_latest(good_only=True)
        if latest is not None:
            yield GaugeMetricFamily(
                "kreo_backup_age_seconds",
                "Age of the newest good backup set.",
                value=_seconds_since(latest.created_at),
            )
        drill = backup_selectors.restore_drill_latest()
        if drill is not None and drill.ok is not None:
            yield GaugeMetricFamily(
                "kreo_backup_drill_last_ok",
                "1 when the last restore drill passed, 0 when it failed.",
                value=int(drill.ok),
            )
            yield GaugeMetricFamily(
                "kreo_backup_drill_last_timestamp_seconds",
                "When the last restore drill started (Unix time).",
                value=drill.started_at.timestamp(),
            )

    def _audit(self):
        yield GaugeMetricFamily(
            "kreo_audit_seal_lag_seconds",
            "Age of the oldest audit event not yet sealed (0 when all are).",
            value=audit_health.seal_lag_seconds(),
        )

    def _alerts(self):
        from monitoring import selectors

        family = GaugeMetricFamily(
            "kreo_alerts", "Alerts by rule and state.", labels=["rule", "state"]
        )
        for rule, state, count in selectors.alert_counts():
            family.add_metric([rule, state], count)
        yield family

    def _celery(self):
        from kreo.celery import app

        family = GaugeMetricFamily(
            "kreo_celery_queue_length", "Tasks waiting in a queue.", labels=["queue"]
        )
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.default_channel
            for queue in celery_queues():
                family.add_metric([queue], channel._size(queue))
        yield family


def registry() -> CollectorRegistry:
    """A registry for one scrape: request figures plus the system's."""
    scrape = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(scrape)
    else:
        for metric in REQUEST_METRICS:
            scrape.register(metric)
    scrape.register(SystemCollector())
    return scrape


def exposition(accept: str) -> tuple[bytes, str]:
    """The scrape body and its content type, as the scraper asked (OpenMetrics
    for ``application/openmetrics-text``, else Prometheus text)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry()), content_type
