"""Monitoring jobs: the rules every few seconds (beat), alert notifications."""

import logging

from celery import shared_task
from django.conf import settings

from monitoring import notify, selectors, services

logger = logging.getLogger(__name__)


@shared_task(name="monitoring.tasks.rules_run", ignore_result=True)
def rules_run() -> dict:
    """Run the detection rules over the audit events since the last run."""
    return services.rules_run()


@shared_task(
    name="monitoring.tasks.alert_notify",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def alert_notify(*, alert_id: int) -> int:
    """Mail a new alert to the staff (the webhook is a task of its own, so a
    retried mail does not post twice)."""
    alert = selectors.alert_get(alert_id=alert_id)
    if alert is None:
        return 0
    return notify.alert_mail(alert)


@shared_task(name="monitoring.tasks.webhook_send", bind=True, max_retries=None)
def webhook_send(self, *, alert_id: int) -> int:
    """POST the alert to the webhook; on failure retry with a doubling wait,
    and after ``MONITORING_WEBHOOK_RETRIES`` retries give up, audited."""
    alert = selectors.alert_get(alert_id=alert_id)
    if alert is None or not settings.MONITORING_WEBHOOK_URL:
        return 0
    try:
        return notify.webhook_post(alert)
    except notify.WebhookError as exc:
        attempts = self.request.retries + 1
        if self.request.retries >= settings.MONITORING_WEBHOOK_RETRIES:
            logger.error("alert webhook gave up on alert %s: %s", alert_id, exc)
            services.webhook_failed_record(
                alert_id=alert_id, attempts=attempts, error=str(exc)
            )
            return 0
        wait = settings.MONITORING_WEBHOOK_BACKOFF_SECONDS * 2**self.request.retries
        raise self.retry(exc=exc, countdown=wait) from exc


@shared_task(name="monitoring.tasks.ip_block_summary", ignore_result=True)
def ip_block_summary() -> int:
    """Audit the requests the IP filter refused, one event per entry and window."""
    return services.ip_block_summary()
