"""Recovery codes: saved before going on, downloadable, regenerated on demand."""

from urllib.parse import unquote

import pytest
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken

from accounts.services import RECOVERY_NEEDS_2FA
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_otp import code_for, enrol, sign_in
from accounts.views import PASSWORD_WRONG
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

REGENERATE = "accounts:otp-recovery"


def _signed_in_with_2fa(client):
    user = UserFactory()
    sign_in(client, user)
    device, codes = enrol(client)
    return user, device, codes


def test_setup_page_does_not_promise_codes_that_do_not_exist_yet(client):
    """The first code asked for comes from the app; recovery codes come after."""
    sign_in(client, UserFactory())
    page = client.get(reverse("accounts:otp-enrol")).content.decode()
    assert "recovery code" not in page.lower()


def test_codes_page_offers_a_download_and_asks_to_confirm_they_are_saved(client):
    """The codes can be downloaded as a text file holding all ten, and going
    on needs the "I have saved my recovery codes" box."""
    user = UserFactory()
    sign_in(client, user)
    page = client.get(reverse("accounts:otp-enrol")).content.decode()
    assert page  # the device exists now
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user=user)
    done = client.post(reverse("accounts:otp-enrol"), {"token": code_for(device)})
    html = done.content.decode()
    href = html.split('download="kreo-recovery-codes.txt"')[0].rsplit('href="', 1)[1]
    text = unquote(href.split('"', 1)[0].split(",", 1)[1])
    stored = set(
        StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    )
    assert len(stored) == 10
    assert stored == {line for line in text.splitlines() if line in stored}
    assert 'name="saved" value="1" required' in html
    assert "shown only now" in html


def test_new_codes_void_the_old_ones_and_are_audited(client):
    """After regeneration an old unused code no longer signs in; a new one does."""
    user, device, old = _signed_in_with_2fa(client)
    response = client.post(reverse(REGENERATE), {"recovery-password": PASSWORD})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Your old recovery codes no longer work." in html
    new = [
        c
        for c in StaticToken.objects.filter(device__user=user).values_list(
            "token", flat=True
        )
    ]
    assert len(new) == 10 and not set(new) & set(old)
    assert all(code in html for code in new)
    event = AuditEvent.objects.get(event_type="auth.2fa.recovery_regenerated")
    assert event.actor_id == user.pk and event.details["voided"] == 10

    client.post(reverse("accounts:logout"))
    sign_in(client, user)
    # (A wrong code first would throttle the devices for a second: new first.)
    accepted = client.post(reverse("accounts:login-otp"), {"token": new[0]})
    assert accepted.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)

    client.post(reverse("accounts:logout"))
    sign_in(client, user)
    refused = client.post(reverse("accounts:login-otp"), {"token": old[1]})
    assert refused.status_code == 200  # the form again, with its error
    assert "_auth_user_id" not in client.session


def test_regeneration_needs_the_password(client):
    """A wrong password changes nothing and is recorded as a failure."""
    user, device, old = _signed_in_with_2fa(client)
    response = client.post(
        reverse(REGENERATE), {"recovery-password": "not the password"}, follow=True
    )
    assert PASSWORD_WRONG in response.content.decode()
    still = set(
        StaticToken.objects.filter(device__user=user).values_list("token", flat=True)
    )
    assert still == set(old)
    assert AuditEvent.objects.filter(
        event_type="auth.2fa.failed",
        details__isnull=False,
        error_code="recovery_bad_password",
    ).exists()


def test_no_codes_for_an_account_without_two_factor(client):
    """Without an authenticator app there are no recovery codes to make."""
    user = UserFactory()
    sign_in(client, user)
    response = client.post(
        reverse(REGENERATE), {"recovery-password": PASSWORD}, follow=True
    )
    assert RECOVERY_NEEDS_2FA in response.content.decode()
    assert not StaticToken.objects.filter(device__user=user).exists()


def test_the_code_step_can_be_cancelled(client):
    """Cancel on the code step ends the half-done sign-in: the code page then
    sends the person back to the password step."""
    user, device, codes = _signed_in_with_2fa(client)
    client.post(reverse("accounts:logout"))
    sign_in(client, user)
    step = client.get(reverse("accounts:login-otp")).content.decode()
    assert "recovery codes in the same box" in step
    assert "Cancel sign-in" in step
    client.post(reverse("accounts:logout"))
    again = client.get(reverse("accounts:login-otp"))
    assert again.status_code == 302
    assert again["Location"].startswith(reverse("accounts:login"))
    assert (
        client.post(
            reverse("accounts:login-otp"), {"token": code_for(device, 1)}
        ).status_code
        == 302
    )
    assert "_auth_user_id" not in client.session
