"""With the erasure ledger's S3 server down, every way of erasing refuses
cleanly: the page and the API answer 503 with the ledger's message, the admin
says so, the purge job skips the project and carries on; nothing is erased,
each refusal is audited, and the same erasure succeeds once S3 answers."""

import socket
from datetime import timedelta

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.db.models.signals import post_delete
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from accounts.models import User
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent, Outcome
from conftest import S3_ENDPOINT
from privacy import services as privacy_services
from privacy import tasks as privacy_tasks
from projects import keys, services
from projects.erasure import LEDGER_REFUSED
from projects.models import ErasureCertificate, Project, ProjectFile, ProjectKey
from projects.tests.factories import PDF, stored_file

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def outage(ledger_bucket, settings):
    """``outage.start()`` points the ledger at a port nobody listens on;
    ``outage.end()`` gives it its S3 server back."""

    class Outage:
        def start(self):
            url = f"http://127.0.0.1:{_closed_port()}"
            settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = url

        def end(self):
            settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = S3_ENDPOINT

    return Outage()


@pytest.fixture
def owned():
    """An owner, a project of theirs with one stored file."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Survives the outage")
    item = stored_file(project, name="plan.pdf", content=PDF + b"still-here")
    return owner, project, item


def _readable(client, project, item) -> bytes:
    url = reverse("projects:file-download", args=[project.pk, item.pk])
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def _refusals(event_type: str):
    return AuditEvent.objects.filter(
        event_type=event_type, outcome=Outcome.ERROR, error_code=LEDGER_REFUSED
    )


def _intact(project, item) -> None:
    assert Project.objects.filter(pk=project.pk).exists()
    assert ProjectKey.objects.filter(pk=project.pk).exists()
    assert ProjectFile.objects.filter(pk=item.pk).exists()
    assert not ErasureCertificate.objects.exists()
    assert not AuditEvent.objects.filter(
        event_type__in=["project.delete", "file.delete"], outcome=Outcome.SUCCESS
    ).exists()
    assert keys.ledger_entries() == []


def test_the_delete_pages_answer_503_and_keep_everything(client, owned, outage):
    """Deleting the file, then the project, through the pages while the ledger
    is down: each answers 503 on its confirmation page with the ledger's
    message, the file still downloads, each refusal is audited; with S3 back
    the same requests erase."""
    owner, project, item = owned
    client.force_login(owner)
    outage.start()

    file_url = reverse("projects:file-delete", args=[project.pk, item.pk])
    response = client.post(file_url)
    assert response.status_code == 503
    assert keys.LEDGER_UNREACHABLE in response.content.decode()
    assert b"Delete the file" in response.content
    project_url = reverse("projects:delete", args=[project.pk])
    response = client.post(project_url)
    assert response.status_code == 503
    assert keys.LEDGER_UNREACHABLE in response.content.decode()

    outage.end()
    _intact(project, item)
    assert _readable(client, project, item) == PDF + b"still-here"
    (refused_file,) = _refusals("file.delete")
    assert refused_file.actor_id == owner.pk
    assert refused_file.target_id == str(item.pk)
    assert refused_file.error_description == keys.LEDGER_UNREACHABLE
    assert refused_file.details["via"] == "user"
    (refused_project,) = _refusals("project.delete")
    assert refused_project.target_id == str(project.pk)
    assert refused_project.path == project_url

    assert client.post(file_url).status_code == 302
    assert client.post(project_url).status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()


@pytest.fixture
def api(owned):
    owner = owned[0]
    _, raw = AuthToken.objects.create(user=owner)
    return Client(HTTP_AUTHORIZATION=f"Token {raw}")


def test_the_api_answers_503_with_the_message_and_keeps_everything(api, owned, outage):
    """DELETE on the file and on the project while the ledger is down answers
    503 with the ledger's message as JSON; the file still downloads through
    the API; once S3 answers the same DELETE erases."""
    owner, project, item = owned
    file_url = f"/api/projects/{project.pk}/files/{item.pk}/"
    project_url = f"/api/projects/{project.pk}/"
    outage.start()

    for url in (file_url, project_url):
        response = api.delete(url)
        assert response.status_code == 503, url
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"detail": keys.LEDGER_UNREACHABLE}

    outage.end()
    _intact(project, item)
    download = api.get(file_url + "download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PDF + b"still-here"
    assert _refusals("file.delete").get().actor_id == owner.pk
    assert _refusals("project.delete").get().details["via"] == "user"
    assert api.delete(project_url).status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()


@pytest.fixture
def cut_after_first_delete(outage):
    """Start the outage as soon as the first project row has been deleted, in
    the middle of an erasure run over several (once per test)."""
    fired = []

    def cut(sender, instance, **kwargs):
        if not fired:
            fired.append(instance.pk)
            outage.start()

    post_delete.connect(cut, sender=Project, weak=False)
    yield
    post_delete.disconnect(cut, sender=Project)


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_admin_says_the_ledger_refused_and_deletes_nothing(
    client, owned, outage, otp_login
):
    """Staff deleting a project and a file from their admin pages while the
    ledger is down get the ledger's message on the object's page; nothing is
    erased, the admin log records no deletion, each refusal is audited."""
    owner, project, item = owned
    staff = UserFactory(is_staff=True, is_superuser=True)
    otp_login(client, staff)
    outage.start()

    url = reverse("admin:projects_project_delete", args=[project.pk])
    response = client.post(url, {"post": "yes"}, follow=True)
    change = reverse("admin:projects_project_change", args=[project.pk])
    assert response.redirect_chain == [(change, 302)]
    assert _messages(response) == [keys.LEDGER_UNREACHABLE]
    file_url = reverse("admin:projects_projectfile_delete", args=[item.pk])
    response = client.post(file_url, {"post": "yes"}, follow=True)
    assert _messages(response) == [keys.LEDGER_UNREACHABLE]

    outage.end()
    _intact(project, item)
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
    refused = _refusals("project.delete").get()
    assert (refused.actor_id, refused.target_id) == (staff.pk, str(project.pk))
    assert refused.details["via"] == "admin"
    assert _refusals("file.delete").get().target_id == str(item.pk)
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Project.objects.filter(pk=project.pk).exists()
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 1


def test_the_admin_delete_action_refused_half_way_erases_none(
    client, owned, otp_login, outage, cut_after_first_delete
):
    """The ledger goes down after the changelist's delete action erased the
    first of two projects: that erasure rolls back with the action, so both
    projects and keys are there, no "deleted" message nor log entry, and both
    refusals are audited. The rolled-back tombstone is withdrawn by settling."""
    owner, project, _item = owned
    other = services.project_create(actor=owner, name="Second")
    staff = UserFactory(is_staff=True, is_superuser=True)
    otp_login(client, staff)

    changelist = reverse("admin:projects_project_changelist")
    selected = {
        "action": "delete_selected",
        "_selected_action": [str(project.pk), str(other.pk)],
        "post": "yes",
    }
    response = client.post(changelist, selected, follow=True)
    assert response.status_code == 200
    assert _messages(response) == [keys.LEDGER_UNREACHABLE]

    outage.end()
    assert Project.objects.filter(pk__in=[project.pk, other.pk]).count() == 2
    assert ProjectKey.objects.filter(pk=project.pk).exists()  # the one with files
    assert not ErasureCertificate.objects.exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
    refused = _refusals("project.delete")
    assert {e.target_id for e in refused} == {str(project.pk), str(other.pk)}
    # The rolled-back erasure's tombstone is withdrawn by the action (through
    # the client that wrote it, connected before the outage); settling has
    # nothing left to do.
    assert keys.ledger_entries() == []
    assert keys.ledger_settle(now=timezone.now() + timedelta(hours=2)) == 0


@pytest.fixture
def refuse_after_first_delete(settings):
    """Once the first project row of a run is deleted, the ledger refuses
    (it is configured as a bucket the backups share), while the store that
    wrote the first tombstone still answers."""
    fired = []

    def cut(sender, instance, **kwargs):
        if not fired:
            fired.append(instance.pk)
            shared = settings.KREO_KEY_LEDGER_S3_BUCKET or "kreo-shared"
            settings.KREO_KEY_LEDGER_S3_BUCKET = shared
            settings.BACKUP_S3_BUCKET = shared

    post_delete.connect(cut, sender=Project, weak=False)
    yield fired
    post_delete.disconnect(cut, sender=Project)


@pytest.mark.parametrize("store", ["bucket", "folder"])
def test_the_admin_delete_action_withdraws_the_tombstones_it_rolled_back(
    client, owned, otp_login, ledger_bucket, settings, refuse_after_first_delete, store
):
    """The ledger refuses the second of two projects in the changelist's
    delete action: the first erasure rolls back with the action and its
    tombstone is withdrawn at once (a void beside the locked object in the
    bucket, the file removed from the folder), so a restore made before
    settling would not erase a project that is still live."""
    owner, project, _item = owned
    other = services.project_create(actor=owner, name="Second")
    if store == "folder":
        settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    staff = UserFactory(is_staff=True, is_superuser=True)
    otp_login(client, staff)

    changelist = reverse("admin:projects_project_changelist")
    selected = {
        "action": "delete_selected",
        "_selected_action": [str(project.pk), str(other.pk)],
        "post": "yes",
    }
    response = client.post(changelist, selected, follow=True)
    (message,) = _messages(response)
    assert "needs a bucket of its own" in message

    (first_id,) = refuse_after_first_delete
    settings.BACKUP_S3_BUCKET = ""
    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger_bucket if store == "bucket" else ""
    assert Project.objects.filter(pk__in=[project.pk, other.pk]).count() == 2
    assert keys.ledger_entries() == []
    if store == "bucket":
        s3 = keys.ledger()
        page = s3.client.list_objects_v2(Bucket=ledger_bucket, Prefix="kreo/")
        stored = sorted(item["Key"] for item in page["Contents"])
        assert [k.split("/")[1:4] for k in stored] == [
            ["tombstones", "project", str(first_id)],
            ["voids", "project", str(first_id)],
        ]
    else:
        assert list(settings.KREO_KEY_LEDGER_DIR.glob("*.json")) == []
    assert keys.ledger_settle(now=timezone.now() + timedelta(hours=2)) == 0


def test_the_purge_survives_a_folder_ledger_it_cannot_read(settings, tmp_path):
    """Settling a folder ledger that fails with an OS error (here an entry it
    cannot read) does not crash the purge: the put-aside project is erased,
    the run completes and says the ledger was not settled."""
    settings.KREO_PURGE_AFTER_DAYS = 30
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    settings.KREO_KEY_LEDGER_DIR = tmp_path / "folder-ledger"
    (settings.KREO_KEY_LEDGER_DIR / "unreadable.json").mkdir(parents=True)
    owner = UserFactory()
    project = _put_aside(owner, "Put aside", days=31)

    summary = privacy_services.purge_run()

    assert summary["projects_erased"] == 1
    assert summary["tombstones_dropped"] is None
    assert not Project.objects.filter(pk=project.pk).exists()
    run = AuditEvent.objects.get(event_type="privacy.purge")
    assert run.outcome == Outcome.ERROR
    assert privacy_services.PURGE_NOT_SETTLED in run.error_description


def _put_aside(owner, name: str, *, days: int) -> Project:
    project = services.project_create(actor=owner, name=name)
    stored_file(project, content=PDF + name.encode())
    when = timezone.now() - timedelta(days=days)
    Project.objects.filter(pk=project.pk).update(deleted_at=when)
    return project


def test_the_purge_skips_a_refused_project_and_carries_on(
    settings, outage, cut_after_first_delete
):
    """The ledger goes down after the purge erased one of two put-aside
    projects: the other is skipped (intact, refusal audited), so is the stale
    account (its deletion needs a tombstone too), the run completes and says
    what it left; the next run, with S3 back, erases and deletes them."""
    settings.KREO_PURGE_AFTER_DAYS = 30
    owner = UserFactory()
    first = _put_aside(owner, "First", days=31)
    second = _put_aside(owner, "Second", days=40)
    ghost = UserFactory(email_verified_at=None, last_login=None)
    User.objects.filter(pk=ghost.pk).update(
        date_joined=timezone.now() - timedelta(days=31)
    )

    summary = privacy_tasks.purge()

    assert summary["projects_erased"] == 1
    assert summary["projects_left"] == 1
    assert summary["accounts_deleted"] == 0
    assert summary["accounts_left"] == 1
    assert summary["tombstones_dropped"] is None
    assert User.objects.filter(pk=ghost.pk).exists()
    (left,) = Project.objects.filter(pk__in=[first.pk, second.pk])
    assert ProjectKey.objects.filter(pk=left.pk).exists()
    assert left.deleted_at is not None
    assert ErasureCertificate.objects.filter(reason="purge").count() == 1
    refusal = _refusals("project.delete").get()
    assert refusal.target_id == str(left.pk)
    assert refusal.actor_label == "system"
    assert refusal.details["via"] == "purge"
    run = AuditEvent.objects.get(event_type="privacy.purge")
    assert run.outcome == Outcome.ERROR
    assert run.error_code == LEDGER_REFUSED
    assert run.details["left"] == [str(left.pk)]
    assert privacy_services.PURGE_NOT_SETTLED in run.error_description
    left_accounts = privacy_services.PURGE_ACCOUNTS_LEFT.format(left=1)
    assert left_accounts in run.error_description

    outage.end()
    again = privacy_services.purge_run()
    assert again["projects_erased"] == 1
    assert again["projects_left"] == 0
    assert again["accounts_deleted"] == 1
    assert not User.objects.filter(pk=ghost.pk).exists()
    assert not Project.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert {e["id"] for e in keys.ledger_entries("project")} == {
        str(first.pk),
        str(second.pk),
    }
    latest = AuditEvent.objects.filter(event_type="privacy.purge").latest("pk")
    assert latest.outcome == Outcome.SUCCESS
