"""The detection rules over the audit trail: attacks made through the real
sign-in page (or recorded as the services record them) raise exactly their
alert when the rules task runs; ordinary use raises none."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import PASSWORD, UserFactory
from audit import bounded
from audit.models import AuditEvent, Outcome
from audit.services import audit_record
from kreo.counters import window
from monitoring import services, tasks
from monitoring.models import Alert, AlertState, RuleCursor

pytestmark = pytest.mark.django_db
LOGIN = "accounts:login"


def _fail(client, email, ip="203.0.113.7"):
    response = client.post(
        reverse(LOGIN), {"username": email, "password": "wrong"}, REMOTE_ADDR=ip
    )
    assert response.status_code in (200, 429)


def _alerts():
    return sorted((a.rule, a.subject_kind, a.subject) for a in Alert.objects.all())


def test_brute_force_on_one_account_raises_one_alert(client, rules_now):
    """Ten wrong passwords for one account from one IP: a brute-force alert
    about that account, and no other."""
    victim = UserFactory(email="victim@example.test")
    for _ in range(10):
        _fail(client, victim.email)
    tasks.rules_run()
    assert _alerts() == [("brute_force", "user", "victim@example.test")]
    alert = Alert.objects.get()
    assert alert.state == AlertState.OPEN
    assert alert.details["ip"] == "203.0.113.7"
    assert alert.severity == "high"


def test_nine_failures_are_not_brute_force(client, rules_now):
    victim = UserFactory(email="victim@example.test")
    for _ in range(9):
        _fail(client, victim.email)
    tasks.rules_run()
    assert _alerts() == []


def test_credential_stuffing_from_one_ip(client, rules_now):
    """Thirty failed sign-ins over six accounts from one IP: a credential
    stuffing alert about the IP (five a account is no brute force)."""
    for n in range(30):
        _fail(client, f"leaked{n % 6}@example.test", ip="198.51.100.9")
    tasks.rules_run()
    assert _alerts() == [("credential_stuffing", "ip", "198.51.100.9")]
    assert Alert.objects.get().details == {"failures": 30, "accounts": 6}


def test_password_spray_over_twenty_accounts_from_many_ips(client, rules_now):
    """One wrong password for each of twenty accounts, each from another IP,
    and no sign-in succeeding: a password spray alert for sign-in."""
    for n in range(20):
        _fail(client, f"staff{n}@example.test", ip=f"192.0.2.{n + 1}")
    tasks.rules_run()
    assert _alerts() == [("password_spray", "system", "sign-in")]


def test_spray_with_ordinary_successes_is_not_a_spray(client, rules_now):
    """Failures over fifteen accounts among as many successful sign-ins (a
    Monday morning) are no spray."""
    users = UserFactory.create_batch(15)
    for n, user in enumerate(users):
        _fail(client, user.email, ip=f"192.0.2.{n + 1}")
        client.post(
            reverse(LOGIN),
            {"username": user.email, "password": PASSWORD},
            REMOTE_ADDR=f"192.0.2.{n + 1}",
        )
        client.logout()
    assert AuditEvent.objects.filter(event_type="auth.login.success").count() == 15
    tasks.rules_run()
    assert _alerts() == []


def _downloads(user, count):
    for n in range(count):
        audit_record(
            event_type="file.download",
            actor=user,
            target_type="projects.projectfile",
            target_id=str(n),
        )


def test_mass_download_over_fifty_files_a_minute(rules_now):
    """51 downloads by one user within a minute: a mass-download alert about
    that user; 50 by another user are within the limit."""
    thief, busy = UserFactory(), UserFactory()
    _downloads(busy, 50)
    _downloads(thief, 51)
    tasks.rules_run()
    assert _alerts() == [("mass_download", "user", str(thief.pk))]


def test_a_storm_of_429s_from_one_ip(client, rules_now):
    """Sign-in refused by its request limit twenty times in a minute from one
    IP: a 429-storm alert about that IP."""
    rules_now.ACCOUNTS_RATES = {**rules_now.ACCOUNTS_RATES, "login-ip": "1/m"}
    for _ in range(21):
        _fail(client, "someone@example.test", ip="198.51.100.77")
    assert AuditEvent.objects.filter(event_type="auth.ratelimit.hit").count() == 20
    tasks.rules_run()
    assert _alerts() == [("rate_limit_storm", "ip", "198.51.100.77")]
    assert Alert.objects.get().summary.startswith("429 storm from ip address 198.")


def test_a_storm_of_429s_for_one_user(rules_now):
    """Twenty refusals of one signed-in user in a minute (whatever their IPs):
    a 429-storm alert about that user; nineteen for another user are not."""
    noisy, calm = UserFactory(), UserFactory()
    for user, times in ((noisy, 20), (calm, 19)):
        for _ in range(times):
            audit_record(
                event_type="auth.ratelimit.hit",
                actor=user,
                outcome=Outcome.DENIED,
                details={"scope": "otp-account"},
            )
    tasks.rules_run()
    assert _alerts() == [("rate_limit_storm", "user", str(noisy.pk))]
    assert Alert.objects.get().summary == (
        f"429 storm from user {noisy.email}: 20 refusals in a minute"
    )


def test_privilege_grant_by_single_sign_on(rules_now):
    """Roles from the identity provider that put a user in the Admin group and
    make them staff raise a privilege-change alert about that user; a role
    change that grants nothing privileged does not."""
    user, other = UserFactory(), UserFactory()
    audit_record(
        event_type="auth.sso.roles",
        actor=user,
        target=user,
        details={"groups_added": ["Admin"], "is_staff": True, "staff_changed": True},
    )
    audit_record(
        event_type="auth.sso.roles",
        actor=other,
        target=other,
        details={"groups_added": [], "is_staff": False, "staff_changed": False},
    )
    tasks.rules_run()
    assert _alerts() == [("privilege_change", "user", str(user.pk))]
    assert Alert.objects.get().details["granted"] == ["Admin", "staff"]


def test_trail_and_backup_failures_raise_system_alerts(rules_now):
    """A failed verification, events rejected by the sealer, an incomplete
    backup and a failed drill each raise their alert; a good verification and
    a good backup do not."""
    audit_record(event_type="audit.verify", actor_label="beat")
    audit_record(
        event_type="audit.verify",
        actor_label="beat",
        outcome=Outcome.FAILURE,
        error_code="bad_seal",
    )
    audit_record(event_type="backup.create", details={"state": "good"})
    audit_record(event_type="backup.create", details={"state": "incomplete"})
    audit_record(event_type="backup.drill", outcome=Outcome.FAILURE)
    audit_record(  # as audit.services.audit_seal writes it
        event_type="audit.seal.rejected",
        actor_label="audit sealer",
        outcome=Outcome.ERROR,
        error_code="mac",
        details={"rejected": [12345]},
    )
    tasks.rules_run()
    assert _alerts() == [
        ("audit_seal_rejected", "system", "audit trail"),
        ("audit_verify_failed", "system", "audit trail"),
        ("backup_drill_failed", "system", "restore drill"),
        ("backup_incomplete", "system", "backups"),
    ]
    verify = Alert.objects.get(rule="audit_verify_failed")
    assert verify.severity == "critical"
    assert "bad_seal" in verify.summary


def test_ordinary_traffic_raises_nothing(client, rules_now):
    """A mix of use: sign-ins, a few typos, downloads below the limit."""
    users = UserFactory.create_batch(5)
    for n, user in enumerate(users):
        _fail(client, user.email, ip=f"10.0.0.{n + 1}")
        assert (
            client.post(
                reverse(LOGIN),
                {"username": user.email, "password": PASSWORD},
                REMOTE_ADDR=f"10.0.0.{n + 1}",
            ).status_code
            == 302
        )
        client.logout()
        _downloads(user, 30)
    tasks.rules_run()
    assert _alerts() == []


def test_repeats_fold_into_the_alert_and_the_cursor_moves_on(client, rules_now):
    """A brute force that goes on after a run adds to the same alert (its
    count grows, no second alert); events read once are not read again."""
    victim = UserFactory(email="victim@example.test")
    for _ in range(10):
        _fail(client, victim.email)
    first = services.rules_run()
    assert first["opened"] == 1
    for _ in range(5):
        _fail(client, victim.email)
    second = services.rules_run()
    # The five failures and the alert's own "monitoring.alert.open" event.
    assert second == {"events": 6, "opened": 0, "updated": 1}
    alert = Alert.objects.get()
    assert alert.count == 6  # the tenth failure, then five more
    cursor = RuleCursor.objects.get()
    assert cursor.last_event_id == AuditEvent.objects.order_by("-id").first().pk
    assert services.rules_run()["events"] == 0


def test_a_resolved_alert_is_raised_anew(client, rules_now):
    """After staff resolve an alert, the same attack raises a new one."""
    victim = UserFactory(email="victim@example.test")
    staff = UserFactory(is_staff=True)
    for _ in range(10):
        _fail(client, victim.email)
    tasks.rules_run()
    services.alert_resolve(
        actor=staff, alert_id=Alert.objects.get().pk, reason="blocked the IP"
    )
    for _ in range(10):
        _fail(client, victim.email)
    tasks.rules_run()
    assert list(Alert.objects.order_by("pk").values_list("state", flat=True)) == [
        "resolved",
        "open",
    ]


def test_events_younger_than_the_settle_time_wait(client, rules_now):
    """Events still settling are left for the next run (a lower id may be in
    flight), so nothing is skipped."""
    rules_now.MONITORING_RULES_SETTLE_SECONDS = 3600
    victim = UserFactory(email="victim@example.test")
    for _ in range(10):
        _fail(client, victim.email)
    assert services.rules_run()["events"] == 0
    rules_now.MONITORING_RULES_SETTLE_SECONDS = 0
    # The ten failures, and the accounts' field changes (record.* events).
    assert services.rules_run()["events"] >= 10
    assert _alerts() == [("brute_force", "user", "victim@example.test")]


def test_a_superuser_granted_in_the_admin_raises_privilege_change(
    client, otp_login, rules_now
):
    """A superuser makes an account superuser on the admin's user page: the
    request's admin.change event and its field change raise a
    privilege-change alert about that account; an edit of a name does not."""
    root = UserFactory(is_staff=True, is_superuser=True, email="root@example.test")
    otp_login(client, root)
    target, renamed = UserFactory(), UserFactory()

    def edit(user, **extra):
        response = client.post(
            reverse("admin:accounts_user_change", args=[user.pk]),
            {"email": user.email, "full_name": "New Name", "is_active": "on", **extra},
        )
        assert response.status_code == 302, response.content.decode()[:2000]

    edit(target, is_staff="on", is_superuser="on")
    edit(renamed)
    assert AuditEvent.objects.filter(event_type="admin.change").count() == 2
    tasks.rules_run()
    assert _alerts() == [("privilege_change", "user", str(target.pk))]
    alert = Alert.objects.get()
    assert alert.details == {"granted": ["is_staff", "is_superuser"], "by": root.email}


def test_the_first_run_starts_at_the_look_back_window(client, rules_now):
    """A first run (a new deployment) reads only the last few minutes of the
    trail: a brute force from last week raises nothing, one from now does."""
    week_ago = timezone.now() - timedelta(days=7)
    AuditEvent.objects.bulk_create(
        AuditEvent(
            occurred_at=week_ago,
            event_type="auth.login.failure",
            outcome="failure",
            source_ip="203.0.113.7",
            details={"email": "old@example.test"},
        )
        for _ in range(10)
    )
    for _ in range(10):
        _fail(client, "now@example.test")
    tasks.rules_run()
    assert _alerts() == [("brute_force", "user", "now@example.test")]
    assert RuleCursor.objects.get().events_read == 10


def test_a_window_spanning_several_batches_is_seen_whole(client, rules_now):
    """Ten failures read in batches of three still make one brute force (the
    rules carry each batch's window into the next)."""
    for _ in range(10):
        _fail(client, "victim@example.test")
    summary = services.rules_run(batch_size=3)
    assert summary == {"events": 10, "opened": 1, "updated": 0}
    assert _alerts() == [("brute_force", "user", "victim@example.test")]


def test_a_repeat_after_the_alert_window_opens_a_new_alert(rules_now):
    """A mass download an hour and a half after the last one (window: one
    hour) opens a new alert, and the quiet one is closed by the system with
    the reason; within the window it would have counted on the old one."""
    thief = UserFactory()
    _downloads(thief, 51)
    tasks.rules_run()
    first = Alert.objects.get()
    Alert.objects.filter(pk=first.pk).update(
        first_seen=first.first_seen - timedelta(minutes=90),
        last_seen=first.last_seen - timedelta(minutes=90),
    )
    _downloads(thief, 51)
    tasks.rules_run()
    first.refresh_from_db()
    assert (first.state, first.resolved_label) == ("resolved", "monitoring")
    assert first.resolved_reason == services.SUPERSEDED
    second = Alert.objects.exclude(pk=first.pk).get()
    assert (second.rule, second.state) == ("mass_download", "open")


def test_a_404_flood_raises_one_request_flood_alert_and_few_rows(client, rules_now):
    """A scan of 200 missing pages from one IP: the audit middleware records
    the first AUDIT_FLOOD_PER_MINUTE and one summary, and the rules raise one
    request-flood alert about that IP (and none for a few ordinary 404s)."""
    rules_now.AUDIT_FLOOD_PER_MINUTE = 30
    for n in range(5):
        client.get(f"/no-such-page-{n}/", REMOTE_ADDR="203.0.113.50")
    first, _ = window(bounded.WINDOW_SECONDS)
    for n in range(200):
        assert (
            client.get(f"/wp-admin/{n}.php", REMOTE_ADDR="198.51.100.77").status_code
            == 404
        )
    last, _ = window(bounded.WINDOW_SECONDS)
    rows = AuditEvent.objects.filter(source_ip="198.51.100.77").count()
    # The bound and one summary per minute window the scan touched (a slow
    # machine can take it across a minute boundary).
    assert rows <= (last - first + 1) * (30 + 1) + 1
    tasks.rules_run()
    assert _alerts() == [("request_flood", "ip", "198.51.100.77")]
