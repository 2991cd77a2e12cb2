"""Staff write incidents in the admin; each update is posted through the
service (audited, notified once after the commit)."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from kreo.permissions import ADMIN_GROUP
from status.models import Incident, IncidentStatus, Subscriber

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, otp_login):
    user = UserFactory(is_staff=True, email="staff@example.test")
    user.groups.add(Group.objects.get(name=ADMIN_GROUP))
    otp_login(client, user)
    return user


def _form(components, *, title, status, body, existing=0):
    return {
        "title": title,
        "impact": "major",
        "components": [components["api"].pk],
        "created_at_0": "2026-12-01",
        "created_at_1": "10:00:00",
        "updates-TOTAL_FORMS": "1",
        "updates-INITIAL_FORMS": "0",
        "updates-MIN_NUM_FORMS": "0",
        "updates-MAX_NUM_FORMS": "1000",
        "updates-0-status": status,
        "updates-0-body": body,
    }


def test_admin_group_posts_incident_and_updates(
    client, staff, components, smtp, mail_now
):
    """An Admin-group member opens an incident with its first update, then
    resolves it; subscribers get each update once; the trail names the staff."""
    Subscriber.objects.create(
        kind="email", email="sub@example.com", confirmed_at="2026-01-01T00:00Z"
    )
    add = reverse("admin:status_incident_add")
    assert client.get(add).status_code == 200
    with mail_now():
        response = client.post(
            add,
            _form(
                components,
                title="API errors",
                status=IncidentStatus.INVESTIGATING,
                body="Looking into <it>.",
            ),
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    incident = Incident.objects.get()
    assert incident.status == IncidentStatus.INVESTIGATING
    change = reverse("admin:status_incident_change", args=[incident.pk])
    with mail_now():
        response = client.post(
            change,
            {
                **_form(
                    components,
                    title="API errors",
                    status=IncidentStatus.RESOLVED,
                    body="Fixed.",
                ),
            },
        )
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_at
    assert incident.updates.count() == 2
    messages = smtp.wait_for(2)
    assert len(messages) == 2
    events = AuditEvent.objects.filter(event_type="status.incident.update")
    assert events.count() == 2
    assert {e.actor_id for e in events} == {staff.pk}
    page = client.get(incident.get_absolute_url()).content.decode()
    assert "Looking into &lt;it&gt;." in page


def test_components_cannot_be_added_or_deleted_in_the_admin(client, staff):
    """The six components come from the probes: no add, no delete."""
    assert client.get(reverse("admin:status_component_add")).status_code == 403
