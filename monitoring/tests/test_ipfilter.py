"""Traffic filtering: the IP deny list and the /admin/ allow list refuse
requests before any database work, by the client address the trusted-proxy
rule gives (a forged X-Forwarded-For does not help), expire by themselves,
are edited in the admin (audited, malformed entries refused), are set by the
rules themselves, and a flood of refusals is summarised, not logged row by row."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from kreo.permissions import ADMIN_GROUP
from monitoring import ipfilter, services
from monitoring.models import Alert, IPListKind, IPRule, IPRuleSource

pytestmark = pytest.mark.django_db
LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
ADD = "admin:monitoring_iprule_add"
# A page that does no database work of its own (a static file).
CHEAP = "/static/favicon.svg"


@pytest.fixture
def add_entry(django_capture_on_commit_callbacks):
    """Add an entry through the service, its commit hooks run (the version
    bump every process watches)."""

    def add(network, kind=IPListKind.DENY, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return services.ip_rule_create(
                actor=None, kind=kind, network=network, reason="test", **extra
            )

    return add


def _get(client, path, ip, **headers):
    return client.get(path, REMOTE_ADDR=ip, headers=headers)


def test_a_denied_address_gets_a_short_403_with_no_database_work(
    client, add_entry, django_assert_num_queries
):
    add_entry("203.0.113.0/24")
    _get(client, CHEAP, "198.51.100.1")  # this process has read the list
    with django_assert_num_queries(0):
        refused = _get(client, LOGIN, "203.0.113.77")
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("text/plain")
    assert refused.content.decode() == ipfilter.BLOCKED_TEXT
    assert "sessionid" not in refused.cookies
    # Whoever else asks is served, and the check itself reads nothing.
    with django_assert_num_queries(0):
        assert _get(client, CHEAP, "198.51.100.1").status_code == 200
    assert _get(client, LOGIN, "198.51.100.1").status_code == 200


def test_metrics_count_refusals_by_list(client, settings, add_entry):
    settings.MONITORING_TOKEN = "m" * 40
    add_entry("203.0.113.0/24")

    def refused() -> float:
        text = client.get(
            "/metrics", headers={"Authorization": f"Bearer {'m' * 40}"}
        ).content.decode()
        return next(
            s.value
            for family in text_string_to_metric_families(text)
            if family.name == "kreo_ip_blocked"
            for s in family.samples
            if s.labels.get("list") == "deny" and s.name.endswith("_total")
        )

    _get(client, LOGIN, "203.0.113.1")
    before = refused()
    for _ in range(3):
        _get(client, LOGIN, "203.0.113.1")
    assert refused() == before + 3


def test_ipv6_and_ipv4_mapped_addresses_are_matched(client, add_entry):
    add_entry("2001:db8:bad::/48")
    add_entry("203.0.113.9")
    assert _get(client, CHEAP, "2001:db8:bad::1").status_code == 403
    assert _get(client, CHEAP, "2001:db8:beef::1").status_code == 200
    assert _get(client, CHEAP, "::ffff:203.0.113.9").status_code == 403


def test_a_forged_forwarded_for_does_not_escape_a_block(client, settings, add_entry):
    """Behind one trusted proxy only the entry it appended counts: a blocked
    client that writes a clean address in front is still refused, and one
    that is not behind the proxy cannot name itself someone else."""
    add_entry("203.0.113.0/24")
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    forged = {"x-forwarded-for": "198.51.100.1, 203.0.113.5"}
    assert _get(client, LOGIN, "10.0.0.2", **forged).status_code == 403
    settings.KREO_TRUSTED_PROXY_COUNT = 0
    direct = {"x-forwarded-for": "198.51.100.1"}
    assert _get(client, LOGIN, "203.0.113.5", **direct).status_code == 403


def test_the_admin_allow_list_guards_the_admin_only(client, settings, add_entry):
    """With an allow entry in force, /admin/ answers only from inside it
    (IPv4 or IPv6); every other page stays open; a forged header cannot put
    an outsider inside."""
    assert _get(client, ADMIN_LOGIN, "198.51.100.7").status_code == 302
    add_entry("192.0.2.0/24", kind=IPListKind.ADMIN_ALLOW)
    add_entry("2001:db8:1::/48", kind=IPListKind.ADMIN_ALLOW)
    refused = _get(client, ADMIN_LOGIN, "198.51.100.7")
    assert refused.status_code == 403
    assert refused.content.decode() == ipfilter.ADMIN_BLOCKED_TEXT
    assert _get(client, LOGIN, "198.51.100.7").status_code == 200
    # Inside: the admin's own answer (to the two-step sign-in).
    assert _get(client, ADMIN_LOGIN, "192.0.2.8").status_code == 302
    assert _get(client, ADMIN_LOGIN, "2001:db8:1::8").status_code == 302
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    forged = {"x-forwarded-for": "192.0.2.8, 198.51.100.7"}
    assert _get(client, ADMIN_LOGIN, "10.0.0.2", **forged).status_code == 403


def test_an_entry_expires_by_itself(client, add_entry, django_assert_num_queries):
    """A temporary block ends at its expiry, with no change announced and no
    database read."""
    add_entry("203.0.113.0/24", expires_at=timezone.now() + timedelta(seconds=2.5))
    assert _get(client, CHEAP, "203.0.113.1").status_code == 403
    time.sleep(2.6)
    with django_assert_num_queries(0):
        assert _get(client, CHEAP, "203.0.113.1").status_code == 200


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("10.0.0.300/8", ipfilter.NETWORK_MALFORMED.format(value="10.0.0.300/8")),
        ("2001:db8::/129", ipfilter.NETWORK_MALFORMED.format(value="2001:db8::/129")),
        ("evil.example", ipfilter.NETWORK_MALFORMED.format(value="evil.example")),
        (
            "10.0.0.1/8",
            ipfilter.NETWORK_HOST_BITS.format(
                value="10.0.0.1/8", prefix=8, network="10.0.0.0/8"
            ),
        ),
        ("0.0.0.0/0", ipfilter.NETWORK_EVERYTHING.format(network="0.0.0.0/0")),
    ],
)
def test_a_malformed_entry_is_refused_in_the_admin(client, staff, network, message):
    page = client.post(
        reverse(ADD), {"kind": "deny", "network": network, "reason": "abuse"}
    )
    assert page.status_code == 200
    assert message in page.content.decode()
    assert not IPRule.objects.exists()


def test_staff_add_change_and_remove_entries_audited(client, staff):
    """Each change is in the audit trail under the staff member's name, with
    the values before and after; an expiry in the past is refused."""
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    refused = client.post(
        reverse(ADD),
        {
            "kind": "deny",
            "network": "2001:db8::/32",
            "reason": "abuse",
            "expires_at_0": past[:10],
            "expires_at_1": past[11:],
        },
    )
    assert services.IP_EXPIRY_PAST in refused.content.decode()
    added = client.post(
        reverse(ADD), {"kind": "deny", "network": " 2001:DB8::/32 ", "reason": "abuse"}
    )
    assert added.status_code == 302
    rule = IPRule.objects.get()
    assert (rule.network, rule.created_by, rule.source) == (
        "2001:db8::/32",
        staff,
        IPRuleSource.STAFF,
    )
    change = reverse("admin:monitoring_iprule_change", args=[rule.pk])
    client.post(change, {"kind": "deny", "network": "2001:db8::/48", "reason": "x"})
    delete = reverse("admin:monitoring_iprule_delete", args=[rule.pk])
    client.post(delete, {"post": "yes"})
    assert not IPRule.objects.exists()
    events = AuditEvent.objects.filter(event_type__startswith="monitoring.ip_rule.")
    assert [(e.event_type, e.actor_id) for e in events.order_by("id")] == [
        ("monitoring.ip_rule.create", staff.pk),
        ("monitoring.ip_rule.change", staff.pk),
        ("monitoring.ip_rule.delete", staff.pk),
    ]
    assert (
        events.get(event_type="monitoring.ip_rule.change").details["before"]["network"]
        == "2001:db8::/32"
    )


def test_staff_cannot_lock_themselves_out_of_the_admin(client, staff):
    """An allow list that leaves out the staff member's own address, or a deny
    entry covering it, is refused with a message (the client is 127.0.0.1)."""
    outside = client.post(
        reverse(ADD), {"kind": "admin_allow", "network": "192.0.2.0/24", "reason": "x"}
    )
    assert services.IP_LOCKS_YOU_OUT.format(ip="127.0.0.1") in outside.content.decode()
    own = client.post(
        reverse(ADD), {"kind": "deny", "network": "127.0.0.0/8", "reason": "x"}
    )
    assert services.IP_BLOCKS_YOU.format(ip="127.0.0.1") in own.content.decode()
    assert not IPRule.objects.exists()
    inside = client.post(
        reverse(ADD), {"kind": "admin_allow", "network": "127.0.0.1", "reason": "x"}
    )
    assert inside.status_code == 302
    assert client.get(reverse("admin:monitoring_iprule_changelist")).status_code == 200


def _stuff(client, ip, times=30):
    for n in range(times):
        client.post(
            reverse("accounts:login"),
            {"username": f"leaked{n % 6}@example.test", "password": "wrong"},
            REMOTE_ADDR=ip,
        )


def test_a_credential_stuffing_alert_blocks_the_ip_for_a_while(
    client, rules_now, mail_now
):
    """With automatic blocks on, the rules' credential-stuffing alert puts the
    IP on the deny list (audited, linked both ways, expiring on its own) and
    the attacker's next sign-in attempt is refused before any work."""
    rules_now.MONITORING_AUTOBLOCK = True
    rules_now.MONITORING_AUTOBLOCK_SECONDS = 600
    _stuff(client, "198.51.100.66")
    with mail_now():
        summary = services.rules_run()
    assert summary["blocked"] == 1
    alert = Alert.objects.get(rule="credential_stuffing")
    block = IPRule.objects.get()
    assert (block.kind, block.network, block.source, block.alert) == (
        IPListKind.DENY,
        "198.51.100.66/32",
        IPRuleSource.RULE,
        alert,
    )
    left = (block.expires_at - timezone.now()).total_seconds()
    assert 590 < left <= 600
    assert alert.details["ip_block"]["id"] == block.pk
    audited = AuditEvent.objects.get(event_type="monitoring.ip_rule.create")
    assert audited.details["alert_id"] == alert.pk
    assert audited.actor_label == services.SYSTEM_LABEL
    attempt = client.post(
        reverse("accounts:login"),
        {"username": "leaked1@example.test", "password": "wrong"},
        REMOTE_ADDR="198.51.100.66",
    )
    assert attempt.status_code == 403
    # The attack going on adds to the alert; it makes no second block.
    IPRule.objects.update(expires_at=timezone.now() + timedelta(seconds=600))
    with mail_now():
        services.rules_run()
    assert IPRule.objects.count() == 1


def test_automatic_blocks_are_off_by_default(client, rules_now, mail_now):
    _stuff(client, "198.51.100.67")
    with mail_now():
        services.rules_run()
    assert Alert.objects.filter(rule="credential_stuffing").exists()
    assert not IPRule.objects.exists()
    assert _get(client, LOGIN, "198.51.100.67").status_code == 200


def test_the_alert_page_links_its_block(client, staff, rules_now, mail_now):
    rules_now.MONITORING_AUTOBLOCK = True
    _stuff(Client(), "198.51.100.68")
    with mail_now():
        services.rules_run()
    alert = Alert.objects.get(rule="credential_stuffing")
    block = IPRule.objects.get()
    page = client.get(reverse("admin:monitoring_alert_change", args=[alert.pk]))
    assert reverse("admin:monitoring_iprule_change", args=[block.pk]) in (
        page.content.decode()
    )


def test_a_flood_of_refusals_is_one_summary_event(client, add_entry):
    """Two hundred refused requests write no audit row each; the summary task
    writes one event per entry and window, once."""
    rule = add_entry("203.0.113.0/24")
    before = AuditEvent.objects.count()
    for n in range(200):
        _get(client, "/projects/", f"203.0.113.{n % 50 + 1}")
    assert AuditEvent.objects.count() == before
    later = time.time() + 2 * services.settings.MONITORING_IPFILTER_SUMMARY_SECONDS
    # One event per window (two when the flood crossed a window's end).
    written = services.ip_block_summary(now=later)
    assert written in (1, 2)
    assert services.ip_block_summary(now=later) == 0
    events = AuditEvent.objects.filter(event_type="monitoring.ip.blocked")
    assert events.count() == written
    assert sum(e.details["requests"] for e in events) == 200
    first = events.order_by("id").first()
    assert {e.target_id for e in events} == {str(rule.pk)}
    assert first.details["network"] == "203.0.113.0/24"
    assert first.details["first_ip"] == "203.0.113.1"


@pytest.fixture
def staff(client, otp_login):
    user = UserFactory(is_staff=True, email="filter-staff@example.test")
    user.groups.add(Group.objects.get(name=ADMIN_GROUP))
    otp_login(client, user)
    return user


def test_liveness_never_reads_the_list(client, add_entry, django_assert_num_queries):
    """/healthz in a fresh process answers without reading the entries (a
    pod is not restarted because the database is out); once this process
    holds the list, /healthz refuses a denied address like every page."""
    add_entry("203.0.113.0/24")
    with django_assert_num_queries(0):
        assert _get(client, "/healthz", "203.0.113.1").status_code == 200
    _get(client, CHEAP, "198.51.100.1")
    assert _get(client, "/healthz", "203.0.113.1").status_code == 403


def test_an_ipv6_attacker_is_blocked_with_its_whole_64(client, rules_now, mail_now):
    """A credential-stuffing IPv6 client is blocked with its /64: moving to
    another address of the same network does not get it back in."""
    rules_now.MONITORING_AUTOBLOCK = True
    _stuff(client, "2001:db8:aaaa:bbbb::66")
    with mail_now():
        services.rules_run()
    assert IPRule.objects.get().network == "2001:db8:aaaa:bbbb::/64"
    assert _get(client, LOGIN, "2001:db8:aaaa:bbbb::1:2").status_code == 403
    assert _get(client, LOGIN, "2001:db8:aaaa:cccc::1").status_code == 200
