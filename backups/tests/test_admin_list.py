"""The backup list in the admin, as a staff user signed in with a second
factor sees it: why a set failed, what "Back up now" queued, and the labels."""

import re
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from backups import crypto, services
from backups.models import BackupSet, CopyState, SetState
from kreo.celery import app as celery_app

LIST = "admin:backups_backupset_changelist"


@pytest.fixture
def superuser(client, otp_login):
    user = UserFactory(is_staff=True, is_superuser=True, email="ops@example.test")
    otp_login(client, user)
    return user


def _row(page, set_id: int) -> str:
    """The list row of set ``set_id``."""
    html = page.content.decode()
    link = reverse("admin:backups_backupset_change", args=[set_id])
    rows = [r for r in re.findall(r"<tr.*?</tr>", html, re.S) if link in r]
    assert len(rows) == 1, f"no row for set {set_id}"
    return rows[0]


def test_list_says_why_a_set_failed(client, superuser, settings):
    """A set that failed for a bad key shows the key's error in its list row,
    once for the three copies that share it, not only on its own page."""
    settings.BACKUP_ENCRYPTION_KEY = "not-a-key"
    with pytest.raises(crypto.BackupCryptoError):
        services.backup_create(actor=superuser)
    failed = BackupSet.objects.get()
    assert failed.state == SetState.FAILED

    page = client.get(reverse(LIST))

    assert page.status_code == 200
    row = _row(page, failed.pk)
    expected = crypto.BAD_KEY.format(name="BACKUP_ENCRYPTION_KEY")
    assert f"copies 1, 2, 3: {expected}" in row
    assert row.count(expected) == 2  # shown once, and in full on hover


def test_list_names_each_failed_copy_and_escapes_the_error(client, superuser):
    """An incomplete set whose copy 3 failed names copy 3 and its error, cut short
    on the list (in full on hover), with markup in the error shown as text."""
    item = BackupSet.objects.create(
        created_at=timezone.now(), state=SetState.INCOMPLETE
    )
    item.copies.create(number=1, state=CopyState.DONE)
    item.copies.create(number=2, state=CopyState.DONE)
    error = "S3 refused <script>alert(1)</script> the upload: " + "x" * 400
    item.copies.create(number=3, state=CopyState.FAILED, error=error)
    good = BackupSet.objects.create(created_at=timezone.now(), state=SetState.GOOD)

    page = client.get(reverse(LIST))

    row = _row(page, item.pk)
    assert "copy 3: S3 refused &lt;script&gt;alert(1)&lt;/script&gt; the upload" in row
    assert "<script>alert(1)" not in page.content.decode()
    shown = re.search(r'class="backup-failure"[^>]*>(.*?)</span>', row, re.S)[1]
    assert len(shown) < 250 and shown.endswith("…")
    assert "x" * 400 in row  # the title holds the whole error
    assert 'class="backup-failure"' not in _row(page, good.pk)


def test_set_page_labels_its_copies_in_plain_english(client, superuser):
    """The set's page heads its copies "Backup copies", not "Backup copys"."""
    item = BackupSet.objects.create(created_at=timezone.now(), state=SetState.GOOD)
    item.copies.create(number=1, state=CopyState.DONE)

    page = client.get(reverse("admin:backups_backupset_change", args=[item.pk]))

    assert page.status_code == 200
    assert "Backup copies" in page.content.decode()
    assert "copys" not in page.content.decode().lower()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_back_up_now_names_the_task_it_queued_and_a_worker_takes_it(
    client, superuser, offsite
):
    """ "Back up now" answers with the task it queued (name and id) and who
    asked; a real worker then takes it and the new set, started by that user,
    is listed as good."""
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        page = client.post(reverse("admin:backups_backupset_backup_now"), follow=True)
        assert page.status_code == 200
        message = [str(m) for m in page.context["messages"]]
        assert len(message) == 1
        found = re.search(
            r"task backups\.tasks\.backup_manual \(id ([0-9a-f-]{36})\) "
            r"for ops@example\.test",
            message[0],
        )
        assert found, message
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if BackupSet.objects.exclude(state=SetState.RUNNING).exists():
                break
            time.sleep(0.5)
    item = BackupSet.objects.get()
    assert item.state == SetState.GOOD, item.error
    assert item.actor == superuser
    row = _row(client.get(reverse(LIST)), item.pk)
    assert 'class="backup-failure"' not in row
