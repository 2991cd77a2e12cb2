"""A real outage: the rate-limit Redis stops, the probes see it, the page
follows with no one touching the admin, and recovers."""

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from status import selectors, services
from status.models import Component, ComponentState
from status.tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_cache(settings, own_redis, live_server):
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {
            "BACKEND": "kreo.cache.RedisCounterCache",
            "LOCATION": f"{own_redis.url}/0",
        },
    }
    settings.STATUS_PROBE_BASE_URL = live_server.url
    return own_redis


def _rounds(n: int) -> list[str]:
    states = []
    for _ in range(n):
        services.probe_all()
        states.append(Component.objects.get(slug="signin").state)
    return states


def test_redis_down_degrades_then_outage_then_recovers(redis_cache):
    """Redis stopped: Sign-in degraded, then partial outage; started again:
    operational after two good rounds; the day's uptime shows the loss."""
    assert _rounds(2) == [ComponentState.OPERATIONAL] * 2
    redis_cache.kill()
    assert _rounds(3) == [
        ComponentState.OPERATIONAL,
        ComponentState.DEGRADED,
        ComponentState.PARTIAL,
    ]
    redis_cache.start()
    assert _rounds(2) == [ComponentState.PARTIAL, ComponentState.OPERATIONAL]
    signin = Component.objects.get(slug="signin")
    today = selectors.uptime(signin).days[-1]
    assert today.total == 7 and today.up == 4
    assert today.worst == ComponentState.PARTIAL
    assert selectors.uptime(signin).percent == pytest.approx(57.14)
    moves = AuditEvent.objects.filter(
        event_type="status.component.state", target_id=str(signin.pk)
    )
    assert [m.details["to"] for m in moves.order_by("id")] == [
        ComponentState.DEGRADED,
        ComponentState.PARTIAL,
        ComponentState.OPERATIONAL,
    ]
    # Only what depends on the cache moved.
    assert Component.objects.get(slug="storage").state == ComponentState.OPERATIONAL


def test_maintenance_over_the_outage_keeps_uptime_whole(redis_cache):
    """The same outage inside a maintenance window: under maintenance, and
    the day's uptime stays at 100%."""
    services.components_ensure()
    signin = Component.objects.get(slug="signin")
    _rounds(2)
    factories.maintenance(components=[signin], starts=timezone.now())
    redis_cache.kill()
    assert _rounds(3)[-1] == ComponentState.MAINTENANCE
    assert selectors.uptime(signin).percent == 100.0
