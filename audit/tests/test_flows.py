"""Events of real requests, field-level changes, export and scheduled jobs."""

import csv
import io
import json

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit import tasks
from audit.models import AuditEvent, AuditReview, AuditSeal
from audit.services import audit_record
from projects.models import Role
from projects.tests.factories import MembershipFactory, stored_file

pytestmark = pytest.mark.django_db


def test_download_events_share_the_request_correlation_id(client):
    """A download is recorded once, by the service's file.download event, with
    the request's correlation id, the actor, source, session and target."""
    member = MembershipFactory(role=Role.VIEWER)
    item = stored_file(member.project)
    client.force_login(member.user)
    response = client.get(
        reverse("projects:file-download", args=[member.project.pk, item.pk]),
        HTTP_USER_AGENT="Mozilla/5.0 test",
    )
    assert response.status_code == 200
    cid = response["X-Correlation-ID"]
    events = {e.event_type: e for e in AuditEvent.objects.filter(correlation_id=cid)}
    assert set(events) == {"file.download"}
    download = events["file.download"]
    assert download.actor_id == member.user.pk
    assert download.target_id == str(item.pk)
    assert download.user_agent == "Mozilla/5.0 test"
    assert download.source_ip == "127.0.0.1"
    assert download.session_hash != ""
    page = client.get(reverse("projects:detail", args=[member.project.pk]))
    view = AuditEvent.objects.get(correlation_id=page["X-Correlation-ID"])
    assert view.event_type == "page.view"
    assert view.session_hash == download.session_hash


def test_refused_request_is_recorded_with_status(client):
    """A non-member asking for a project page is recorded as a denied or
    failed request with its status, whatever the service recorded."""
    member = MembershipFactory(role=Role.VIEWER)
    client.force_login(UserFactory())
    response = client.get(reverse("projects:detail", args=[member.project.pk]))
    assert response.status_code in (403, 404)
    event = AuditEvent.objects.get(
        correlation_id=response["X-Correlation-ID"], status_code=response.status_code
    )
    assert event.event_type == "page.view"
    assert event.outcome in ("denied", "failure")
    assert event.error_code == f"http.{response.status_code}"


def test_field_changes_tied_to_correlation_id(client):
    """Editing a project leaves a field-level change with the request's id."""
    member = MembershipFactory(role=Role.OWNER)
    client.force_login(member.user)
    response = client.post(
        reverse("projects:edit", args=[member.project.pk]),
        {"name": "Renamed estimate", "description": ""},
    )
    assert response.status_code == 302
    cid = response["X-Correlation-ID"]
    entry = LogEntry.objects.get(cid=cid, object_pk=str(member.project.pk))
    assert entry.changes_dict["name"][1] == "Renamed estimate"
    assert entry.actor_id == member.user.pk
    assert AuditEvent.objects.filter(correlation_id=cid, event_type="project.update")


def test_password_change_is_masked_in_field_changes():
    user = UserFactory()
    user.set_password("a new long passphrase 42")
    user.save()
    entry = LogEntry.objects.filter(object_pk=str(user.pk)).latest("timestamp")
    assert entry.changes_dict["password"][1] == "[masked]"
    assert "argon2" not in json.dumps(entry.changes_dict)


def test_export_filters_and_records_itself(tmp_path):
    """audit_export writes matching events and records audit.export."""
    audit_record(event_type="auth.login.failure", outcome="failure", actor_label="=1+1")
    audit_record(event_type="auth.login.success", actor_label="b@x.test")
    audit_record(event_type="file.download", actor_label="b@x.test")
    out = tmp_path / "events.csv"
    call_command(
        "audit_export",
        "--type",
        "auth.*",
        "--format",
        "csv",
        "--output",
        str(out),
        stderr=io.StringIO(),
    )
    rows = list(csv.DictReader(out.open()))
    assert [r["event_type"] for r in rows] == [
        "auth.login.failure",
        "auth.login.success",
    ]
    assert rows[0]["actor_label"] == "'=1+1"
    export = AuditEvent.objects.get(event_type="audit.export")
    assert export.details["count"] == 2
    assert export.details["filters"]["event_type"] == "auth.*"


def test_export_jsonl_by_user_to_stdout():
    audit_record(event_type="file.download", actor_label="b@x.test")
    audit_record(event_type="file.download", actor_label="c@x.test")
    out = io.StringIO()
    call_command("audit_export", "--user", "B@x.test", stdout=out, stderr=io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["actor_label"] for line in lines] == ["b@x.test"]


def test_export_rejects_bad_input():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Not an IP address"):
        call_command("audit_export", "--ip", "999.1.1.1", stdout=io.StringIO())


def test_scheduled_jobs_seal_and_open_reviews(settings):
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    audit_record(event_type="system.error", outcome="error")
    assert tasks.seal() == 1
    assert AuditSeal.objects.count() == 1
    assert tasks.review() is not None
    assert tasks.review() is None  # the next period has not ended
    assert AuditReview.objects.get().notable_count == 1
