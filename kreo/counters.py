"""Fixed-window counters on the shared rate-limit cache.

Request limits (``kreo.limits``) and the bounded audit of floods
(``audit.bounded``) count here, so every process sees one count.
"""

import time

from django.conf import settings
from django.core.cache import caches


def _cache():
    return caches[settings.RATELIMIT_USE_CACHE]


def window(period: int) -> tuple[int, int]:
    """(index of the current window of ``period`` seconds, seconds left in it)."""
    now = int(time.time())
    return now // period, period - now % period


def window_count(key: str, period: int, delta: int = 1) -> int:
    """Add ``delta`` to the counter ``key`` (one window's); return its value.

    One round trip when the counter exists (the common case); the key expires
    with its window. ``kreo.cache.CacheUnavailable`` propagates.
    """
    cache = _cache()
    try:
        return cache.incr(key, delta)
    except ValueError:
        if cache.add(key, delta, period + 1):
            return delta
        return cache.incr(key, delta)


def window_get(key: str) -> int:
    return _cache().get(key, 0)
