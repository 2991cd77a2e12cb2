"""Probes over HTTP against the running app; states with hysteresis."""

import socket
import threading

import pytest

from audit.models import AuditEvent
from status import probes, services
from status.models import ComponentState, ProbeResult, Sample

OK, SLOW, FAIL = ProbeResult.OK, ProbeResult.SLOW, ProbeResult.FAIL


@pytest.mark.parametrize(
    ("current", "results", "expected"),
    [
        # One bad probe moves nothing.
        (ComponentState.OPERATIONAL, [FAIL, OK, OK], ComponentState.OPERATIONAL),
        (ComponentState.OPERATIONAL, [SLOW, OK], ComponentState.OPERATIONAL),
        # Two in a row: degraded; three failures: partial; five: major.
        (ComponentState.OPERATIONAL, [FAIL, FAIL, OK], ComponentState.DEGRADED),
        (ComponentState.OPERATIONAL, [SLOW, SLOW], ComponentState.DEGRADED),
        (ComponentState.DEGRADED, [FAIL, FAIL, FAIL, OK], ComponentState.PARTIAL),
        (ComponentState.PARTIAL, [FAIL] * 5, ComponentState.MAJOR),
        # One good probe does not bring it back; two do.
        (ComponentState.MAJOR, [OK, FAIL, FAIL], ComponentState.MAJOR),
        (ComponentState.MAJOR, [OK, OK, FAIL], ComponentState.OPERATIONAL),
    ],
)
def test_state_follows_samples_with_hysteresis(current, results, expected):
    """A component changes state only on a run of probes, never on one."""
    assert services.state_next(current, results) == expected


def test_a_flapping_probe_never_leaves_operational(components):
    """Alternating good and bad probes keep the component operational."""
    web = components["web"]
    for result in [FAIL, OK, FAIL, OK, FAIL, OK]:
        services.sample_record(component=web, outcome=probes.Outcome(result, 5, ""))
    web.refresh_from_db()
    assert web.state == ComponentState.OPERATIONAL
    assert Sample.objects.filter(component=web).count() == 6


def test_a_run_of_failures_degrades_then_outage_then_recovers(components):
    """Failures in a row: degraded, partial, major; two good probes: back, and
    each move is on the audit trail."""
    storage = components["storage"]
    seen = []
    for result in [FAIL] * 5 + [OK, OK]:
        services.sample_record(
            component=storage, outcome=probes.Outcome(result, 5, "storage: down")
        )
        storage.refresh_from_db()
        seen.append(storage.state)
    assert seen == [
        ComponentState.OPERATIONAL,
        ComponentState.DEGRADED,
        ComponentState.PARTIAL,
        ComponentState.PARTIAL,
        ComponentState.MAJOR,
        ComponentState.MAJOR,
        ComponentState.OPERATIONAL,
    ]
    moves = AuditEvent.objects.filter(event_type="status.component.state")
    assert moves.count() == 4


@pytest.mark.django_db(transaction=True)
def test_http_probes_reach_the_running_app(live_server, settings, components):
    """Web, API and sign-in answer over HTTP as a client sees them."""
    settings.STATUS_PROBE_BASE_URL = live_server.url
    # Reaching the app is the point here, not its speed on a loaded CI machine.
    settings.STATUS_PROBE_SLOW_MS = 60_000
    settings.STATUS_PROBE_TIMEOUT_SECONDS = 60
    checks = probes.checks()
    for slug in ("web", "api", "signin"):
        outcome = probes.run(checks[slug])
        assert outcome.result == OK, (slug, outcome.detail)


def test_a_probe_that_times_out_is_a_failure(settings):
    """A server that accepts and never answers: a failed sample, not an error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    settings.STATUS_PROBE_BASE_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings.STATUS_PROBE_TIMEOUT_SECONDS = 0.5
    try:
        outcome = probes.run(probes.checks()["web"])
    finally:
        listener.close()
    assert outcome.result == FAIL
    assert "timeout" in outcome.detail.lower()


def test_a_refused_connection_is_a_failure(settings):
    """Nothing listening: the web component's probe fails with a reason."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.STATUS_PROBE_BASE_URL = f"http://127.0.0.1:{port}"
    outcome = probes.run(probes.checks()["web"])
    assert outcome.result == FAIL
    assert outcome.detail.startswith("GET /healthz")


@pytest.mark.django_db(transaction=True)
def test_the_probe_task_records_a_sample_per_component(live_server, settings):
    """The beat task probes every component and stores one sample each."""
    from status.tasks import probe

    settings.STATUS_PROBE_BASE_URL = live_server.url
    probe()
    assert Sample.objects.count() == len(probes.COMPONENTS)
    by_slug = dict(Sample.objects.values_list("component__slug", "result"))
    assert by_slug["web"] == OK
    assert by_slug["storage"] == OK


def test_the_schedule_probes_every_minute_and_publishes():
    """The one schedule definition names the probe and the static copy."""
    from django.conf import settings

    from kreo.celery import DEFAULT_SCHEDULE

    assert DEFAULT_SCHEDULE["status probe"][0] == "status.tasks.probe"
    assert settings.STATUS_PROBE_SECONDS == 60
    assert DEFAULT_SCHEDULE["status publish"][0] == "status.tasks.publish"
    assert settings.STATUS_PUBLISH_SECONDS == 300
