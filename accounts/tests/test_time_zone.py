"""Times on the pages follow the zone a user chose; UTC for everyone else."""

import re

import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from accounts.views import TIME_ZONE_SET, TIME_ZONE_UNKNOWN
from audit.models import AuditEvent
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def _history_times(client):
    page = client.get(reverse("accounts:security")).content.decode()
    return re.findall(r"<tr><td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)</td>", page)


def test_a_chosen_zone_moves_the_times_shown_and_is_audited(client):
    user = UserFactory()
    client.force_login(user)
    audit_record(event_type="auth.login.success", actor=user)
    (utc,) = _history_times(client)
    response = client.post(reverse("accounts:time-zone"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.time_zone == "Asia/Tokyo"
    page = client.get(reverse("accounts:security")).content.decode()
    assert TIME_ZONE_SET.format(zone="Asia/Tokyo") in page
    assert '<option value="Asia/Tokyo" selected>' in page
    (tokyo,) = _history_times(client)
    # Tokyo is UTC+9 all year: the same moment, nine hours on.
    assert int(tokyo[11:13]) == (int(utc[11:13]) + 9) % 24
    event = AuditEvent.objects.get(event_type="account.time_zone.changed")
    assert event.details == {"from": "UTC", "to": "Asia/Tokyo"}


def test_an_unknown_zone_is_refused_with_a_message(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(
        reverse("accounts:time-zone"), {"time_zone": "Mars/Olympus"}, follow=True
    )
    assert response.status_code == 200
    assert TIME_ZONE_UNKNOWN in response.content.decode()
    user.refresh_from_db()
    assert user.time_zone == "UTC"


def test_other_users_still_see_utc(client):
    tokyo = UserFactory(time_zone="Asia/Tokyo")
    other = UserFactory()
    audit_record(event_type="auth.login.success", actor=other)
    client.force_login(tokyo)
    client.get(reverse("accounts:security"))
    client.force_login(other)
    times = _history_times(client)
    event = AuditEvent.objects.get(actor_id=other.pk)
    assert times == [event.occurred_at.strftime("%Y-%m-%d %H:%M:%S")]
