"""The admin never shows an authenticator's secret: staff who may view
devices (even a superuser) cannot read a user's TOTP key, QR code or
otpauth:// link, so they cannot make that user's codes."""

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import UserFactory
from audit.tests.test_admin import staff_client

pytestmark = pytest.mark.django_db


def test_no_totp_secret_reaches_the_admin(client):
    staff_client(client, superuser=True)
    victim = UserFactory(email="victim@example.test")
    device = TOTPDevice.objects.create(user=victim, name="phone", confirmed=True)
    secret_hex = device.key
    config = client.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk]))
    qrcode = client.get(reverse("admin:otp_totp_totpdevice_qrcode", args=[device.pk]))
    assert config.status_code == 403
    assert qrcode.status_code == 403
    change = client.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk]))
    listing = client.get(reverse("admin:otp_totp_totpdevice_changelist"))
    for page in (change, listing):
        assert page.status_code == 200
        text = page.content.decode()
        assert secret_hex not in text
        assert "otpauth://" not in text
        assert "qrcode" not in text.lower().replace("qrcode.", "")
