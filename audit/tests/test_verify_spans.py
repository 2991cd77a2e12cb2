"""audit_verify's hot store checked in spans side by side (forked processes,
each with its own connection) finds exactly what one process finds: every
tampering below, including those a span can only judge knowing the events
before it (a back-dated event, a missing MAC, just after a cut)."""

from datetime import timedelta

import pytest

from audit import chain, keys
from audit.models import AuditEvent, AuditSeal
from audit.services import audit_seal
from audit.tests.conftest import make_old_events
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def trail(settings, superuser_sql):
    """60 events in 6 seals of 10: three spans of two seals each."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    settings.AUDIT_VERIFY_SPAN_MIN_EVENTS = 10
    make_old_events(60, days_ago=1)
    assert audit_seal(batch_size=10) == 60
    seals = list(AuditSeal.objects.order_by("seq"))
    assert [s.count for s in seals] == [10] * 6
    return seals


def _both():
    """The report of one process, and of three; the three must have run."""
    one = audit_verify(archives=False, workers=1)
    three = audit_verify(archives=False, workers=3)
    assert (one.spans, three.spans) == (1, 3)
    counts = ("events", "seals", "unsealed", "spooled", "keyed", "legacy")
    assert [getattr(three, c) for c in counts] == [getattr(one, c) for c in counts]
    assert [str(p) for p in three.problems] == [str(p) for p in one.problems]
    return one


def _resign(pk: int, superuser_sql, **changes) -> None:
    """Rewrite event ``pk`` with ``changes`` and a fresh, valid hash and MAC
    (an insider holding the event key), around the append-only trigger."""
    event = AuditEvent.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(event, name, value)
    chain.sign_event(event, *keys.event_key_current())
    superuser_sql(
        "UPDATE audit_auditevent SET occurred_at = %s, content_hash = %s, "
        "mac = %s WHERE id = %s",
        [event.occurred_at, event.content_hash, event.mac, pk],
        bypass=True,
    )


def test_intact_trail_in_three_spans(trail):
    report = _both()
    assert report.ok, report.problems
    assert report.events == 60


def test_modified_row_in_the_last_span(trail, superuser_sql):
    pk = trail[5].first_id + 3
    superuser_sql(
        "UPDATE audit_auditevent SET actor_label = 'mallory' WHERE id = %s",
        [pk],
        bypass=True,
    )
    report = _both()
    assert [p.event_id for p in report.problems] == [pk, pk]


def test_back_dated_event_just_after_a_cut(trail, superuser_sql):
    """Dated a day before the events of the span before it: only a check
    that knows them sees it; the span is checked again from the true state."""
    pk = trail[2].first_id  # the first event of the second span
    event = AuditEvent.objects.get(pk=pk)
    _resign(pk, superuser_sql, occurred_at=event.occurred_at - timedelta(days=1))
    report = _both()
    kinds = [(p.kind, p.event_id) for p in report.problems]
    assert ("inserted", pk) in kinds
    assert any("back-dated" in p.message for p in report.problems)


def test_event_without_mac_just_after_a_cut(trail, superuser_sql):
    """Made a legacy event (no uid, no MAC) after keyed ones: the span alone
    would count it legacy; the trail says it lacks its MAC."""
    pk = trail[4].first_id  # the first event of the third span
    event = AuditEvent.objects.get(pk=pk)
    event.event_uid, event.mac_key_id, event.mac = None, "", ""
    legacy_hash = chain.content_hash(chain.event_values(event))
    superuser_sql(
        "UPDATE audit_auditevent SET event_uid = NULL, mac_key_id = '', mac = '', "
        "content_hash = %s WHERE id = %s",
        [legacy_hash, pk],
        bypass=True,
    )
    report = _both()
    assert f"forged: event {pk}: file.download {chain.NO_MAC}" in [
        str(p) for p in report.problems
    ]
    assert report.legacy == 0


def test_deleted_rows_across_spans(trail, superuser_sql):
    gone = [trail[1].last_id, trail[3].first_id]
    superuser_sql(
        "DELETE FROM audit_auditevent WHERE id = ANY(%s)", [gone], bypass=True
    )
    report = _both()
    assert [(p.kind, p.event_id) for p in report.problems] == [
        ("deleted", gone[0]),
        ("deleted", gone[1]),
    ]


class _Hooked:
    """Something holding a connection, as kombu's pools do."""


def test_children_run_no_multiprocessing_after_fork_hook(trail, tmp_path):
    """kombu registers a multiprocessing after-fork hook that closes the
    broker connections a child inherited, over the parent's own sockets
    (a child hung in it, reading the parent's Redis socket, in the full
    suite). The span children are plain forks: no such hook runs."""
    import multiprocessing.util

    marker = tmp_path / "hook-ran"
    hooked = _Hooked()
    multiprocessing.util.register_after_fork(hooked, lambda _: marker.touch())
    report = audit_verify(archives=False, workers=3)
    assert report.spans == 3
    assert report.ok, report.problems
    assert not marker.exists()
