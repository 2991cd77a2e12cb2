import zoneinfo

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import PasswordResetForm

from accounts.captcha import captcha_field
from accounts.models import User

PASSWORDS_DIFFER = "The two passwords do not match."


class CaptchaMixin:
    """Forms with a CAPTCHA: the field of the configured kind (``KREO_CAPTCHA``,
    read when the form is built), and the client IP for reCAPTCHA's verify call."""

    def add_captcha(self) -> None:
        self.fields["captcha"] = captcha_field()

    def set_remote_ip(self, ip: str) -> None:
        if "captcha" in self.fields:
            self.fields["captcha"].remote_ip = ip


class EmailAuthenticationForm(CaptchaMixin, forms.Form):
    """Email and password; the CAPTCHA field only when the view asks for it."""

    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )
    password = forms.CharField(
        label="Password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, captcha: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if captcha:
            self.add_captcha()


class SignupForm(CaptchaMixin, forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 12 characters, not a common password.",
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_captcha()

    def clean(self):
        data = super().clean()
        one, two = data.get("password1"), data.get("password2")
        if one and two and one != two:
            self.add_error("password2", PASSWORDS_DIFFER)
        elif one:
            try:
                password_validation.validate_password(
                    one, User(email=data.get("email", ""))
                )
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class EmailForm(CaptchaMixin, forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class CaptchaPasswordResetForm(CaptchaMixin, PasswordResetForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_captcha()


class OTPForm(forms.Form):
    token = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "text",
                "autofocus": True,
            }
        ),
        help_text="The 6-digit code from your authenticator app, or a recovery code.",
    )


class EnrolCodeForm(OTPForm):
    """The first code, from the app being set up: no recovery codes exist yet."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["token"].help_text = "The 6-digit code your app shows now."


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class PasskeyRemoveForm(PasswordConfirmForm):
    """Which of the user's passkeys to remove, confirmed with the password."""

    field_order = ["passkey", "password"]

    def __init__(self, *args, passkeys=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["passkey"] = forms.TypedChoiceField(
            label="Passkey",
            coerce=int,
            choices=[(p.pk, p.name) for p in passkeys],
        )
        self.order_fields(self.field_order)


def _zone_choices() -> list[tuple[str, str]]:
    zones = sorted(zoneinfo.available_timezones() - {"UTC"})
    return [("UTC", "UTC"), *((z, z.replace("_", " ")) for z in zones)]


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        choices=_zone_choices,
        help_text="Times on these pages and in the sign-in history are shown in it.",
    )
