"""The daily run of the control checks; the schedule is in
``kreo.celery.DEFAULT_SCHEDULE``, the admin's "Run checks now" queues it too."""

from celery import shared_task
from django.contrib.auth import get_user_model

from compliance import runs
from compliance.models import CheckRun


@shared_task(name="compliance.tasks.checks_run", acks_late=True)
def checks_run(
    *,
    trigger: str = CheckRun.Trigger.SCHEDULE,
    actor_id: int | None = None,
    only: list[str] | None = None,
) -> int:
    """Run the checks and store the results; return the run's id.

    Delivered twice (a worker lost mid-run), it makes a second run: harmless,
    a regression already alerted is a fail after a fail the second time.
    """
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return runs.checks_run_recorded(trigger=trigger, actor=actor, only=only).pk
