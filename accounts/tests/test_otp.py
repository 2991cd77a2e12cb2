"""Two-factor sign-in with TOTP and recovery codes; the admin needs it."""

import base64
import re
import time

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.factories import PASSWORD, UserFactory
from accounts.views import OTP_INVALID, PASSWORD_WRONG
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def code_for(device, drift=0):
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, drift=drift):06d}"


def enrol(client):
    """Open the enrolment page, read the key, confirm; return device and codes."""
    page = client.get(reverse("accounts:otp-enrol")).content.decode()
    assert 'src="data:image/svg+xml;base64,' in page
    secret = re.search(r'id="otp-secret">([A-Z2-7]+)<', page).group(1)
    device = TOTPDevice.objects.get(confirmed=False)
    padded = secret + "=" * (-len(secret) % 8)
    assert base64.b32decode(padded) == device.bin_key
    wrong = client.post(reverse("accounts:otp-enrol"), {"token": "000000"})
    assert "not correct" in wrong.content.decode()
    done = client.post(reverse("accounts:otp-enrol"), {"token": code_for(device)})
    codes = re.findall(r"<li><code>([0-9a-f]{10})</code></li>", done.content.decode())
    device.refresh_from_db()
    assert device.confirmed
    return device, codes


def sign_in(client, user):
    return client.post(
        reverse("accounts:login"), {"username": user.email, "password": PASSWORD}
    )


def test_enrolment_then_login_needs_a_code_and_recovery_codes_work_once(client):
    """Ten recovery codes; each works once; a used TOTP code cannot be replayed."""
    user = UserFactory()
    sign_in(client, user)
    device, codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    client.post(reverse("accounts:logout"))

    first = sign_in(client, user)
    assert first["Location"].startswith(reverse("accounts:login-otp"))
    assert client.get(reverse("accounts:security")).status_code == 302
    # The enrolment code was used already: a replay of it is refused, and the
    # device then throttles itself (1 s after one failure, doubling).
    replay = client.post(reverse("accounts:login-otp"), {"token": code_for(device)})
    assert replay.status_code == 200
    time.sleep(1.1)
    device.refresh_from_db()
    ok = client.post(reverse("accounts:login-otp"), {"token": code_for(device, 1)})
    assert ok.status_code == 302
    assert client.get(reverse("accounts:security")).status_code == 200
    client.post(reverse("accounts:logout"))

    sign_in(client, user)
    assert (
        client.post(reverse("accounts:login-otp"), {"token": codes[0]}).status_code
        == 302
    )
    client.post(reverse("accounts:logout"))
    sign_in(client, user)
    again = client.post(reverse("accounts:login-otp"), {"token": codes[0]})
    assert again.status_code == 200
    assert OTP_INVALID in again.content.decode()
    types = list(AuditEvent.objects.values_list("event_type", flat=True))
    assert "auth.2fa.enrolled" in types and "auth.2fa.failed" in types


def test_otp_attempts_are_rate_limited(client):
    """Guessing codes: 429 after the per-account limit (10 per 15 minutes)."""
    user = UserFactory()
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    sign_in(client, user)
    statuses = [
        client.post(reverse("accounts:login-otp"), {"token": f"{n:06d}"}).status_code
        for n in range(12)
    ]
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429, 429]


def test_turning_2fa_off_needs_the_password(client):
    """A wrong password leaves the device in place; the right one removes it."""
    user = UserFactory()
    sign_in(client, user)
    enrol(client)
    url = reverse("accounts:otp-disable")
    response = client.post(url, {"password": "not my password"}, follow=True)
    assert PASSWORD_WRONG in response.content.decode()
    assert TOTPDevice.objects.filter(user=user).exists()
    client.post(url, {"password": PASSWORD})
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(event_type="auth.2fa.removed").count() == 1


def test_staff_must_enrol_and_the_admin_needs_a_verified_session(client):
    """Staff without 2FA are sent to enrol; a session that skipped OTP is refused."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    admin = reverse("admin:index")
    anonymous = client.get(admin)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("admin:login"))
    to_login = client.get(anonymous["Location"])
    assert to_login["Location"].startswith(reverse("accounts:login"))

    sign_in(client, staff)
    forced = client.get(admin)
    assert forced["Location"] == reverse("accounts:otp-enrol")
    enrol(client)
    assert client.get(admin).status_code == 200

    other = type(client)()
    other.force_login(staff)  # a session that never passed the second step
    response = other.get(admin)
    assert response.status_code in (302, 403)
    assert other.get(reverse("admin:accounts_user_changelist")).status_code != 200


def test_admin_login_form_is_no_side_door(client):
    """POSTing credentials to /admin/login/ signs nobody in."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.post(reverse("admin:login"), {"username": staff.email, "password": PASSWORD})
    assert "_auth_user_id" not in client.session


def test_2fa_for_everyone_when_the_setting_says_so(client, settings):
    """With the setting at "all", a plain user is sent to enrol too."""
    settings.ACCOUNTS_2FA_REQUIRED_FOR = "all"
    user = UserFactory()
    sign_in(client, user)
    response = client.get(reverse("projects:list"))
    assert response["Location"] == reverse("accounts:otp-enrol")
