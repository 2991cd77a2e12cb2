"""A backup whose worker is killed is found, failed, cleaned and taken again.

The worker is a real ``celery worker`` process on the test database and the
run's broker; it is killed with SIGKILL (with the ``pg_dump`` it started)
half-way through writing copies 1 and 2. A new worker then runs the minute
sweep (``backups.tasks.backup_sweep``, queued here every second as beat
would) with a short stale window, and takes the retry. Figures (time to
detect, time to a good set) are logged as a warning: see them with
``-o log_cli=true``.
"""

import logging
import os
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from backups import offsite as offsite_store
from backups import services
from backups.models import BackupCopy, BackupSet, CopyState, SetState
from backups.tasks import backup_manual, backup_sweep
from kreo.testing.worker import WorkerProcess
from projects.models import Project
from projects.tests.factories import stored_file

logger = logging.getLogger(__name__)

STALE = 5  # KREO_TASK_STALE_SECONDS for the test workers


def _no_good_set_lacks_a_copy() -> None:
    """What an auditor checks: every good set has its three copies written and
    its local folders present."""
    for item in BackupSet.objects.filter(state=SetState.GOOD):
        states = [c.state for c in item.copies.order_by("number")]
        assert states == [CopyState.DONE] * 3, (item.pk, states)
        for n in (1, 2):
            assert (services.set_folder(n, item.pk) / "manifest.json").exists()


def _wait(what, timeout: float, every: float = 0.2, check=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check:
            check()
        value = what()
        if value:
            return value
        time.sleep(every)
    return None


@pytest.mark.celery
def test_backup_worker_killed_mid_run_is_failed_cleaned_and_retried(
    seeded, offsite, settings, tmp_path
):
    """SIGKILL to the worker while it writes copies 1 and 2: within the stale
    window (plus one sweep) the set is failed with "the worker running it
    stopped", its partial folders are gone, the failure is in the audit trail,
    and the queued retry produces a good set with all three copies, which
    verifies. At no moment is a set good with a copy missing."""
    stored_file(Project.objects.first(), name="big.pdf", content=os.urandom(24 * 2**20))
    slow = WorkerProcess(
        tmp_path / "worker-1.log",
        KREO_TEST_STREAM_DELAY="0.05",
        KREO_TASK_HEARTBEAT_SECONDS="1",
        KREO_TASK_STALE_SECONDS=str(STALE),
    )
    try:
        backup_manual.delay(actor_id=seeded["owner"].pk)
        partial = _wait(
            lambda: list(settings.BACKUP_COPY1_DIR.glob("*.partial")),
            120,
            0.05,
            check=lambda: (
                slow.alive() or pytest.fail(f"worker 1 ended:\n{slow.output()}")
            ),
        )
        assert partial, f"the backup did not start:\n{slow.output()}"
        time.sleep(1.5)  # a heartbeat or two
        killed = BackupSet.objects.get()
        assert killed.state == SetState.RUNNING and slow.alive()
        assert killed.heartbeat_at > killed.created_at, "no heartbeat while running"
        slow.kill()
    finally:
        slow.kill()
    killed_at = time.monotonic()

    # Nothing else happens by itself to the killed set before the sweep.
    killed.refresh_from_db()
    assert killed.state == SetState.RUNNING
    assert list(settings.BACKUP_COPY1_DIR.glob("*.partial"))

    # On Redis the killed task's message is unacknowledged (acks_late): with a
    # short visibility timeout the new worker gets it again, and must not take
    # a second set for it.
    fresh = WorkerProcess(
        tmp_path / "worker-2.log",
        KREO_TASK_HEARTBEAT_SECONDS="1",
        KREO_TASK_STALE_SECONDS=str(STALE),
        KREO_TASK_VISIBILITY_SECONDS="5",
    )
    try:

        def detected():
            backup_sweep.delay()  # beat's "backup stale sweep", every second
            killed.refresh_from_db()
            return killed.state == SetState.FAILED

        assert _wait(detected, STALE + 60, 1.0, check=_no_good_set_lacks_a_copy), (
            fresh.output()
        )
        detect_seconds = time.monotonic() - killed_at
        good = _wait(
            lambda: BackupSet.objects.filter(
                pk__gt=killed.pk, state=SetState.GOOD
            ).first(),
            240,
            0.5,
            check=_no_good_set_lacks_a_copy,
        )
        good_seconds = time.monotonic() - killed_at
        assert good, (
            list(BackupSet.objects.values("pk", "state", "error")),
            fresh.output(),
        )
        if settings.REDIS_URL:
            # kombu restores unacked messages past their visibility from a
            # worker's poll loop, at most every 10 s; a loaded CI machine
            # took longer than 40 s once.
            assert _wait(
                lambda: "delivered again" in fresh.output(),
                150,
                0.5,
                check=_no_good_set_lacks_a_copy,
            ), fresh.output()
    finally:
        fresh.stop()

    assert "the worker running it stopped" in killed.error
    assert [c.state for c in killed.copies.order_by("number")] == [CopyState.FAILED] * 3
    for n in (1, 2):
        folder = services.set_folder(n, killed.pk)
        assert not folder.exists()
        assert not folder.with_name(folder.name + ".partial").exists()
    assert not list(settings.BACKUP_COPY1_DIR.glob("*.partial"))
    assert not list(settings.BACKUP_COPY2_DIR.glob("*.partial"))
    assert offsite_objects(killed.pk) == []
    event = AuditEvent.objects.get(
        event_type="backup.create", target_id=str(killed.pk), outcome="failure"
    )
    assert event.error_code == "worker_lost"
    assert "the worker running it stopped" in event.error_description

    # One retry, not two: the set after the killed one is the good one.
    assert list(
        BackupSet.objects.filter(pk__gt=killed.pk).values_list("pk", flat=True)
    ) == [good.pk]
    assert good.actor == seeded["owner"]
    assert [c.state for c in good.copies.order_by("number")] == [CopyState.DONE] * 3
    assert all(r["ok"] for r in services.backup_verify(backup_set=good))
    _no_good_set_lacks_a_copy()
    logger.warning(
        "worker killed mid-backup: detected failed after %.1f s (stale window "
        "%d s), good set %s after %.1f s",
        detect_seconds,
        STALE,
        good.pk,
        good_seconds,
    )


def offsite_objects(set_id: int) -> list[str]:
    return sorted(offsite_store.written_versions(offsite_store.prefix_for(set_id)))


def test_sweep_leaves_a_live_backup_alone(seeded, settings):
    """A running set with a stale heartbeat is not failed while its writer
    still holds the backup lock (a slow or briefly disconnected worker)."""
    settings.KREO_TASK_STALE_SECONDS = 1
    old = timezone.now() - timedelta(minutes=5)
    running = BackupSet.objects.create(created_at=old, heartbeat_at=old)
    with services.common._exclusive():
        assert services.backup_sweep_stale() == []
    running.refresh_from_db()
    assert running.state == SetState.RUNNING
    assert services.backup_sweep_stale() == [running.pk]
    running.refresh_from_db()
    assert running.state == SetState.FAILED


def test_sweep_removes_a_dead_sets_files_and_reports_locked_offsite_objects(
    seeded, offsite, settings, s3_client
):
    """A dead set's partial copy 1 and written copy 2 folders are removed;
    of its copy-3 objects those without retention are deleted, those under
    Object Lock cannot be, so copy 3 is marked locked with its date and the
    audit event says so; the set is failed, never good."""
    settings.KREO_TASK_STALE_SECONDS = 1
    old = timezone.now() - timedelta(minutes=5)
    dead = BackupSet.objects.create(created_at=old, heartbeat_at=old)
    for n in (1, 2, 3):
        BackupCopy.objects.create(backup_set=dead, number=n)
    half = services.set_folder(1, dead.pk)
    half = half.with_name(half.name + ".partial")
    whole = services.set_folder(2, dead.pk)
    for folder in (half, whole):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"half")
    prefix = offsite_store.prefix_for(dead.pk)
    s3_client.put_object(Bucket=settings.BACKUP_S3_BUCKET, Key=prefix + "a", Body=b"x")
    s3_client.put_object(
        Bucket=settings.BACKUP_S3_BUCKET,
        Key=prefix + "b",
        Body=b"y",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=timezone.now() + timedelta(days=1),
    )

    assert services.backup_sweep_stale() == [dead.pk]

    dead.refresh_from_db()
    assert dead.state == SetState.FAILED
    assert not half.exists() and not whole.exists()
    listing = s3_client.list_object_versions(
        Bucket=settings.BACKUP_S3_BUCKET, Prefix=prefix
    )
    assert sorted(v["Key"] for v in listing.get("Versions", [])) == [prefix + "b"]
    copy3 = dead.copies.get(number=3)
    assert copy3.state == CopyState.LOCKED and copy3.locked_until
    assert "Object Lock" in copy3.error
    event = AuditEvent.objects.get(event_type="backup.create", target_id=str(dead.pk))
    assert event.outcome == "failure" and "Object Lock" in str(event.details)


def test_redelivered_backup_task_takes_no_second_set(seeded, offsite):
    """The same task delivered twice (acks_late after a lost worker) returns
    the set it already took instead of taking another."""
    task_id = str(uuid.uuid4())
    first = backup_manual.apply(task_id=task_id).get()
    again = backup_manual.apply(task_id=task_id).get()
    assert first == again
    assert BackupSet.objects.count() == 1
    assert BackupSet.objects.get().state == SetState.GOOD
