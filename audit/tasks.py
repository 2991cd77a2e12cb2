"""Scheduled jobs of the audit trail (see kreo.celery.DEFAULT_SCHEDULE)."""

import logging

from celery import shared_task
from django.conf import settings

from audit import anchors, services, watch

logger = logging.getLogger(__name__)


@shared_task(name="audit.tasks.seal", acks_late=True, reject_on_worker_lost=True)
def seal() -> int:
    """Fold recorded events into signed seals, then anchor them outside the
    database (a failed anchor only logs: the anchor entry retries)."""
    sealed = services.audit_seal()
    _anchor()
    return sealed


@shared_task(name="audit.tasks.anchor", acks_late=True, reject_on_worker_lost=True)
def anchor() -> int | None:
    """Anchor the newest seal when none was for ``AUDIT_ANCHOR_SECONDS``."""
    return _anchor()


def _anchor() -> int | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return anchors.anchor_write()
    except (anchors.AnchorError, OSError, BotoCoreError, ClientError) as exc:
        logger.error("audit anchor not written: %s", exc)
        return None


@shared_task(name="audit.tasks.verify_hot")
def verify_hot() -> bool:
    """Check the hot store, the seals and the anchors; alert on failure."""
    return watch.verification_run(
        archives=False, actor_label="celery audit.tasks.verify_hot", alert=True
    ).ok


@shared_task(name="audit.tasks.verify_full")
def verify_full() -> bool:
    """Check archives, hot store, seals and anchors; alert on failure."""
    return watch.verification_run(
        archives=True, actor_label="celery audit.tasks.verify_full", alert=True
    ).ok


@shared_task(name="audit.tasks.archive", acks_late=True, reject_on_worker_lost=True)
def archive() -> dict | None:
    """Archive events past retention; an unconfigured bucket only warns."""
    if not settings.AUDIT_ARCHIVE_S3_BUCKET:
        logger.warning("audit archive skipped: AUDIT_ARCHIVE_S3_BUCKET is not set")
        return None
    return services.audit_archive_run(actor_label="celery audit.tasks.archive")


@shared_task(name="audit.tasks.review")
def review() -> int | None:
    """Open the log review of the period that ended, if one is due."""
    opened = services.review_create()
    return opened.pk if opened else None


@shared_task(name="audit.tasks.spool_drain", acks_late=True, reject_on_worker_lost=True)
def spool_drain() -> int:
    """Write events spooled during a database outage to the trail.

    While the database is still out this only warns; the next run retries.
    """
    from django.db import InterfaceError, OperationalError

    from audit import spool

    try:
        return spool.spool_drain()
    except (OperationalError, InterfaceError) as exc:
        logger.warning("audit spool not drained: database unavailable (%s)", exc)
        return 0
