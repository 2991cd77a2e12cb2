"""reCAPTCHA: django-recaptcha's field and widget, with our own verify call.

django-recaptcha 4.1 builds its verify URL as ``https://<RECAPTCHA_DOMAIN>/...``
(scheme and path fixed), takes the client IP from a forgeable
``X-Forwarded-For`` and lets connection errors other than ``HTTPError``
escape as a 500. So the field's ``validate`` posts to
``settings.RECAPTCHA_VERIFY_URL`` itself (the siteverify protocol: form fields
``secret``, ``response``, ``remoteip``; JSON answer with ``success``), with the
IP from ``kreo.net.client_ip``, and fails closed on any transport error.
"""

import json
import logging
from urllib.error import URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from django.conf import settings
from django.core.exceptions import ValidationError
from django_recaptcha.fields import ReCaptchaField
from django_recaptcha.widgets import ReCaptchaV2Checkbox

from accounts.captcha.messages import CAPTCHA_REJECTED, CAPTCHA_UNAVAILABLE

logger = logging.getLogger(__name__)


class CaptchaUnavailable(Exception):
    """The verify endpoint could not be reached or answered nonsense."""


def siteverify(*, token: str, remote_ip: str) -> bool:
    """Ask the verify endpoint whether ``token`` is a solved CAPTCHA."""
    url = settings.RECAPTCHA_VERIFY_URL
    if not url.startswith(("https://", "http://")):
        raise CaptchaUnavailable(f"bad verify URL {url!r}")
    body = urlencode(
        {
            "secret": settings.RECAPTCHA_PRIVATE_KEY,
            "response": token,
            "remoteip": remote_ip,
        }
    ).encode()
    request = Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urlopen(  # noqa: S310  # nosec B310 - scheme checked above
            request, timeout=settings.RECAPTCHA_VERIFY_TIMEOUT
        ) as response:
            data = json.loads(response.read(65536).decode())
    except (URLError, OSError, ValueError) as exc:
        raise CaptchaUnavailable(str(exc)) from exc
    if not isinstance(data, dict) or "success" not in data:
        raise CaptchaUnavailable("answer without 'success'")
    if data["success"] is not True:
        logger.info("captcha rejected: %s", data.get("error-codes"))
    return data["success"] is True


class RecaptchaWidget(ReCaptchaV2Checkbox):
    """The v2 checkbox without the library's inline script (CSP forbids it)."""

    template_name = "accounts/captcha_widget.html"


class RecaptchaField(ReCaptchaField):
    widget = RecaptchaWidget
    default_error_messages = {
        "captcha_invalid": CAPTCHA_REJECTED,
        "captcha_error": CAPTCHA_UNAVAILABLE,
        "required": CAPTCHA_REJECTED,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote_ip = ""

    def validate(self, value):
        if not value:
            raise ValidationError(self.error_messages["required"], code="required")
        try:
            ok = siteverify(token=value, remote_ip=self.remote_ip)
        except CaptchaUnavailable as exc:
            logger.warning("captcha verify endpoint unavailable: %s", exc)
            raise ValidationError(
                self.error_messages["captcha_error"], code="captcha_error"
            ) from exc
        if not ok:
            raise ValidationError(
                self.error_messages["captcha_invalid"], code="captcha_invalid"
            )
