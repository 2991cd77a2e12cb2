"""/metrics: OpenMetrics for a token holder or an allowed network only."""

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.factories import UserFactory
from monitoring import views

pytestmark = pytest.mark.django_db
TOKEN = "m" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def token(settings):
    settings.MONITORING_TOKEN = TOKEN
    return TOKEN


def _samples(text: str) -> dict:
    """(name, frozenset(labels)) -> value, from Prometheus text."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(client) -> dict:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    return _samples(response.content.decode())


def test_anonymous_scrape_is_refused_with_401(client, token):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.content.decode() == views.UNAUTHENTICATED
    assert b"kreo_" not in response.content


def test_wrong_token_is_refused_with_403(client, token):
    response = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
    assert response.status_code == 403
    assert b"kreo_" not in response.content


def test_no_token_configured_refuses_every_token(client, settings):
    """With MONITORING_TOKEN unset, an empty or any bearer token is refused."""
    settings.MONITORING_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code in (
        401,
        403,
    )
    assert client.get("/metrics", headers=AUTH).status_code == 403


def test_signed_in_staff_without_token_is_refused(client, token, otp_login):
    otp_login(client, UserFactory(is_staff=True, is_superuser=True))
    assert client.get("/metrics").status_code == 401


def test_allowed_network_scrapes_without_a_token(client, settings):
    """A scraper inside MONITORING_ALLOWED_CIDRS needs no token."""
    settings.MONITORING_ALLOWED_CIDRS = ["127.0.0.0/8"]
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 401


def test_spoofed_forwarded_for_does_not_enter_the_allow_list(client, settings):
    """Behind one trusted proxy only the address that proxy appended counts:
    a client outside the list writing an allowed address first is refused;
    with no trusted proxy the header is not read at all."""
    settings.MONITORING_ALLOWED_CIDRS = ["10.0.0.0/8"]
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    spoofed = client.get(
        "/metrics",
        REMOTE_ADDR="172.16.0.2",
        HTTP_X_FORWARDED_FOR="10.1.2.3, 198.51.100.9",
    )
    assert spoofed.status_code == 401
    genuine = client.get(
        "/metrics", REMOTE_ADDR="172.16.0.2", HTTP_X_FORWARDED_FOR="10.1.2.3"
    )
    assert genuine.status_code == 200
    settings.KREO_TRUSTED_PROXY_COUNT = 0
    direct = client.get(
        "/metrics", REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="10.1.2.3"
    )
    assert direct.status_code == 401


def test_scrape_counts_requests_by_view_and_status_and_sign_ins(
    client, token, settings
):
    """Requests show up by view name and status, and a failed sign-in by its
    outcome; the system's figures (seal lag, queue length) are present."""
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    before = _scrape(client)
    client.get("/accounts/login/")
    client.get("/no-such-page/")
    client.post(
        "/accounts/login/",
        {"username": UserFactory().email, "password": "not the password"},
    )
    after = _scrape(client)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("kreo_http_request_duration_seconds_count", view="accounts:login") == 2
    assert delta("kreo_http_responses_total", status="404") == 1
    assert delta("kreo_http_responses_total", status="200") >= 2
    assert delta("kreo_sign_ins_total", outcome="failure") == 1
    assert ("kreo_audit_seal_lag_seconds", frozenset()) in after
    assert ("kreo_celery_queue_length", frozenset({("queue", queue)})) in after


def test_queue_length_counts_waiting_tasks(client, token, settings):
    """A task sent while no worker consumes the queue is counted as waiting."""
    from kreo.celery import app

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    key = ("kreo_celery_queue_length", frozenset({("queue", queue)}))
    before = _scrape(client)[key]
    app.send_task("kreo.tasks.heartbeat", queue=queue)
    try:
        assert _scrape(client)[key] == before + 1
    finally:  # leave no task for a later test's worker to run
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)


def test_openmetrics_when_asked(client, token):
    """A scraper asking for OpenMetrics gets it, and it parses as such."""
    client.get("/accounts/login/")
    response = client.get(
        "/metrics", headers={**AUTH, "Accept": "application/openmetrics-text"}
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(text)}
    assert {"kreo_http_request_duration_seconds", "kreo_http_responses"} <= names


def test_429s_are_counted_by_view(client, token):
    """Spraying sign-ins from one IP meets the IP limit; each 429 is counted
    under the sign-in view and among the responses by status."""
    before = _scrape(client)
    statuses = [
        client.post(
            "/accounts/login/",
            {"username": f"victim{n}@example.test", "password": "Summer2026!!"},
        ).status_code
        for n in range(40)
    ]
    after = _scrape(client)
    limited = statuses.count(429)
    assert limited >= 1

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("kreo_http_throttled_total", view="accounts:login") == limited
    assert delta("kreo_http_responses_total", status="429") == limited
