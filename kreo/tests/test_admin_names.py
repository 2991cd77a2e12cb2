"""The admin index names every app in words a new staff member recognises."""

import re

from django.urls import reverse

from accounts.tests.factories import UserFactory


def test_admin_index_shows_readable_app_names(client, otp_login):
    """No raw package labels (KNOX, OTP_STATIC, OTP_TOTP) on the admin index;
    the token and two-factor sections say what they hold."""
    user = UserFactory(is_staff=True, is_superuser=True, email="ops@example.test")
    otp_login(client, user)
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200
    captions = [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<caption>(.*?)</caption>", page.content.decode(), re.S)
    ]
    assert "API tokens" in captions
    assert "Two-factor: authenticator apps" in captions
    assert "Two-factor: recovery codes" in captions
    raw = {"Knox", "Otp_Static", "Otp_Totp", "Django_Otp"}
    assert raw.isdisjoint(captions), captions


def test_renamed_apps_leave_the_platform_config_in_charge():
    """kreo/apps.py holds several configs; "kreo" must still load KreoConfig,
    whose ready() registers the deploy checks and seeds the beat schedule."""
    from django.apps import apps
    from django.core import checks

    from kreo.apps import KreoConfig

    assert type(apps.get_app_config("kreo")) is KreoConfig
    names = {
        c.__name__
        for c in checks.registry.registry.get_checks(include_deployment_checks=True)
    }
    assert "plaintext_links_check" in names
