"""Status jobs: probes every minute, notifications, the static copy."""

from celery import shared_task

from status import services


@shared_task(name="status.tasks.probe", ignore_result=True)
def probe() -> int:
    """Probe every component and record the samples (beat, every minute)."""
    return services.probe_all()


@shared_task(
    name="status.tasks.notify",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def notify(*, update_id: int) -> int:
    """Tell the subscribers of an incident update; each one hears it once."""
    from status import subscriptions

    return subscriptions.update_notify(update_id=update_id)


@shared_task(name="status.tasks.publish", ignore_result=True)
def publish() -> int:
    """Render the page, its JSON and feeds to the static copy (folder, bucket)."""
    from status import publish as static_copy

    return static_copy.publish_all()


@shared_task(
    name="status.tasks.confirmation_send",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def confirmation_send(*, subscriber_id: int) -> bool:
    """Mail the double opt-in link (or, if confirmed, the way out)."""
    from status import subscriptions

    return subscriptions.confirmation_mail(subscriber_id=subscriber_id)
