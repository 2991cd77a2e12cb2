"""DRF throttles: the API's adapters to the limits table in ``kreo.limits``.

DRF authenticates the token inside the view, so the API is throttled here
rather than in ``kreo.middleware.RequestLimitMiddleware``: per signed-in user
(``KREO_RATE_API``) and per scope (uploads, downloads, token creation) on the
same counters as the pages, so a user's downloads are one budget whichever
way they come. The client IP is ``kreo.net.client_ip``, never DRF's own
reading of ``X-Forwarded-For`` (which trusts whatever the client wrote).

Anonymous callers (``KREO_RATE_API_ANON`` per client IP) are counted by the
middleware: DRF checks permissions before throttles, so an anonymous request
refused with 401 would never reach an anonymous-rate throttle.
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from kreo import limits


class _LimitThrottle(BaseThrottle):
    def scope(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        self._wait = 0
        if not settings.KREO_LIMITS_ENABLED:
            return True
        scope = self.scope(request, view)
        if scope is None:
            return True
        django_request = request._request
        self._wait = limits.check(django_request, scope, user=request.user)
        if not self._wait:
            return True
        limits.refused(django_request, scope, self._wait, user=request.user)
        return False

    def wait(self) -> float | None:
        return self._wait or None


def _signed_in(request) -> bool:
    return request.user is not None and request.user.is_authenticated


class UserThrottle(_LimitThrottle):
    """Requests per signed-in user (``KREO_RATE_API``)."""

    def scope(self, request, view):
        return limits.API if _signed_in(request) else None


class ScopeThrottle(_LimitThrottle):
    """The URL's own scope in ``kreo.limits.SCOPES`` (upload, download, token)."""

    def scope(self, request, view):
        match = request._request.resolver_match
        scope = limits.scope_for(match.view_name, request.method) if match else None
        return None if scope == limits.API else scope
