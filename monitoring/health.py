"""Health checks (django-health-check's ``HealthCheck`` classes) and the
runner behind ``/readyz``.

Readiness (may this process take traffic?) is the database, the cache and
file storage, plus the audit spool's state (``audit.spool``). The other
checks say whether the system around the process is healthy: a Celery worker
answering a ping, beat's heartbeat, the age of the newest good backup and
drill, how far audit sealing lags and whether the newest seals are anchored
outside the database. They are shown to staff and to monitoring (token or
allowed network), never to anonymous callers.

Checks run one after another in the request's thread, each within its own
short client timeout: the database sessions and the test database are the
request's own (django-health-check's view would run them in a thread pool).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import inspect
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.utils import timezone
from health_check import checks as hc
from health_check.base import HealthCheck
from health_check.contrib.celery import Ping
from health_check.exceptions import (
    HealthCheckException,
    ServiceUnavailable,
    ServiceWarning,
)
from redis.exceptions import RedisError

from audit import health as audit_health
from backups import selectors as backup_selectors
from kreo.cache import CacheUnavailable

logger = logging.getLogger(__name__)

HEARTBEAT_COMPONENT = "scheduler"
NO_HEARTBEAT = "no heartbeat from beat yet"
STALE_HEARTBEAT = "beat's last heartbeat is {age:.0f} s old (limit {limit} s)"
NO_BACKUP = "no good backup set yet"
OLD_BACKUP = "the newest good backup is {hours:.1f} h old (limit {limit} h)"
DRILL_FAILED = "the last restore drill failed"
SEAL_LAG = "the oldest unsealed audit event is {age:.0f} s old (limit {limit} s)"
ANCHOR_BEHIND = "seal {seal} is not anchored outside the database (anchor has {top})"
ANCHOR_OLD = "the newest anchor is {age:.0f} s old (limit {limit} s)"


@dataclasses.dataclass
class Cache(hc.Cache):
    """Set, read back and delete a key of its own (synchronously: the cache
    clients are this thread's); ``kreo.cache``'s outage error counts as down."""

    def run(self):  # type: ignore[override]
        cache = caches[self.alias]
        key = f"{self.key_prefix}:{uuid.uuid4().hex}"
        try:
            cache.set(key, "ok", timeout=self.timeout.total_seconds())
            if cache.get(key) != "ok":
                raise ServiceUnavailable("cache did not return the value set")
            cache.delete(key)
        except (CacheUnavailable, ConnectionError, RedisError) as exc:
            raise ServiceUnavailable("cache unreachable") from exc


@dataclasses.dataclass
class Storage(hc.Storage):
    """File storage answers a read (the S3 bucket's HEAD, a folder lookup).

    Read-only on purpose: project files live in a versioned, encrypted bucket
    where a probe's write-then-delete every few seconds would pile up
    versions; a HEAD proves the endpoint, the bucket and the credentials.
    """

    def probe(self) -> None:
        storage = self.storage
        bucket = getattr(storage, "bucket_name", None)
        if bucket:
            # A missing bucket would answer "no such file" to exists().
            storage.connection.meta.client.head_bucket(Bucket=bucket)
        else:
            storage.exists("kreo-health-probe")

    def run(self):
        # In a thread of its own, given up after ``timeout``: an unreachable
        # endpoint would otherwise hold the probe through boto's retries.
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            pool.submit(self.probe).result(timeout=self.timeout.total_seconds())
        except FutureTimeout as exc:
            raise ServiceUnavailable("storage did not answer in time") from exc
        except Exception as exc:
            raise ServiceUnavailable(f"storage: {type(exc).__name__}") from exc
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


@dataclasses.dataclass
class BeatHeartbeat(HealthCheck):
    """Beat's heartbeat task (``kreo.tasks.heartbeat``) ran recently."""

    def run(self):
        from kreo.models import Heartbeat

        limit = 3 * settings.KREO_HEARTBEAT_SECONDS
        beat = Heartbeat.objects.filter(component=HEARTBEAT_COMPONENT).first()
        if beat is None:
            raise ServiceUnavailable(NO_HEARTBEAT)
        age = (timezone.now() - beat.beat_at).total_seconds()
        if age > limit:
            raise ServiceUnavailable(STALE_HEARTBEAT.format(age=age, limit=limit))


@dataclasses.dataclass
class BackupAge(HealthCheck):
    """The newest good backup set is recent and the last drill passed."""

    def run(self):
        limit = settings.BACKUP_MAX_AGE_HOURS
        latest = backup_selectors.backup_set_latest(good_only=True)
        if latest is None:
            raise ServiceUnavailable(NO_BACKUP)
        hours = (timezone.now() - latest.created_at).total_seconds() / 3600
        if hours > limit:
            raise ServiceUnavailable(OLD_BACKUP.format(hours=hours, limit=limit))
        drill = backup_selectors.restore_drill_latest()
        if drill is not None and drill.ok is False:
            raise ServiceWarning(DRILL_FAILED)


@dataclasses.dataclass
class SealLag(HealthCheck):
    """Audit events are folded into signed seals without falling behind."""

    def run(self):
        limit = settings.AUDIT_SEAL_DELAY_SECONDS + 3 * (
            settings.AUDIT_SEAL_INTERVAL_SECONDS
        )
        age = audit_health.seal_lag_seconds()
        if age > limit:
            raise ServiceUnavailable(SEAL_LAG.format(age=age, limit=limit))


@dataclasses.dataclass
class AuditAnchors(HealthCheck):
    """The newest seal is anchored outside the database, and recently."""

    def run(self):
        limit = 3 * settings.AUDIT_ANCHOR_SECONDS
        status = audit_health.anchor_status()
        if status.newest_seal is None:
            return  # nothing sealed yet, nothing to anchor
        if status.age_seconds is not None and status.age_seconds > limit:
            raise ServiceUnavailable(
                ANCHOR_OLD.format(age=status.age_seconds, limit=limit)
            )
        # Seals made since the last anchoring run are anchored by the next.
        if status.behind and (
            status.age_seconds is None
            or status.age_seconds > settings.AUDIT_ANCHOR_SECONDS
        ):
            raise ServiceUnavailable(
                ANCHOR_BEHIND.format(seal=status.newest_seal, top=status.anchored_seal)
            )


def _celery_ping() -> Ping:
    from kreo.celery import app

    # No limit: every worker gets the second to answer, so that a queue served
    # by another worker (backups) is not reported as served by none.
    return Ping(app=app, timeout=datetime.timedelta(seconds=1))


# name -> factory; the readiness ones decide /readyz's status.
READINESS = {
    "database": hc.Database,
    "cache": Cache,
    "storage": Storage,
}
SYSTEM = {
    "celery_worker": _celery_ping,
    "beat_heartbeat": BeatHeartbeat,
    "backup_age": BackupAge,
    "seal_lag": SealLag,
    "audit_anchors": AuditAnchors,
}


@dataclass
class Result:
    name: str
    error: str
    seconds: float
    warning: bool = False

    @property
    def ok(self) -> bool:
        return not self.error or self.warning


def run_check(name: str, check: HealthCheck) -> Result:
    """Run one check here and now; an unexpected exception is a failure
    named by its type only (its text may hold a URL with a password)."""
    start = time.perf_counter()
    error, warning = "", False
    try:
        if inspect.iscoroutinefunction(check.run):
            asyncio.run(check.run())
        else:
            check.run()
    except HealthCheckException as exc:
        error, warning = str(exc), isinstance(exc, ServiceWarning)
    except Exception as exc:
        logger.warning("health check %s failed", name, exc_info=True)
        error = f"Unavailable: {type(exc).__name__}"
    return Result(name, error, time.perf_counter() - start, warning)


def run_checks(names: dict) -> list[Result]:
    return [run_check(name, factory()) for name, factory in names.items()]
