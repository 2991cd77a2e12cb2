import pytest
from django.urls import reverse

from accounts.tests.factories import PASSWORD, UserFactory
from audit import chain
from audit.models import AuditEvent, Outcome
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def test_record_carries_context_and_content_hash(rf):
    """An event recorded for a request names actor, source, destination and
    release, and its stored content hash matches its columns."""
    user = UserFactory()
    request = rf.get(
        "/projects/", HTTP_USER_AGENT="pytest-agent", REMOTE_ADDR="203.0.113.7"
    )
    request.user = user
    event = audit_record(
        event_type="file.download",
        request=request,
        target_type="projects.projectfile",
        target_id="abc",
        details={"size": 3},
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_id == user.pk
    assert stored.actor_label == user.email
    assert stored.source_ip == "203.0.113.7"
    assert stored.user_agent == "pytest-agent"
    assert (stored.method, stored.path) == ("GET", "/projects/")
    assert stored.server_host
    assert stored.release
    assert stored.content_hash == chain.content_hash(chain.event_values(stored))


def test_failed_login_label_kept_without_account():
    """An event about someone with no account keeps the label it was given."""
    event = audit_record(
        event_type="auth.login.failure",
        outcome=Outcome.FAILURE,
        actor_label="nobody@example.com",
        error_code="invalid_credentials",
        error_description="Wrong e-mail or password.",
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_id is None
    assert stored.actor_label == "nobody@example.com"
    assert stored.error_code == "invalid_credentials"


def test_middleware_records_protected_page_with_correlation_id(client):
    """A project page visit is recorded with the session hash and the correlation
    id returned to the client; the raw session key appears nowhere."""
    user = UserFactory()
    client.login(email=user.email, password=PASSWORD)
    response = client.get(reverse("projects:list"))
    cid = response["X-Correlation-ID"]
    event = AuditEvent.objects.get(correlation_id=cid, event_type="page.view")
    assert event.actor_id == user.pk
    assert event.status_code == response.status_code
    session_key = client.session.session_key
    assert event.session_hash and session_key not in event.session_hash
    assert session_key not in str(event.details)


def test_middleware_records_denied_and_not_found(client):
    """Anonymous 404s outside protected areas are still recorded as failures."""
    response = client.get("/no-such-page/")
    event = AuditEvent.objects.get(correlation_id=response["X-Correlation-ID"])
    assert response.status_code == 404
    assert event.event_type == "http.client_error"
    assert event.outcome == Outcome.FAILURE
    assert event.error_code == "http.404"


def test_deleting_user_keeps_events():
    """Deleting a user leaves their events untouched, label included."""
    user = UserFactory()
    event = audit_record(event_type="project.create", actor=user)
    user.delete()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_label == event.actor_label
    assert stored.content_hash == chain.content_hash(chain.event_values(stored))


def test_requests_refused_by_outer_middleware_are_recorded():
    """A forged Host header and a POST without CSRF token, refused before any
    view runs, are still recorded with status and source."""
    from django.test import Client

    bad_host = Client(HTTP_HOST="evil.example")
    response = bad_host.get("/projects/")
    event = AuditEvent.objects.get(correlation_id=response["X-Correlation-ID"])
    assert (event.status_code, event.outcome) == (400, Outcome.FAILURE)
    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"username": "a@x.test"})
    assert response.status_code == 403
    event = AuditEvent.objects.get(correlation_id=response["X-Correlation-ID"])
    assert (event.event_type, event.outcome) == ("http.denied", Outcome.DENIED)
    assert event.error_code == "http.403"


@pytest.mark.django_db(transaction=True)
def test_an_event_of_its_own_does_not_wait_for_the_wal_flush_one_in_a_transaction_does(
    settings,
):
    """Outside a business transaction the event's commit skips the fsync wait
    (PostgreSQL groups the flushes); inside one it commits with the change."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    with CaptureQueriesContext(connection) as alone:
        event = audit_record(event_type="file.download")
    sql = [q["sql"] for q in alone.captured_queries]
    assert "SET LOCAL synchronous_commit TO OFF" in sql
    assert event.pk and AuditEvent.objects.filter(pk=event.pk).exists()
    with CaptureQueriesContext(connection) as inside, transaction.atomic():
        audit_record(event_type="project.update")
    assert not any("synchronous_commit" in q["sql"] for q in inside.captured_queries)
    settings.AUDIT_ASYNC_COMMIT = False
    with CaptureQueriesContext(connection) as off:
        audit_record(event_type="file.download")
    assert not any("synchronous_commit" in q["sql"] for q in off.captured_queries)
