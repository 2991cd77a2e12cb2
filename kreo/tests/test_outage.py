"""A database outage answers 503 with a message, never 500, and ends by itself."""

import pytest
from django.utils import timezone
from knox.models import AuthToken

from audit.models import AuditEvent
from audit.tasks import spool_drain
from kreo.outage import DATABASE_UNAVAILABLE
from kreo.testing.outage import database_down
from projects.models import Role
from projects.tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path):
    settings.AUDIT_SPOOL_DIR = tmp_path / "spool"
    return settings.AUDIT_SPOOL_DIR


@pytest.fixture
def member():
    return MembershipFactory(role=Role.EDITOR)


def test_a_signed_in_page_answers_503_in_the_layout_and_recovers(
    client, member, tmp_path
):
    """With a session cookie and the database out, a project page answers 503
    with Retry-After and the outage message in the site's layout (no
    traceback, no bare "Internal Server Error"); the same page answers 200
    as soon as the database is back, and the failed request's audit event is
    on the trail then, flagged as spooled, with the time it happened."""
    client.force_login(member.user)
    url = f"/projects/{member.project.pk}/"
    assert client.get(url).status_code == 200

    before = timezone.now()
    with database_down(tmp_path):
        response = client.get(url)
    after = timezone.now()

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    page = response.content.decode()
    assert DATABASE_UNAVAILABLE in page
    assert 'class="brand"' in page  # the site's layout
    assert "Traceback" not in page and "Internal Server Error" not in page
    assert not AuditEvent.objects.filter(
        correlation_id=response["X-Correlation-ID"]
    ).exists()

    assert client.get(url).status_code == 200
    event = AuditEvent.objects.get(correlation_id=response["X-Correlation-ID"])
    assert event.spooled
    assert event.status_code == 503
    assert event.event_type == "system.error"
    assert event.path == url
    assert before <= event.occurred_at <= after


def test_the_api_answers_json_503(client, member, tmp_path):
    """An API call with a token answers 503 JSON with the message and
    Retry-After while the database is out, and 200 when it is back."""
    _, token = AuthToken.objects.create(user=member.user)
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    with database_down(tmp_path):
        response = client.get("/api/projects/", **auth)
        posted = client.post(
            "/api/projects/", {"name": "x"}, content_type="application/json", **auth
        )
    for answer in (response, posted):
        assert answer.status_code == 503
        assert answer.json() == {"detail": DATABASE_UNAVAILABLE}
        assert answer["Retry-After"] == "30"
    assert client.get("/api/projects/", **auth).status_code == 200


def test_sign_in_answers_503_not_500(client, member, tmp_path):
    """Posting the sign-in form while the database is out says so (503)."""
    with database_down(tmp_path):
        response = client.post(
            "/accounts/login/",
            {"username": member.user.email, "password": "whatever it is"},
        )
    assert response.status_code == 503
    assert DATABASE_UNAVAILABLE in response.content.decode()


def test_readyz_reports_the_database_and_the_audit_spool(client, tmp_path):
    """/readyz answers 503 naming the database while it is out, then 200 with
    the failed probe's audit event waiting in the spool until the drain task
    writes it to the trail."""
    with database_down(tmp_path):
        down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == "unavailable"
    up = client.get("/readyz")
    assert up.status_code == 200
    assert up.json()["checks"]["database"] == "ok"
    assert up.json()["checks"]["audit_spool"]["state"] == "pending"
    assert up.json()["checks"]["audit_spool"]["pending_bytes"] > 0

    assert spool_drain() == 1
    assert client.get("/readyz").json()["checks"]["audit_spool"]["state"] == "empty"
    event = AuditEvent.objects.get(correlation_id=down["X-Correlation-ID"])
    assert (event.path, event.status_code, event.spooled) == ("/readyz", 503, True)


def _signed_in_request(rf, path):
    """A request as the session and auth middleware leave it: the user is
    loaded from the session store (the database) on first use."""
    from django.contrib.auth import get_user
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils.functional import SimpleLazyObject

    request = rf.get(path)
    request.session = SessionStore(session_key="k" * 32)
    request.user = SimpleLazyObject(lambda: get_user(request))
    return request


def test_the_500_page_renders_with_the_database_down(rf, tmp_path):
    """handler500 renders the site's 500 page for a signed-in request without
    touching the session store; a database error that reaches it is a 503."""
    from django.db import connection

    from kreo.views import ERROR_TEXTS, server_error

    request = _signed_in_request(rf, "/projects/")
    with database_down(tmp_path):
        try:
            raise ValueError("a bug")
        except ValueError:
            crashed = server_error(request)
        try:
            connection.ensure_connection()
        except Exception:
            unavailable = server_error(request)
    assert crashed.status_code == 500
    assert ERROR_TEXTS[500] in crashed.content.decode()
    assert 'class="brand"' in crashed.content.decode()
    assert unavailable.status_code == 503
    assert unavailable["Retry-After"] == "30"
    assert DATABASE_UNAVAILABLE in unavailable.content.decode()


def test_production_keeps_connections_but_lets_a_broken_one_go():
    """Production reuses connections for a minute, checks one before reuse
    (a database restart does not leave workers on dead connections), gives
    up connecting after 5 s, and lets /readyz answer over plain HTTP."""
    import json

    from kreo.tests.test_settings import PRODUCTION_ENV, manage

    code = (
        "from django.conf import settings as s; import json;"
        "d = s.DATABASES['default'];"
        "print(json.dumps([d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'],"
        " d['OPTIONS'].get('connect_timeout'), s.SECURE_REDIRECT_EXEMPT]))"
    )
    done = manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert done.returncode == 0, done.stderr
    age, checks, timeout, exempt = json.loads(done.stdout)
    assert (age, checks, timeout) == (60, True, 5)
    assert r"^readyz$" in exempt
