from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device, DeviceManager


class Identity(models.Model):
    """An account at the OpenID Provider, tied to one of our users.

    Users are found by (issuer, subject), never by email: an email address
    is only a claim, and only taken on trust with ``email_verified``.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="sso_identities",
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    email = models.EmailField(max_length=254, blank=True)
    email_verified = models.BooleanField(default=False)
    roles = models.JSONField(default=list, blank=True)
    amr = models.JSONField(default=list, blank=True)
    acr = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)
    # When ``roles`` were last read at the provider (sign-in, session refresh,
    # or the refresh grant an API token's use makes), and the provider's
    # latest refresh token for that grant, encrypted (accounts.oidc.services).
    roles_checked_at = models.DateTimeField(null=True, blank=True)
    refresh_token = models.TextField(blank=True, editable=False)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="oidc_identity_iss_sub_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class IdPDeviceManager(DeviceManager):
    def devices_for_user(self, user, confirmed=None):
        """Never offered as a device to type a code into (password login,
        security page): it only stands for a factor used at the IdP."""
        return self.none()


class IdPDevice(Device):
    """The identity provider's second factor, as django-otp sees it.

    A session is OTP-verified through this device when the provider says the
    user passed multi-factor authentication (``amr``). It never accepts a
    token itself.
    """

    objects = IdPDeviceManager()

    def verify_token(self, token) -> bool:
        return False
