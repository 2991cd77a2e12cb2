"""The verifier reads the hot store with its values made ready in SQL (the
time as ISO text, ids as text) and encodes each row in one call: the bytes
must be those the event was signed over, for every kind of value."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from audit import chain, keys
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db(transaction=True)

AWKWARD = {
    "nested": {"b": [1, 2.5, None, True], "a": 'é\u2028\x7f"\\/'},
    "emoji": "\U0001f9f1",
    "big": 10**20,
    "tiny": 1e-7,
    "empty": {},
}


def test_every_kind_of_value_verifies(settings):
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    # First (the others come later), on the second exactly: the ISO text
    # still has ".000000", as Python writes it.
    event = AuditEvent(
        occurred_at=datetime.now(UTC).replace(microsecond=0),
        event_type="file.upload",
        outcome="success",
        source_ip="2001:db8::1",
        source_port=65535,
        details={"n": 0},
    )
    chain.sign_event(event, *keys.event_key_current())
    event.save()
    user = get_user_model().objects.create_user(email="v@example.test", password="x")
    audit_record(
        event_type="file.download",
        actor=user,
        actor_label="Zoë \u202e\t<tab>",
        error_description="line\nbreak\r\x1f",
        status_code=404,
        details=AWKWARD,
    )
    audit_record(event_type="auth.login.failure", details={})
    assert audit_seal() >= 3
    report = audit_verify(archives=False, workers=1)
    assert report.ok, report.problems
    assert report.keyed == report.events >= 3


@pytest.mark.parametrize("spooled", [False, True])
@pytest.mark.parametrize("keyed", [False, True])
def test_row_bytes_are_the_canonical_bytes(keyed, spooled):
    """``canonical_row`` over JSON-ready values == the reference encoding."""
    values = {
        "occurred_at": datetime(2026, 12, 3, 1, 2, 3, 4, tzinfo=UTC),
        "event_type": "x.y",
        "outcome": "success",
        "actor_id": 42,
        "actor_label": "Zoë",
        "source_ip": None,
        "source_port": 1,
        "status_code": None,
        "details": AWKWARD,
        "event_uid": chain.uuid7() if keyed else None,
        "mac_key_id": "k1" if keyed else "",
        "spooled": spooled,
    }
    row = {name: values.get(name, "") for name in chain.KEYED_NAMES}
    row |= {
        "occurred_at": chain.iso(values["occurred_at"]),
        "actor_id": "42",
        "event_uid": str(values["event_uid"]) if keyed else None,
        "source_ip": None,
        "source_port": 1,
        "status_code": None,
    }
    full = {name: values.get(name, "") for name in chain.CONTENT_FIELDS}
    full |= {k: values[k] for k in ("event_uid", "mac_key_id", "spooled")}
    assert chain.canonical_row(row, spooled) == chain.canonical_reference(full)
