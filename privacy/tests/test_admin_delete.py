"""Staff delete an account in the admin by the same rule as the owner would."""

import pytest
from django.urls import reverse

from accounts.models import User
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from projects import services as project_services
from projects.models import Project

pytestmark = pytest.mark.django_db


def test_admin_deletion_puts_sole_owned_projects_aside_and_is_audited(
    client, otp_login
):
    """Deleting from the admin hides the user's own projects and keeps the trail."""
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    leaver = UserFactory(email="leaver@example.test")
    solo = project_services.project_create(actor=leaver, name="Only mine")
    otp_login(client, admin_user)
    url = reverse("admin:accounts_user_delete", args=[leaver.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(email="leaver@example.test").exists()
    assert Project.objects.get(pk=solo.pk).deleted_at is not None
    event = AuditEvent.objects.get(event_type="account.delete")
    assert event.actor_id == admin_user.pk
    assert event.details["projects_put_aside"] == [str(solo.pk)]
    assert event.details["by"] == "staff"
    # The trail still names the leaver on their earlier events.
    assert AuditEvent.objects.filter(
        event_type="project.create", actor_label="leaver@example.test"
    ).exists()
