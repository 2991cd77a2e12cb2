"""The client IP: REMOTE_ADDR unless trusted proxies are configured."""

import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def create_project(client, **headers):
    client.force_login(UserFactory())
    client.post(reverse("projects:create"), {"name": "IP test"}, **headers)
    return AuditEvent.objects.get(event_type="project.create").source_ip


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(client, settings):
    settings.KREO_TRUSTED_PROXY_COUNT = 0
    ip = create_project(
        client, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.1"
    )
    assert ip == "203.0.113.7"


def test_one_trusted_proxy_uses_the_address_it_appended(client, settings):
    """Only the rightmost entry is the proxy's; the client wrote the rest."""
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    ip = create_project(
        client,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.23",
    )
    assert ip == "198.51.100.23"


def test_two_trusted_proxies(client, settings):
    settings.KREO_TRUSTED_PROXY_COUNT = 2
    ip = create_project(
        client,
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.23, 10.0.0.1",
    )
    assert ip == "198.51.100.23"


@pytest.mark.parametrize("header", ["", "not-an-ip", "999.1.1.1"])
def test_short_or_garbage_header_falls_back_to_the_peer(client, settings, header):
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    ip = create_project(client, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=header)
    assert ip == "10.0.0.2"
