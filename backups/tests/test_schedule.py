"""Schedule, retention, restore drills and the admin."""

import datetime as dt

import pytest
from django.apps import apps
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from backups import services
from backups.models import BackupSet, CopyState, RestoreDrill, SetState
from kreo.celery import DEFAULT_SCHEDULE
from kreo.celery import app as celery_app
from kreo.schedule import sync_default_schedule


def test_default_schedule_runs_backup_daily_and_drill_weekly(db):
    """Beat gets a daily backup, retention, offsite retry and a weekly drill,
    editable as django-celery-beat periodic tasks."""
    from django_celery_beat.models import PeriodicTask

    assert DEFAULT_SCHEDULE["backup daily"][0] == "backups.tasks.backup_scheduled"
    sync_default_schedule()
    daily = PeriodicTask.objects.get(name="backup daily")
    drill = PeriodicTask.objects.get(name="backup restore drill")
    assert daily.interval.every == 24 * 3600
    assert drill.interval.every == 7 * 24 * 3600
    assert PeriodicTask.objects.filter(task="backups.tasks.backup_prune").exists()
    assert "backups.tasks.backup_scheduled" in celery_app.tasks


def test_drill_restores_latest_set_into_scratch_and_passes(seeded):
    """The drill restores copy 1 into a scratch database; every table's count
    and checksum, and the files, match the manifest."""
    backup_set = services.backup_create()
    drill = services.backup_drill()
    assert drill.ok is True, (drill.error, drill.mismatches)
    assert drill.backup_set == backup_set
    assert drill.mismatches == []
    assert mail.outbox == []


def test_drill_failure_is_recorded_and_mailed_to_staff(seeded):
    """A corrupted copy fails the drill, which emails every active staff user."""
    staff = UserFactory(is_staff=True, email="ops@example.test")
    UserFactory(is_staff=False, email="user@example.test")
    backup_set = services.backup_create()
    path = services.set_folder(1, backup_set.pk) / "files.tar.enc"
    data = bytearray(path.read_bytes())
    data[-40] ^= 1
    path.write_bytes(bytes(data))

    drill = services.backup_drill()

    assert drill.ok is False
    assert "files.tar.enc: chunk 0 failed authentication" in drill.error
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [staff.email]
    assert f"set {backup_set.pk}" in mail.outbox[0].subject


def test_logical_copy_drill_passes(seeded):
    """The drill can also run on copy 2 (logical, age)."""
    services.backup_create()
    drill = services.backup_drill(copy=2)
    assert drill.ok is True, (drill.error, drill.mismatches)


def _set_at(when: dt.datetime) -> BackupSet:
    item = BackupSet.objects.create(created_at=when, state=SetState.GOOD)
    for number in (1, 2, 3):
        item.copies.create(number=number, state=CopyState.DONE)
    for number in (1, 2):
        folder = services.set_folder(number, item.pk)
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    return item


def test_retention_keeps_7_daily_4_weekly_12_monthly(db, settings):
    """A set a day for 400 days (two on recent days): pruning keeps the newest
    of each of the last 7 days, 4 weeks and 12 months, and removes the others'
    folders."""
    settings.BACKUP_S3_BUCKET = ""
    now = timezone.now().replace(hour=12)
    sets = []
    for day in range(400):
        sets.append(_set_at(now - dt.timedelta(days=day)))
        if day < 10:
            sets.append(_set_at(now - dt.timedelta(days=day, hours=6)))
    pruned = services.backup_prune()
    kept = BackupSet.objects.exclude(state=SetState.PRUNED)
    assert len(pruned) == len(sets) - kept.count()
    days = {s.created_at.date() for s in kept}
    # 7 daily + up to 4 weekly + up to 12 monthly slots, overlapping.
    assert 7 <= kept.count() <= 23
    newest = max(sets, key=lambda s: s.created_at)
    assert kept.filter(pk=newest.pk).exists()
    for back in range(7):
        assert (now - dt.timedelta(days=back)).date() in days
    months = {(s.created_at.year, s.created_at.month) for s in kept}
    assert len(months) >= 12
    gone = BackupSet.objects.get(pk=pruned[0])
    assert not services.set_folder(1, gone.pk).exists()
    assert gone.copies.get(number=1).state == CopyState.PRUNED


def test_prune_leaves_locked_offsite_objects_to_expire(seeded, offsite, settings):
    """A pruned set whose S3 objects are under compliance lock keeps them:
    its copy 3 is marked locked, local copies are gone."""
    settings.BACKUP_KEEP_DAILY = 1
    settings.BACKUP_KEEP_WEEKLY = 0
    settings.BACKUP_KEEP_MONTHLY = 0
    old = services.backup_create()
    BackupSet.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - dt.timedelta(days=3)
    )
    services.backup_create()
    assert services.backup_prune() == [old.pk]
    old.refresh_from_db()
    assert old.copies.get(number=3).state == CopyState.LOCKED
    assert not services.set_folder(1, old.pk).exists()


def _staff_client(client, *, superuser=True):
    user = UserFactory(is_staff=True, is_superuser=superuser)
    client.force_login(user)
    if apps.is_installed("django_otp"):
        from django_otp.plugins.otp_static.models import StaticDevice

        device = StaticDevice.objects.create(user=user, name="test")
        session = client.session
        session["otp_device_id"] = device.persistent_id
        session.save()
    return user


def test_admin_flags_a_stale_backup_and_a_failed_drill(client, db):
    """With the last good set 30 hours old and a failed drill, the admin
    list says so in red."""
    _staff_client(client)
    item = BackupSet.objects.create(
        created_at=timezone.now() - dt.timedelta(hours=31),
        finished_at=timezone.now() - dt.timedelta(hours=30),
        state=SetState.GOOD,
    )
    RestoreDrill.objects.create(
        backup_set=item, started_at=timezone.now(), ok=False, error="bad chunk"
    )
    page = client.get(reverse("admin:backups_backupset_changelist"))
    assert page.status_code == 200
    assert b'data-backup-age="stale"' in page.content
    assert b'data-drill="failed"' in page.content
    BackupSet.objects.filter(pk=item.pk).update(finished_at=timezone.now())
    page = client.get(reverse("admin:backups_backupset_changelist"))
    assert b'data-backup-age="fresh"' in page.content


def test_admin_back_up_now_and_verify(client, seeded):
    """ "Back up now" queues a set that the worker takes; "verify" reports it."""
    user = _staff_client(client)
    celery_app.conf.task_always_eager = True
    try:
        response = client.post(reverse("admin:backups_backupset_backup_now"))
    finally:
        celery_app.conf.task_always_eager = False
    assert response.status_code == 302
    backup_set = BackupSet.objects.get()
    # No bucket in this test: copy 3 skipped, so the set is incomplete.
    assert backup_set.state == SetState.INCOMPLETE and backup_set.actor == user
    response = client.post(
        reverse("admin:backups_backupset_changelist"),
        {"action": "verify_sets", "_selected_action": [backup_set.pk]},
        follow=True,
    )
    assert b"every artifact of every copy matches" in response.content
    backup_set.refresh_from_db()
    assert backup_set.verify_ok is True


def test_admin_back_up_now_refused_to_non_superuser(client, db):
    """Staff without superuser rights cannot start a backup."""
    _staff_client(client, superuser=False)
    response = client.post(reverse("admin:backups_backupset_backup_now"))
    assert response.status_code == 403
    assert not BackupSet.objects.exists()


@pytest.mark.parametrize("name", ["backup_list"])
def test_backup_list_shows_each_copy_state(seeded, name, capsys):
    """backup_list prints one line per set with the three copy states."""
    from django.core.management import call_command

    backup_set = services.backup_create()
    call_command(name)
    out = capsys.readouterr().out
    assert f"{backup_set.pk:>6}" in out
    assert "incomplete  done     done     skipped" in out
    assert services.NO_BUCKET in out
