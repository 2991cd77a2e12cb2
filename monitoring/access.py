"""Who may read monitoring detail: a bearer token or an allowed network.

The token is ``MONITORING_TOKEN``; networks are ``MONITORING_ALLOWED_CIDRS``,
matched against the client address ``kreo.net.client_ip`` resolves (only the
trusted proxies' ``X-Forwarded-For`` entry counts, so a forged header cannot
put a request inside the allow list).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

from kreo.net import client_ip

# Answers of ``access``: allowed, no credentials (401), wrong credentials (403).
ALLOWED, UNAUTHENTICATED, FORBIDDEN = "allowed", "unauthenticated", "forbidden"


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]):
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c)


def bearer(request: HttpRequest) -> str | None:
    """The bearer token of the Authorization header, or None without one."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_valid(request: HttpRequest) -> bool:
    expected = settings.MONITORING_TOKEN
    given = bearer(request)
    return bool(expected and given) and hmac.compare_digest(
        given.encode(), expected.encode()
    )


def network_allowed(request: HttpRequest) -> bool:
    networks = _networks(tuple(settings.MONITORING_ALLOWED_CIDRS))
    if not networks:
        return False
    address = ipaddress.ip_address(client_ip(request))
    return any(address in network for network in networks)


def access(request: HttpRequest) -> str:
    """Decide on a monitoring read: a good token, or no token from an allowed
    network; a wrong token is refused even from an allowed network."""
    if token_valid(request):
        return ALLOWED
    if request.META.get("HTTP_AUTHORIZATION"):
        return FORBIDDEN
    return ALLOWED if network_allowed(request) else UNAUTHENTICATED


def detail_allowed(request: HttpRequest) -> bool:
    """Health detail: for signed-in staff, or whoever ``access`` lets in."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    return access(request) == ALLOWED
