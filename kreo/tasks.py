from celery import shared_task

from kreo.services import heartbeat_record


@shared_task(name="kreo.tasks.heartbeat")
def heartbeat() -> None:
    """Prove that the scheduler and a worker are running."""
    heartbeat_record(component="scheduler")
