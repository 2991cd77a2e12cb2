"""Privacy jobs; the schedule is in kreo.celery.DEFAULT_SCHEDULE."""

from celery import shared_task

from privacy import services


@shared_task(
    name="privacy.tasks.export_build", acks_late=True, reject_on_worker_lost=True
)
def export_build(export_id: str) -> str:
    return services.export_build(export_id=export_id).state


@shared_task(name="privacy.tasks.purge", acks_late=True, reject_on_worker_lost=True)
def purge() -> dict:
    return services.purge_run()
