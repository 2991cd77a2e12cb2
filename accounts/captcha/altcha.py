"""ALTCHA: a self-hosted proof-of-work CAPTCHA (no third party, no cookie).

The server issues a challenge signed with ``KREO_ALTCHA_HMAC_KEY`` (the
``altcha`` package, protocol v2): PBKDF2-SHA256 with a random salt and nonce,
an expiry, and a key prefix the browser can only find by trying counters
(deterministic mode: the counter is drawn between ``KREO_ALTCHA_ATTEMPTS``
and twice that, so the work is bounded and the same for everyone). The
vendored widget (``static/vendor/altcha/``) solves it in Web Workers and
posts the base64 JSON payload with the form.

A payload is accepted once: its signature, expiry and answer are checked,
then the challenge is recorded as spent with an atomic ``cache.add()`` on the
shared rate-limit cache, which only the first request for a challenge wins.
The record lives until the challenge expires, after which the expiry check
refuses the payload anyway.
"""

import base64
import binascii
import hashlib
import json
import secrets
import time

import altcha
from django import forms
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.urls import reverse

from accounts.captcha.messages import (
    ALTCHA_EXPIRED,
    ALTCHA_FORGED,
    ALTCHA_MALFORMED,
    ALTCHA_REPLAYED,
    ALTCHA_WRONG,
    CAPTCHA_REJECTED,
)

ALGORITHM = "PBKDF2/SHA-256"
# A genuine payload is about 600 characters; anything far larger is not one.
MAX_PAYLOAD_CHARS = 4096
# The spent-challenge record outlives the expiry by this much, so a server
# whose clock runs slightly behind still finds it.
SPENT_GRACE_SECONDS = 60

# Error codes of a payload that was sent but cannot be accepted: the form
# answers 400 for these (bad input), and the audit event names the code.
REFUSED = {
    "altcha_malformed": ALTCHA_MALFORMED,
    "altcha_forged": ALTCHA_FORGED,
    "altcha_expired": ALTCHA_EXPIRED,
    "altcha_replayed": ALTCHA_REPLAYED,
    "altcha_wrong": ALTCHA_WRONG,
}


class Refused(Exception):
    """A payload this site does not accept; ``code`` is a key of ``REFUSED``."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code
        self.message = REFUSED[code]


def challenge_create() -> dict:
    """Return a new signed challenge, as the widget reads it (JSON object)."""
    attempts = max(1, settings.KREO_ALTCHA_ATTEMPTS)
    challenge = altcha.create_challenge(
        ALGORITHM,
        max(1, settings.KREO_ALTCHA_COST),
        counter=attempts + secrets.randbelow(attempts),
        expires_at=int(time.time()) + settings.KREO_ALTCHA_EXPIRES_SECONDS,
        hmac_secret=settings.KREO_ALTCHA_HMAC_KEY,
    )
    return challenge.to_dict()


def _parse(payload: str) -> altcha.Payload:
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise Refused("altcha_malformed")
    try:
        data = json.loads(base64.b64decode(payload, validate=True))
        return altcha.Payload(
            challenge=altcha.Challenge.from_dict(data["challenge"]),
            solution=altcha.Solution.from_dict(data["solution"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError, binascii.Error):
        # ValueError covers bad JSON and bad UTF-8; TypeError a JSON value of
        # the wrong shape (the widget's test mode sends null challenges).
        raise Refused("altcha_malformed") from None


def _verify(parsed: altcha.Payload) -> None:
    try:
        result = altcha.verify_solution(parsed, settings.KREO_ALTCHA_HMAC_KEY)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        # Fields of a type the library did not expect (it reads them before
        # checking the signature); such a payload was never issued here.
        raise Refused("altcha_malformed") from None
    if result.expired:
        raise Refused("altcha_expired")
    if result.invalid_signature or result.invalid_signature is None:
        raise Refused("altcha_forged")
    if not result.verified:
        raise Refused("altcha_wrong")
    expires_at = parsed.challenge.parameters.expires_at
    if not isinstance(expires_at, int):
        # Every challenge issued here carries an expiry; one without cannot
        # be made single-use for a bounded time.
        raise Refused("altcha_forged")


def payload_redeem(payload: str) -> None:
    """Accept ``payload`` once, or raise ``Refused`` saying why not."""
    parsed = _parse(payload)
    _verify(parsed)
    signature = str(parsed.challenge.signature)
    key = "altcha-spent:" + hashlib.sha256(signature.encode()).hexdigest()
    left = int(parsed.challenge.parameters.expires_at - time.time())
    cache = caches[settings.RATELIMIT_USE_CACHE]
    if not cache.add(key, 1, timeout=max(1, left) + SPENT_GRACE_SECONDS):
        raise Refused("altcha_replayed")


class AltchaWidget(forms.Widget):
    """``<altcha-widget>``, loading the vendored script from our own origin."""

    template_name = "accounts/altcha_widget.html"
    input_type = "hidden"  # the form template shows its errors at the top

    def get_context(self, name, value, attrs):
        context = super().get_context(name, None, attrs)
        context["widget"]["challenge_url"] = reverse("accounts:captcha-challenge")
        context["widget"]["configuration"] = json.dumps(
            {"humanInteractionSignature": False}
        )
        return context


class AltchaField(forms.CharField):
    """The ALTCHA payload: required, verified and spent when the form is cleaned."""

    widget = AltchaWidget
    default_error_messages = {"required": CAPTCHA_REJECTED}

    def __init__(self, **kwargs):
        kwargs.setdefault("label", "")
        super().__init__(strip=True, **kwargs)
        self.remote_ip = ""  # the same interface as the reCAPTCHA field

    def validate(self, value):
        super().validate(value)
        try:
            payload_redeem(value)
        except Refused as refused:
            raise ValidationError(refused.message, code=refused.code) from None
