"""The CAPTCHA of sign-up, password reset and the adaptive login CAPTCHA.

``KREO_CAPTCHA`` picks one: ``altcha`` (self-hosted proof of work, the
default: works with no Internet) or ``recaptcha`` (Google's reCAPTCHA v2).
The setting is read when a form is built, never at import.
"""

from django import forms
from django.conf import settings
from django.http import HttpResponse

from accounts.captcha.altcha import REFUSED, AltchaField
from accounts.captcha.messages import CAPTCHA_REJECTED, CAPTCHA_UNAVAILABLE
from accounts.captcha.recaptcha import RecaptchaField

__all__ = [
    "CAPTCHA_REJECTED",
    "CAPTCHA_UNAVAILABLE",
    "captcha_csp",
    "captcha_field",
    "captcha_refused_as_bad_input",
]

CHOICES = ("altcha", "recaptcha")


def captcha_field() -> forms.Field:
    """A new CAPTCHA form field of the configured kind."""
    if settings.KREO_CAPTCHA == "recaptcha":
        return RecaptchaField(label="")
    return AltchaField(label="")


def captcha_csp(response: HttpResponse) -> HttpResponse:
    """Let a page show the configured CAPTCHA under the site's CSP.

    ALTCHA needs nothing: its script, stylesheet and worker are our own static
    files. reCAPTCHA loads Google's script and frame.
    """
    if settings.KREO_CAPTCHA == "recaptcha":
        origins = [f"https://{settings.RECAPTCHA_DOMAIN}", "https://www.gstatic.com"]
        response._csp_update = {"script-src": origins, "frame-src": origins}
    return response


def captcha_refused_as_bad_input(code: str) -> bool:
    """Whether a CAPTCHA error code means a crafted or stale payload (400)."""
    return code in REFUSED
