"""Data export, account deletion and the purge job, through the pages."""

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent, Outcome
from privacy import services, tasks
from privacy.models import DataExport, ExportState
from projects import services as project_services
from projects.models import ErasureCertificate, Membership, Project, ProjectKey, Role
from projects.storage import raw_chunks
from projects.tests.factories import PDF, MembershipFactory, stored_file

pytestmark = pytest.mark.django_db

MARKER = b"export-marker-5150"


@pytest.fixture
def owner(client):
    user = UserFactory(email="owner@example.test")
    client.force_login(user)
    return user


def _request_and_build(client) -> tuple[DataExport, str]:
    response = client.post(reverse("privacy:export"))
    assert response.status_code == 302
    export = DataExport.objects.get(state=ExportState.PENDING)
    assert tasks.export_build(str(export.pk)) == ExportState.READY
    link = re.search(r"https?://\S+", mail.outbox[-1].body).group(0)
    return DataExport.objects.get(pk=export.pk), link


def test_export_is_built_encrypted_and_downloads_once(client, owner):
    """The archive holds the account data and every project's files; stored,
    it is ciphertext; the mailed link downloads it once, then is refused; the
    request and the download are audited."""
    project = project_services.project_create(actor=owner, name="Exported job")
    stored_file(project, name="plan.pdf", content=PDF + MARKER)
    export, link = _request_and_build(client)
    assert mail.outbox[-1].to == ["owner@example.test"]
    stored = b"".join(
        raw_chunks(type("B", (), {"storage": default_storage, "name": export.blob})())
    )
    assert MARKER not in stored and b"owner@example.test" not in stored

    response = client.get(link)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    archive = zipfile.ZipFile(io.BytesIO(body))
    account = json.loads(archive.read("account.json"))
    assert account["email"] == "owner@example.test"
    assert account["projects"][0]["name"] == "Exported job"
    names = archive.namelist()
    plan = next(n for n in names if n.endswith("-plan.pdf"))
    assert archive.read(plan) == PDF + MARKER

    again = client.get(link)
    assert again.status_code == 410
    assert services.EXPORT_LINK_USED.encode() in again.content
    events = AuditEvent.objects.filter(event_type__startswith="privacy.export")
    assert events.filter(event_type="privacy.export.request").count() == 1
    assert (
        events.filter(
            event_type="privacy.export.download", outcome=Outcome.SUCCESS
        ).count()
        == 1
    )
    assert (
        events.filter(
            event_type="privacy.export.download", outcome=Outcome.DENIED
        ).count()
        == 1
    )


def test_export_link_refuses_forged_token_other_user_and_expiry(client, owner):
    """A changed token, another signed-in user, or an expired link: refused."""
    export, link = _request_and_build(client)
    assert client.get(link[:-4] + "xyz/").status_code == 404
    client.force_login(UserFactory())
    assert client.get(link).status_code == 404
    client.force_login(owner)
    DataExport.objects.filter(pk=export.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = client.get(link)
    assert expired.status_code == 410
    assert services.EXPORT_LINK_EXPIRED.encode() in expired.content


def test_one_pending_export_at_a_time(client, owner):
    client.post(reverse("privacy:export"))
    response = client.post(reverse("privacy:export"), follow=True)
    assert services.EXPORT_PENDING.encode() in response.content
    assert DataExport.objects.count() == 1


def test_account_deletion_needs_the_password_and_follows_the_project_rule(
    client, owner
):
    """A wrong password changes nothing. With it: the user row is gone; the
    project only they owned is hidden at once (purged later); a co-owned
    project stays with its other owner; audit rows keep the actor label."""
    sole = project_services.project_create(actor=owner, name="Mine alone")
    shared = project_services.project_create(actor=owner, name="Shared")
    partner = UserFactory()
    Membership.objects.create(project=shared, user=partner, role=Role.OWNER)
    MembershipFactory(project=sole, user=partner, role=Role.VIEWER)
    url = reverse("privacy:account-delete")
    wrong = client.post(url, {"password": "not it", "confirm": "DELETE"})
    assert wrong.status_code == 400
    assert User.objects.filter(pk=owner.pk).exists()

    response = client.post(url, {"password": PASSWORD, "confirm": "DELETE"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=owner.pk).exists()
    assert Project.objects.get(pk=sole.pk).deleted_at is not None
    assert Project.objects.get(pk=shared.pk).deleted_at is None
    client.force_login(partner)
    assert client.get(reverse("projects:detail", args=[sole.pk])).status_code == 404
    assert client.get(reverse("projects:detail", args=[shared.pk])).status_code == 200
    created = AuditEvent.objects.get(
        event_type="project.create", target_id=str(sole.pk)
    )
    assert created.actor_label == "owner@example.test"
    assert AuditEvent.objects.filter(event_type="account.delete").exists()


def test_purge_erases_put_aside_projects_and_never_verified_accounts(settings):
    """After KREO_PURGE_AFTER_DAYS the purge job crypto-erases soft-deleted
    projects (certificate) and deletes accounts never verified nor used."""
    settings.KREO_PURGE_AFTER_DAYS = 30
    owner = UserFactory()
    project = project_services.project_create(actor=owner, name="Put aside")
    stored_file(project)
    old = timezone.now() - timedelta(days=31)
    Project.objects.filter(pk=project.pk).update(deleted_at=old)
    fresh = project_services.project_create(actor=owner, name="Put aside today")
    Project.objects.filter(pk=fresh.pk).update(deleted_at=timezone.now())
    ghost = UserFactory(email_verified_at=None, last_login=None)
    User.objects.filter(pk=ghost.pk).update(date_joined=old)
    active = UserFactory(email_verified_at=None, last_login=None)

    out = io.StringIO()
    call_command("privacy_purge", stdout=out)

    assert "projects_erased: 1" in out.getvalue()
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not ProjectKey.objects.filter(pk=project.pk).exists()
    assert Project.objects.filter(pk=fresh.pk).exists()
    assert not User.objects.filter(pk=ghost.pk).exists()
    assert User.objects.filter(pk=active.pk).exists()
    certificate = ErasureCertificate.objects.get(subject_id=str(project.pk))
    assert certificate.reason == "purge"


def test_purge_is_on_the_default_schedule():
    from kreo.celery import DEFAULT_SCHEDULE

    assert DEFAULT_SCHEDULE["privacy purge"][0] == "privacy.tasks.purge"
