"""Alerts reach people: one mail and one signed webhook per new alert, a
webhook that fails is retried then given up on (audited); staff acknowledge
and resolve alerts in the admin (audited); /metrics counts them."""

import json

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from audit.services import audit_record
from kreo.permissions import ADMIN_GROUP
from monitoring import notify, services
from monitoring.models import Alert, AlertState

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:monitoring_alert_changelist"


def _brute_force(client, email="victim@example.test", times=10):
    for _ in range(times):
        client.post(
            reverse("accounts:login"),
            {"username": email, "password": "wrong"},
            REMOTE_ADDR="203.0.113.7",
        )


def test_a_new_alert_is_mailed_and_posted_once(
    client, rules_now, smtp, webhook, mail_now
):
    """The brute force raises one alert: the SOC mailbox gets one mail and the
    webhook one signed Slack-style message; the attack going on adds to the
    alert and sends nothing more."""
    UserFactory(email="victim@example.test")
    _brute_force(client)
    with mail_now():
        services.rules_run()
    [mail] = smtp.wait_for(1)
    assert [a.addr_spec for a in mail["To"].addresses] == ["soc@example.test"]
    assert mail["Subject"].startswith("[Kreo alert] HIGH: Brute force on victim@")
    alert = Alert.objects.get()
    assert f"/admin/monitoring/alert/{alert.pk}/change/" in smtp.body(mail)
    [message] = webhook.verified()
    assert "Brute force on victim@example.test" in message["text"]
    assert f"alert #{alert.pk}" in message["text"]

    _brute_force(client, times=5)
    with mail_now():
        services.rules_run()
    assert Alert.objects.get().count == 6
    assert len(smtp.messages) == 1
    assert len(webhook.requests) == 1


def test_a_forged_signature_does_not_verify(webhook):
    """The signature binds the body and the timestamp: a changed body or a
    replayed signature with another timestamp fails the receiver's check."""
    body = json.dumps({"text": "hello"}).encode()
    good = notify.sign(webhook_secret := "k" * 32, "1700000000", body)
    assert good == notify.sign(webhook_secret, "1700000000", body)
    assert good != notify.sign(webhook_secret, "1700000000", body + b" ")
    assert good != notify.sign(webhook_secret, "1700000001", body)
    assert good != notify.sign("x" * 32, "1700000000", body)


def test_mail_goes_to_the_admin_group_when_no_address_is_set(
    client, rules_now, smtp, mail_now
):
    rules_now.MONITORING_ALERT_EMAILS = []
    admin = UserFactory(email="admin@example.test", is_staff=True)
    admin.groups.add(Group.objects.get(name=ADMIN_GROUP))
    UserFactory(email="not-staff@example.test").groups.add(
        Group.objects.get(name=ADMIN_GROUP)
    )
    UserFactory(email="victim@example.test")
    _brute_force(client)
    with mail_now():
        services.rules_run()
    [mail] = smtp.wait_for(1)
    assert [a.addr_spec for a in mail["To"].addresses] == ["admin@example.test"]


def test_a_failing_webhook_is_retried_then_given_up_audited(
    client, rules_now, smtp, webhook, retries_now
):
    """A receiver answering 500: the webhook is tried once and retried three
    times, then gives up with an audited error; the alert and its mail stand."""
    webhook.status = 500
    UserFactory(email="victim@example.test")
    _brute_force(client)
    with retries_now():
        summary = services.rules_run()
    assert summary["opened"] == 1
    assert len(webhook.requests) == 4
    assert len(webhook.verified()) == 4  # each attempt signed afresh
    alert = Alert.objects.get()
    failed = AuditEvent.objects.get(event_type="monitoring.webhook.failed")
    assert failed.outcome == "error"
    assert failed.target_id == str(alert.pk)
    assert "HTTP 500" in failed.error_description
    assert failed.details == {"attempts": 4}
    assert len(smtp.wait_for(1)) == 1


def test_an_unreachable_webhook_gives_up_too(client, rules_now, webhook, retries_now):
    rules_now.MONITORING_WEBHOOK_URL = "http://127.0.0.1:9/closed"
    UserFactory(email="victim@example.test")
    _brute_force(client)
    with retries_now():
        services.rules_run()
    failed = AuditEvent.objects.get(event_type="monitoring.webhook.failed")
    assert "unreachable" in failed.error_description


@pytest.fixture
def staff(client, otp_login):
    user = UserFactory(is_staff=True, email="staff@example.test")
    user.groups.add(Group.objects.get(name=ADMIN_GROUP))
    otp_login(client, user)
    return user


@pytest.fixture
def alert(rules_now):
    user = UserFactory()
    audit_record(
        event_type="auth.sso.roles",
        actor=user,
        target=user,
        details={"groups_added": ["Auditor"]},
    )
    services.rules_run()
    return Alert.objects.get()


def _act(client, action, alert, reason):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [alert.pk], "reason": reason},
        follow=True,
    )


def test_admin_group_lists_acknowledges_and_resolves_alerts(client, staff, alert):
    """An Admin-group member sees the alert under the open filter, cannot
    acknowledge without a reason, acknowledges and resolves with one; each
    step is in the audit trail under their name."""
    page = client.get(reverse(CHANGELIST), {"state__exact": "open"})
    assert page.status_code == 200
    assert alert.summary in page.content.decode()
    assert "privilege_change" in page.content.decode()

    refused = _act(client, "acknowledge", alert, "  ")
    assert services.ALERT_NEEDS_REASON in refused.content.decode()
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN

    _act(client, "acknowledge", alert, "Checking with IT whether it was planned")
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED
    assert alert.acknowledged_by == staff
    assert alert.acknowledged_reason == "Checking with IT whether it was planned"

    _act(client, "resolve", alert, "Planned: new auditor started today")
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert alert.resolved_by == staff
    events = AuditEvent.objects.filter(event_type__startswith="monitoring.alert.")
    steps = [(e.event_type, e.actor_id) for e in events.exclude(actor_id=None)]
    assert steps == [
        ("monitoring.alert.acknowledge", staff.pk),
        ("monitoring.alert.resolve", staff.pk),
    ]
    assert events.last().details["reason"] == "Planned: new auditor started today"
    again = _act(client, "resolve", alert, "twice")
    assert services.ALERT_ALREADY_RESOLVED in again.content.decode()


def test_ordinary_users_and_staff_outside_admin_cannot_handle_alerts(
    client, otp_login, alert
):
    """Staff without the Admin group get no alert list and cannot act."""
    outsider = UserFactory(is_staff=True)
    otp_login(client, outsider)
    assert client.get(reverse(CHANGELIST)).status_code == 403
    response = _act(client, "resolve", alert, "not mine to close")
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN


def test_metrics_count_alerts_by_rule_and_state(client, settings, alert):
    settings.MONITORING_TOKEN = "m" * 40
    staff = UserFactory(is_staff=True)
    services.alert_resolve(actor=staff, alert_id=alert.pk, reason="fine")
    UserFactory(email="victim@example.test")
    _brute_force(client)
    services.rules_run()
    text = client.get(
        "/metrics", headers={"Authorization": f"Bearer {'m' * 40}"}
    ).content.decode()
    samples = {
        (s.labels.get("rule"), s.labels.get("state")): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "kreo_alerts"
        for s in family.samples
    }
    assert samples == {
        ("privilege_change", "resolved"): 1.0,
        ("brute_force", "open"): 1.0,
    }


def test_the_log_review_lists_alerts_and_their_handling(rules_now, alert):
    """The periodic log review counts the alert's opening and its resolution
    among the notable events an auditor signs off."""
    from datetime import timedelta

    from django.utils import timezone

    from audit.services import review_create

    staff = UserFactory(is_staff=True)
    services.alert_resolve(actor=staff, alert_id=alert.pk, reason="planned")
    review = review_create(until=timezone.now() + timedelta(seconds=1))
    assert review.summary["monitoring.alert.open success"] == 1
    assert review.summary["monitoring.alert.resolve success"] == 1


def test_a_mail_server_that_is_down_does_not_post_the_webhook_twice(
    client, rules_now, webhook, retries_now
):
    """The mail task retries on its own; the webhook goes out once."""
    rules_now.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    rules_now.EMAIL_HOST, rules_now.EMAIL_PORT = "127.0.0.1", 9
    UserFactory(email="victim@example.test")
    _brute_force(client)
    with retries_now():
        services.rules_run()
    assert Alert.objects.count() == 1
    assert len(webhook.verified()) == 1
