"""Several instances on one machine share one database, Redis and S3 (issue #15).

Two web instances, two Celery workers and beat (kreo/tests/instances.py)
run once for the module, on the test database of the PostgreSQL leg, with
files in the S3 bucket and cache and broker on Redis; the module's rows are
committed (the processes must see them) and emptied when the module ends. Run with
``-s`` to see which instance and which worker answered what.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess  # nosec B404 - runs manage.py audit_verify as an operator would
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import setup_databases, teardown_databases
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.services import LOGIN_INVALID
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal
from audit.tasks import archive as archive_task
from audit.tasks import seal as seal_task
from audit.tests.conftest import make_old_events
from backups.models import BackupSet, CopyState, SetState
from backups.services import common as backup_common
from backups.tasks import backup_manual
from kreo.schedule import sync_default_schedule
from kreo.tests.instances import (
    ROOT,
    Browser,
    Instances,
    own_queue,
    say,
    shared_env,
)
from privacy.tasks import purge as purge_task
from projects.models import Project, ProjectFile
from projects.services import project_create
from projects.tests.factories import PDF, stored_file

pytestmark = [
    pytest.mark.celery,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="instances share a PostgreSQL, Redis and S3: the PostgreSQL leg "
        "only (the embedded SQLite default is one host)",
    ),
]

S3_ENDPOINT = os.environ.get("KREO_TEST_S3_ENDPOINT", "")
OLD_EVENTS = 1200
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _bucket(s3_client, name: str, *, locked: bool = False) -> str:
    s3_client.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        ObjectLockEnabledForBucket=locked,
    )
    return name


@contextlib.contextmanager
def _test_database():
    """The session's test database; made here when no other test of the
    session asked for one (this module's tests carry no django_db mark: they
    commit, and nothing is emptied between them while the processes run)."""
    if connection.settings_dict["NAME"] != connection.creation._get_test_db_name():
        made = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        try:
            yield
        finally:
            teardown_databases(made, verbosity=0)
        return
    yield
    call_command("flush", interactive=False, verbosity=0)  # as the module found it


@pytest.fixture(scope="module")
def pods(django_db_setup, django_db_blocker, tmp_path_factory, s3_client):
    """The five processes, started once; the database unblocked (autocommit)
    for the module, so what a test writes is seen by them at once."""
    root = tmp_path_factory.mktemp("instances")
    run = uuid.uuid4().hex[:10]
    with django_db_blocker.unblock(), _test_database():
        buckets = {
            "AUDIT_ARCHIVE_S3_BUCKET": _bucket(s3_client, f"kreo-audit-{run}"),
            "BACKUP_S3_BUCKET": _bucket(s3_client, f"kreo-backup-{run}", locked=True),
            "KREO_KEY_LEDGER_S3_BUCKET": _bucket(
                s3_client, f"kreo-ledger-{run}", locked=True
            ),
        }
        with override_settings(
            **buckets,
            AUDIT_ARCHIVE_S3_ENDPOINT_URL=S3_ENDPOINT,
            AUDIT_ARCHIVE_S3_REGION="eu-west-2",
            AUDIT_SEAL_DELAY_SECONDS=0,
            AUDIT_SEAL_BATCH=500,
            AUDIT_ARCHIVE_MAX_EVENTS=500,
            BACKUP_S3_ENDPOINT_URL=S3_ENDPOINT,
            BACKUP_S3_LOCK_DAYS=1,
            BACKUP_COPY1_DIR=root / "backups-volume-1",
            BACKUP_COPY2_DIR=root / "backups-volume-2",
            KREO_KEY_LEDGER_S3_PREFIX="kreo/",
            KREO_KEY_LEDGER_S3_ENDPOINT_URL=S3_ENDPOINT,
        ):
            _sweep_often()
            instances = Instances(root, f"kreo-instances-{run}")
            try:
                seconds = instances.start()
                say(
                    f"started web-a ({instances['web-a'].url}), web-b "
                    f"({instances['web-b'].url}), worker-1, worker-2, beat "
                    f"in {seconds:.1f} s; each with KREO_VAR_DIR under {root}/<name>"
                )
                yield instances
            finally:
                say(f"stopped all five in {instances.stop():.1f} s")


def _sweep_often() -> None:
    """Beat runs the stale-backup sweep every 2 s (production: 60 s)."""
    sync_default_schedule()
    sweep = PeriodicTask.objects.get(name="backup stale sweep")
    sweep.interval, _ = IntervalSchedule.objects.get_or_create(
        every=2, period=IntervalSchedule.SECONDS
    )
    sweep.save()


@pytest.fixture(autouse=True)
def _named(pods, request):
    sys.stdout.write("\n")
    say(f"--- {request.node.name}")


@pytest.fixture(scope="module")
def staff(pods):
    """A superuser with a TOTP device (the admin asks for the second step)."""
    user = UserFactory(email="staff@example.test", is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    return user, device


def _admin_sign_in(browser: Browser, user, device) -> None:
    first = browser.sign_in(user.email, PASSWORD)
    assert first.status_code == 302, first.text[:500]
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=6)
    second = browser.post(reverse("accounts:login-otp"), {"token": f"{code:06d}"})
    assert second.status_code == 302, second.text[:500]
    say(f"staff signed in (password + code) on {second.answered_by}")


def _on_both(pods: Instances, task) -> list[str]:
    """Queue ``task`` for worker-1 and worker-2 at the same moment."""
    return [task.apply_async(queue=own_queue(w.name)).id for w in pods.workers]


def _worker_of(pods: Instances, task_id: str, width: int = 110) -> str:
    done = pods.finished(task_id)
    return f"{done[0]}: {done[1]}{done[2][:width]}" if done else "not finished"


def test_seal_archive_purge_and_settle_from_both_workers_no_duplicate_no_gap(pods):
    # What the processes recorded so far is sealed first: the old events then
    # fill seals of their own (an archive takes whole seals past retention).
    pods.wait_finished([seal_task.delay().id])
    before = set(AuditEvent.objects.values_list("id", flat=True))
    make_old_events(OLD_EVENTS)
    old_ids = set(AuditEvent.objects.values_list("id", flat=True)) - before
    # Two of each at the same moment: one to each worker.
    seals = _on_both(pods, seal_task)
    pods.wait_finished(seals)
    for task_id in seals:
        say(f"seal {task_id} -> {_worker_of(pods, task_id)}")
    # Put aside 40 days ago: the purge erases them (recorded after the seals:
    # an archive takes whole seals past retention only).
    owner = UserFactory()
    gone = [project_create(actor=owner, name=f"Put aside {n}").pk for n in range(3)]
    Project.objects.filter(pk__in=gone).update(
        deleted_at=timezone.now() - timedelta(days=40)
    )
    # Archive and purge (which settles the erasure ledger) from both workers
    # at once; an archive run takes at most AUDIT_ARCHIVE_MAX_EVENTS events,
    # so archive pairs are sent again until nothing is past retention.
    runs = {
        "purge": _on_both(pods, purge_task),
        "archive": _on_both(pods, archive_task),
    }
    pods.wait_finished([t for ids in runs.values() for t in ids], timeout=180)
    for _ in range(6):
        if not AuditEvent.objects.filter(id__in=old_ids).exists():
            break
        more = _on_both(pods, archive_task)
        pods.wait_finished(more, timeout=180)
        runs["archive"] += more
    for name, ids in runs.items():
        for task_id in ids:
            say(f"{name} {task_id} -> {_worker_of(pods, task_id, 200)}")
    # Seals: one chain, seq without a hole, ranges one after the other.
    chain = list(AuditSeal.objects.order_by("seq").values("seq", "first_id", "last_id"))
    assert [s["seq"] for s in chain] == list(
        range(chain[0]["seq"], chain[0]["seq"] + len(chain))
    )
    for before, after in zip(chain, chain[1:], strict=False):
        assert after["first_id"] > before["last_id"], (before, after)
    assert all(
        any(s["first_id"] <= i <= s["last_id"] for s in chain) for i in old_ids
    ), "an old event is in no seal"
    # Archives: each old event in exactly one archive, all read back and purged.
    archives = list(AuditArchive.objects.order_by("first_id"))
    held = [i for i in old_ids if any(a.first_id <= i <= a.last_id for a in archives)]
    assert len(held) == OLD_EVENTS
    for before, after in zip(archives, archives[1:], strict=False):
        assert after.first_id > before.last_id, (before, after)
    assert sum(a.count for a in archives) == OLD_EVENTS
    assert {a.state for a in archives} == {ArchiveState.PURGED}
    assert not AuditEvent.objects.filter(id__in=old_ids).exists()
    say(
        f"{len(chain)} seals (seq {chain[0]['seq']}..{chain[-1]['seq']}), "
        f"{len(archives)} archives holding {OLD_EVENTS} events once each"
    )
    # Purge (and the ledger settle inside it): each project erased once.
    assert not Project.objects.filter(pk__in=gone).exists()
    for pk in gone:
        erased = AuditEvent.objects.filter(
            event_type="project.delete", target_id=str(pk)
        )
        assert erased.count() == 1, list(erased.values("outcome", "server_host"))
    hosts = AuditEvent.objects.filter(event_type="privacy.purge")
    say(
        "purge runs recorded by:",
        sorted(hosts.values_list("server_host", flat=True)),
    )
    verified = subprocess.run(  # noqa: S603  # nosec B603 - manage.py
        [sys.executable, "manage.py", "audit_verify"],
        cwd=ROOT,
        env={**shared_env(pods.prefix), "KREO_VAR_DIR": str(pods.root / "operator")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    say("manage.py audit_verify:", verified.stdout.strip().splitlines()[-1:])
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_back_up_now_on_both_instances_at_once_makes_one_good_set(pods, staff):
    user, device = staff
    on_a = Browser(pods["web-a"])
    _admin_sign_in(on_a, user, device)
    on_b = on_a.on(pods["web-b"])
    changelist = reverse("admin:backups_backupset_changelist")
    for browser in (on_a, on_b):
        page = browser.get(changelist)
        assert page.status_code == 200, (page.headers.get("Location"), page.text[:300])
        say(f"admin backup list answered by {page.answered_by}")
    before = set(BackupSet.objects.values_list("pk", flat=True))
    now_url = reverse("admin:backups_backupset_backup_now")
    pressed_at = time.time()
    with ThreadPoolExecutor(2) as pool:
        pressed = list(pool.map(lambda b: b.post(now_url), (on_a, on_b)))
    task_ids = []
    for browser, response in zip((on_a, on_b), pressed, strict=True):
        assert response.status_code == 302, response.text[:300]
        page = browser.get(changelist)
        task_id = re.search(UUID, page.text)
        assert task_id, page.text[:2000]
        task_ids.append(task_id.group(0))
        say(f'"Back up now" pressed on {response.answered_by}: task {task_id[0]}')
    pods.wait_finished(task_ids, timeout=180)
    for task_id in task_ids:
        say(f"  task {task_id} -> {_worker_of(pods, task_id)}")
    new = BackupSet.objects.exclude(pk__in=before)
    assert new.count() == 1, list(new.values("pk", "state", "task_id"))
    made = new.get()
    deadline = time.monotonic() + 120
    while made.state == SetState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
        made.refresh_from_db()
    assert made.state == SetState.GOOD, (made.state, made.error)
    assert made.task_id in task_ids and made.actor == user
    # Both presses answered with that set: the one that found the backup
    # running waited for it instead of failing or taking a second set.
    for task_id in task_ids:
        _, outcome, rest = pods.finished(task_id)
        assert outcome == "succeeded" and rest.endswith(f": {made.pk}"), rest
    assert [c.state for c in made.copies.order_by("number")] == [CopyState.DONE] * 3
    say(f"one backup set: #{made.pk} {made.state}, copies 1-3 done, by {made.task_id}")
    # The one backups worker of production takes presses one after the other:
    # a press of that moment taken only now is covered by the same set.
    late = backup_manual.apply_async(
        kwargs={"actor_id": user.pk, "requested_at": pressed_at}
    ).id
    pods.wait_finished([late])
    assert pods.finished(late)[2].endswith(f": {made.pk}")
    assert BackupSet.objects.exclude(pk__in=before).count() == 1
    say(f"a press of that moment, taken later -> {_worker_of(pods, late)}")
    # A press that meets a backup started before it waits for it (a retry
    # each heartbeat), then takes a set of its own: neither lost nor doubled.
    with backup_common._exclusive():
        waiting = backup_manual.apply_async(
            kwargs={"actor_id": user.pk, "requested_at": time.time()}
        ).id
        deadline = time.monotonic() + 30
        while sum(e[1] == "retry" for e in pods.task_events(waiting)) < 2:
            assert time.monotonic() < deadline, pods.logs_tail()
            time.sleep(0.2)
    pods.wait_finished([waiting], timeout=120)
    after = BackupSet.objects.exclude(pk__in=before).exclude(pk=made.pk)
    assert [s.state for s in after] == [SetState.GOOD], list(after.values())
    retries = sum(e[1] == "retry" for e in pods.task_events(waiting))
    say(
        f"a press while another backup held the lock: {retries} retries, then "
        f"{_worker_of(pods, waiting)}"
    )


def test_worker_killed_mid_backup_task_redelivered_and_completes_once(pods, staff):
    user, _ = staff
    owner = UserFactory()
    project = project_create(actor=owner, name="Big drawings")
    stored_file(project, name="big.pdf", content=PDF + os.urandom(24 * 2**20))
    last = BackupSet.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    task_id = backup_manual.delay(actor_id=user.pk).id
    copy1 = pods["worker-1"].env["BACKUP_COPY1_DIR"]
    deadline = time.monotonic() + 120
    runner = None
    while runner is None:
        assert time.monotonic() < deadline, pods.logs_tail()
        partial = list(Path(copy1).glob("*.partial"))
        received = [w for w, what, _ in pods.task_events(task_id) if what == "received"]
        if partial and received:
            runner = pods[received[0]]
        time.sleep(0.05)
    killed = BackupSet.objects.get(pk__gt=last, task_id=task_id)
    assert killed.state == SetState.RUNNING
    runner.kill()
    other = next(w for w in pods.workers if w is not runner)
    say(f"backup task {task_id} (set #{killed.pk}) ran on {runner.name}: SIGKILL")
    started = time.monotonic()
    seen: dict[str, float] = {}
    while len(seen) < 3:
        killed.refresh_from_db()
        elapsed = time.monotonic() - started
        if killed.state == SetState.FAILED:
            seen.setdefault("set failed by the sweep", elapsed)
        if BackupSet.objects.filter(pk__gt=killed.pk, state=SetState.GOOD).exists():
            seen.setdefault("retry set good", elapsed)
        if any(e[0] == other.name for e in pods.task_events(task_id)):
            seen.setdefault(f"task redelivered to {other.name}", elapsed)
        assert elapsed < 120, (
            seen,
            list(BackupSet.objects.filter(pk__gt=last).values("pk", "state")),
            pods.logs_tail(),
        )
        time.sleep(0.2)
    say(
        f"set #{killed.pk}: {killed.error[:70]}; after the kill: "
        + ", ".join(f"{what} {at:.1f} s" for what, at in seen.items())
    )
    pods.wait_finished([task_id])
    say(f"redelivered task {task_id} -> {_worker_of(pods, task_id)}")
    sets = list(BackupSet.objects.filter(pk__gt=last).order_by("pk"))
    assert [s.pk for s in sets][0] == killed.pk
    assert [s.state for s in sets[1:]] == [SetState.GOOD], [
        (s.pk, s.state, s.trigger) for s in sets
    ]
    good = sets[1]
    assert [c.state for c in good.copies.order_by("number")] == [CopyState.DONE] * 3
    assert good.actor == user
    say(f"one good set #{good.pk} after the killed one ({good.trigger})")
    pods.restart(runner.name)


def test_file_uploaded_through_a_downloads_through_b(pods):
    owner = UserFactory()
    project = project_create(actor=owner, name="Shared files")
    on_a = Browser(pods["web-a"])
    assert on_a.sign_in(owner.email, PASSWORD).status_code == 302
    content = PDF + b"%" + os.urandom(200_000).hex().encode() + b"\n"
    upload = on_a.post(
        reverse("projects:file-upload", args=[project.pk]),
        files={"file": ("takeoff.pdf", content, "application/pdf")},
    )
    assert upload.status_code == 302, upload.text[:500]
    item = ProjectFile.objects.get(project=project)
    on_b = on_a.on(pods["web-b"])
    download = on_b.get(reverse("projects:file-download", args=[project.pk, item.pk]))
    assert download.status_code == 200
    assert download.content == content
    say(
        f"uploaded {len(content)} bytes on {upload.answered_by}; downloaded the "
        f"same bytes on {download.answered_by}"
    )


def test_session_and_lockout_are_shared(pods):
    member = UserFactory()
    on_a = Browser(pods["web-a"])
    signed = on_a.sign_in(member.email, PASSWORD)
    assert signed.status_code == 302
    on_b = on_a.on(pods["web-b"])
    listing = on_b.get(reverse("projects:list"))
    assert listing.status_code == 200, listing.headers.get("Location")
    say(
        f"session made on {signed.answered_by} opens the project list on "
        f"{listing.answered_by}"
    )
    locked = UserFactory()
    a, b = Browser(pods["web-a"]), Browser(pods["web-b"])
    for _ in range(4):
        wrong = a.sign_in(locked.email, "not-the-password-1")
        assert LOGIN_INVALID in wrong.text
    fifth = b.sign_in(locked.email, "not-the-password-1")
    locked.refresh_from_db()
    assert locked.locked_until is not None, "four failures on A + one on B: no lockout"
    say(f"failures 1-4 on {wrong.answered_by}, 5th on {fifth.answered_by}: locked")
    for browser in (Browser(pods["web-b"]), Browser(pods["web-a"])):
        right = browser.sign_in(locked.email, PASSWORD)
        assert right.status_code == 200 and LOGIN_INVALID in right.text
        say(f"right password refused while locked on {right.answered_by}")
