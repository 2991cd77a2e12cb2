"""A deleted account stays deleted through a restore of an older backup.

The deletion writes a tombstone (the account id, nothing else about the
person) to the erasure ledger before it commits; a restore applies it again:
the account is deleted again, the projects it alone owned are put aside again
from the original deletion, so the purge erases them on the original
schedule. With the folder ledger and with the S3 ledger bucket."""

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from accounts import deletion
from accounts.models import User
from accounts.services import LOGIN_INVALID
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent, Outcome
from backups import services as backups
from privacy import services as privacy
from projects import keys
from projects import services as project_services
from projects.models import Membership, Project, ProjectFile, ProjectKey, Role
from projects.tests.factories import MembershipFactory, stored_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["folder", "bucket"])
def ledger_kind(request, settings):
    """Each test runs with the folder ledger and with the S3 ledger bucket."""
    if request.param == "bucket":
        request.getfixturevalue("ledger_bucket")
    return request.param


@pytest.fixture
def leaving(backup_settings, offsite, ledger_kind):
    """An owner with a project of their own (a file in it, a viewer) and one
    shared with another owner; a backup of all that."""
    owner = UserFactory(email="leaving@example.test")
    # Verified: the purge deletes accounts never verified nor used.
    partner = UserFactory(
        email="partner@example.test", email_verified_at=timezone.now()
    )
    sole = project_services.project_create(actor=owner, name="Mine alone")
    MembershipFactory(project=sole, user=partner, role=Role.VIEWER)
    item = stored_file(sole, name="plan.pdf", uploaded_by=owner)
    shared = project_services.project_create(actor=owner, name="Shared")
    Membership.objects.create(project=shared, user=partner, role=Role.OWNER)
    backup_set = backups.backup_create()
    assert backup_set.state == "good"
    return {
        "owner": owner,
        "owner_id": owner.pk,
        "partner": partner,
        "sole": sole,
        "shared": shared,
        "file": item,
        "blob": item.blob.name,
        "set": backup_set,
    }


def _delete_through_the_page(client, case) -> None:
    client.force_login(case["owner"])
    response = client.post(
        reverse("privacy:account-delete"), {"password": PASSWORD, "confirm": "DELETE"}
    )
    assert response.status_code == 302
    assert not User.objects.filter(pk=case["owner_id"]).exists()


def _sign_in_refused(client, email: str) -> None:
    client.logout()
    response = client.post(
        reverse("accounts:login"), {"username": email, "password": PASSWORD}
    )
    assert response.status_code != 302
    assert LOGIN_INVALID in response.content.decode()
    assert "_auth_user_id" not in client.session


def _ledger_holds_no_personal_data(case) -> None:
    entries = keys.ledger_entries("account")
    assert [e["id"] for e in entries] == [str(case["owner_id"])]
    assert set(entries[0]) == {"kind", "id", "at"}
    assert "leaving@example.test" not in json.dumps(entries)


def test_a_restore_deletes_the_account_again_and_puts_its_projects_aside(
    client, leaving, settings
):
    """Delete the account through the page, restore the backup taken before:
    the account is gone again and its old password signs nobody in; the
    project it alone owned is hidden from its viewer again, dated from the
    deletion, and the purge then erases it with its file; the shared project
    stays with the other owner; the restore's audit event counts it."""
    case = leaving
    _delete_through_the_page(client, case)
    deleted_at = Project.objects.get(pk=case["sole"].pk).deleted_at
    _ledger_holds_no_personal_data(case)

    backups.backup_restore(set_id=case["set"].pk, copy=1)

    assert not User.objects.filter(pk=case["owner_id"]).exists()
    assert not User.objects.filter(email="leaving@example.test").exists()
    _sign_in_refused(client, "leaving@example.test")
    restored = Project.objects.get(pk=case["sole"].pk)
    assert restored.deleted_at is not None
    assert abs(restored.deleted_at - deleted_at) < timedelta(seconds=1)
    assert Project.objects.get(pk=case["shared"].pk).deleted_at is None
    client.force_login(case["partner"])
    assert (
        client.get(reverse("projects:detail", args=[case["sole"].pk])).status_code
        == 404
    )
    assert (
        client.get(reverse("projects:detail", args=[case["shared"].pk])).status_code
        == 200
    )
    reapply = AuditEvent.objects.get(event_type="erasure.reapply")
    assert reapply.details["accounts_deleted"] == 1
    assert reapply.details["projects_put_aside"] == 1

    settings.KREO_PURGE_AFTER_DAYS = 30
    privacy.purge_run(now=timezone.now() + timedelta(days=31))
    assert not Project.objects.filter(pk=case["sole"].pk).exists()
    assert not ProjectKey.objects.filter(pk=case["sole"].pk).exists()
    assert not ProjectFile.objects.filter(pk=case["file"].pk).exists()
    assert not default_storage.exists(case["blob"])


def test_a_restore_after_the_purge_keeps_account_project_and_file_gone(
    client, leaving, settings
):
    """Deleted, then purged (the project erased), then the older backup
    restored: neither the account, nor the project, its key, its file row
    nor its stored object comes back."""
    case = leaving
    _delete_through_the_page(client, case)
    settings.KREO_PURGE_AFTER_DAYS = 30
    summary = privacy.purge_run(now=timezone.now() + timedelta(days=31))
    assert summary["projects_erased"] == 1

    backups.backup_restore(set_id=case["set"].pk, copy=1)

    assert not User.objects.filter(pk=case["owner_id"]).exists()
    _sign_in_refused(client, "leaving@example.test")
    assert not Project.objects.filter(pk=case["sole"].pk).exists()
    assert not ProjectKey.objects.filter(pk=case["sole"].pk).exists()
    assert not ProjectFile.objects.filter(pk=case["file"].pk).exists()
    assert not default_storage.exists(case["blob"])
    assert Project.objects.filter(pk=case["shared"].pk, deleted_at=None).exists()
    assert User.objects.filter(pk=case["partner"].pk).exists()


def test_a_newer_account_given_the_same_id_is_not_deleted(ledger_kind):
    """A restore brings the id sequence back, so a later sign-up may get the
    id of an account deleted earlier: the tombstone applies only to an
    account that existed when it was written."""
    gone = UserFactory()
    gone_id = gone.pk
    privacy.account_delete(actor=None, user=gone, staff=True, reason="test")
    newcomer = UserFactory(email="newcomer@example.test")
    User.objects.filter(pk=newcomer.pk).update(id=gone_id)
    User.objects.filter(pk=gone_id).update(
        date_joined=timezone.now() + timedelta(seconds=1)
    )

    keys.after_restore()

    assert User.objects.filter(pk=gone_id, email="newcomer@example.test").exists()


def _cut_ledger(settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = f"http://127.0.0.1:{port}"


def _break_folder(settings, tmp_path) -> None:
    blocker = Path(tmp_path) / "not-a-folder"
    blocker.write_text("a file where the ledger folder should be")
    settings.KREO_KEY_LEDGER_DIR = blocker / "ledger"


def test_a_ledger_that_cannot_be_written_refuses_the_deletion(
    client, ledger_kind, settings, tmp_path
):
    """With the ledger unwritable the deletion page says so (503), the
    account, its project and its sign-in stay as they were, and the refusal
    is audited as an error."""
    owner = UserFactory(email="stays@example.test")
    sole = project_services.project_create(actor=owner, name="Still mine")
    if ledger_kind == "bucket":
        _cut_ledger(settings)
    else:
        _break_folder(settings, tmp_path)
    client.force_login(owner)

    response = client.post(
        reverse("privacy:account-delete"), {"password": PASSWORD, "confirm": "DELETE"}
    )

    assert response.status_code == 503
    assert deletion.DELETE_REFUSED in response.content.decode()
    assert User.objects.filter(pk=owner.pk).exists()
    assert Project.objects.get(pk=sole.pk).deleted_at is None
    refused = AuditEvent.objects.get(event_type="account.delete")
    assert refused.outcome == Outcome.ERROR
    assert refused.error_code == "erasure_ledger"


def test_the_admin_shows_the_ledger_refusal_and_deletes_nothing(
    client, ledger_bucket, settings, otp_login
):
    """Staff delete an account in the admin while the ledger bucket is down:
    the user's page says why, the account stays, and the refusal is in the
    audit trail although the admin's own transaction rolled back."""
    admin = UserFactory(is_staff=True, is_superuser=True)
    user = UserFactory(email="kept@example.test")
    otp_login(client, admin)
    _cut_ledger(settings)

    response = client.post(
        reverse("admin:accounts_user_delete", args=[user.pk]),
        {"post": "yes"},
        follow=True,
    )

    assert response.status_code == 200
    assert deletion.DELETE_REFUSED in response.content.decode()
    assert User.objects.filter(pk=user.pk).exists()
    refused = AuditEvent.objects.get(event_type="account.delete")
    assert refused.outcome == Outcome.ERROR
    assert refused.target_id == str(user.pk)
