"""Request rates for the API, per account."""

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import UserRateThrottle


class APIRateThrottle(UserRateThrottle):
    """Per-account request rate (``KREO_API_RATE``) on the rate-limit cache.

    The cache is the one django-ratelimit counts sign-ins on, so every process
    sees the same count; the rate is read at request time, not import time.
    """

    scope = "api"

    def __init__(self):
        self.cache = caches[settings.RATELIMIT_USE_CACHE]
        super().__init__()

    def get_rate(self):
        return settings.KREO_API_RATE
