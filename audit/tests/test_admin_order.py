"""The audit trail in the admin opens on the newest events, actor shown."""

import re

import pytest
from django.urls import reverse

from audit.services import audit_record
from audit.tests.test_admin import staff_client

pytestmark = pytest.mark.django_db


def test_the_newest_event_is_the_first_row_with_its_actor(client):
    """An auditor opening the trail sees the latest event first, and who did it."""
    staff_client(client, auditor=True)
    audit_record(event_type="file.download", actor_label="first@x.test")
    audit_record(event_type="file.upload", actor_label="latest@x.test")
    page = client.get(reverse("admin:audit_auditevent_changelist"))
    assert page.status_code == 200
    table = page.content.decode().split('id="result_list"', 1)[1].split("</table>")[0]
    rows = re.findall(r"<tr[^>]*>.*?</tr>", table, re.S)[1:]  # after the header
    assert "latest@x.test" in rows[0] and "file.upload" in rows[0]
    assert any("first@x.test" in row for row in rows[1:])
