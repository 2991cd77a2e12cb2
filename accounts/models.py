from django.contrib.auth.models import (
    AbstractBaseUser,
    BaseUserManager,
    PermissionsMixin,
)
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django_otp.models import Device, TimestampMixin


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)

    def _create(self, email, password, **fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **fields):
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email, password=None, **fields):
        fields["is_staff"] = True
        fields["is_superuser"] = True
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. The email address is the login, unique whatever its case."""

    email = models.EmailField("email address", max_length=254, unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(
        default=False, help_text="Can sign in to the admin site."
    )
    date_joined = models.DateTimeField(default=timezone.now)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    # Progressive lockout: set after repeated failures, cleared by a
    # successful sign-in, a password reset or staff in the admin.
    locked_until = models.DateTimeField(null=True, blank=True)
    lockout_level = models.PositiveSmallIntegerField(default=0)
    # IANA zone the pages show times in (chosen on the security page).
    time_zone = models.CharField(max_length=64, default="UTC")

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(
                Lower("email"), name="accounts_user_email_ci_unique"
            )
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    @property
    def label(self) -> str:
        return self.full_name or self.email

    def is_locked(self, now=None) -> bool:
        return bool(self.locked_until and self.locked_until > (now or timezone.now()))


class SessionRecord(models.Model):
    """One signed-in session, as its owner sees it on the security page.

    The middleware ends any session whose record is gone, so deleting the
    record is how a session is revoked.
    """

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="session_records"
    )
    session_key = models.CharField(max_length=64, unique=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.user} from {self.ip} ({self.last_seen_at:%Y-%m-%d %H:%M})"


class ApiTokenUse(models.Model):
    """What knox's AuthToken does not keep: last use, and what the token was
    issued under (``accounts.api_tokens``).

    ``auth_hash`` is the account's session hash (the password hash, HMAC'd)
    when the token was issued: a password changed by any path (reset, change,
    the admin, ``changepassword``) makes it differ and the token refused.
    ``identity`` is the SSO identity of the session that asked for the token,
    whose roles must still allow access at each use.
    """

    token = models.OneToOneField(
        "knox.AuthToken",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="kreo_use",
    )
    auth_hash = models.CharField(max_length=128)
    last_used_at = models.DateTimeField(null=True, blank=True)
    via_sso = models.BooleanField(default=False)
    identity = models.ForeignKey(
        "accounts_oidc.Identity",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    def __str__(self) -> str:
        return f"use of {self.token_id[:16]}"


class Passkey(TimestampMixin, Device):
    """A WebAuthn credential (a passkey), as django-otp sees it.

    A device like the TOTP app: it counts as the account's second factor, and
    a session signed in with it is OTP-verified. It never accepts a typed
    token; ``accounts.passkeys`` checks its signed answers. ``created_at`` and
    ``last_used_at`` come from django-otp's mixin.
    """

    # The credential id, base64url without padding (at most 1023 bytes).
    credential_id = models.CharField(max_length=1400, unique=True)
    # The COSE public key the authenticator gave at registration.
    public_key = models.BinaryField()
    # The authenticator's signature counter: each answer must raise it, when
    # the authenticator keeps one (a copied credential shows as a count that
    # does not grow).
    sign_count = models.PositiveBigIntegerField(default=0)
    # The WebAuthn user handle (random, base64url), the same for every
    # passkey of an account; a discoverable credential answers with it.
    user_handle = models.CharField(max_length=128)
    transports = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"
