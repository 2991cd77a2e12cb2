"""Client-IP resolution: the one function everything that needs an IP uses."""

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest


# Every request asks (the IP filter, the limits): the same few clients parse
# once. Bounded, so forged X-Forwarded-For values cost memory only up to this.
@functools.lru_cache(maxsize=4096)
def _valid(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """Return the address of the client that sent ``request``.

    ``REMOTE_ADDR`` is the peer of this process. Only when
    ``KREO_TRUSTED_PROXY_COUNT`` reverse proxies stand in front of the app is
    ``X-Forwarded-For`` read, and then only the entry the outermost trusted
    proxy appended: everything left of it is written by the client and can be
    forged.
    """
    remote = _valid(request.META.get("REMOTE_ADDR", "")) or "0.0.0.0"  # noqa: S104  # nosec B104
    proxies = settings.KREO_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h]
    if len(hops) < proxies:
        return remote
    return _valid(hops[-proxies]) or remote


def client_ip_key(group: str, request: HttpRequest) -> str:
    """A django-ratelimit key function over ``client_ip``."""
    return client_ip(request)
