"""Session refresh: SSO sessions go back to the IdP (prompt=none) every
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS, so roles are read again."""

from django.conf import settings
from django.urls import reverse
from django.utils.deprecation import MiddlewareMixin
from mozilla_django_oidc.middleware import SessionRefresh as BaseSessionRefresh

from accounts.oidc.services import ID_TOKEN


class SessionRefresh(BaseSessionRefresh):
    """mozilla-django-oidc's middleware, reading settings per request."""

    def __init__(self, get_response):
        MiddlewareMixin.__init__(self, get_response)

    @property
    def OIDC_OP_AUTHORIZATION_ENDPOINT(self):  # noqa: N802 (the library's names)
        return settings.OIDC_OP_AUTHORIZATION_ENDPOINT

    @property
    def OIDC_RP_CLIENT_ID(self):  # noqa: N802
        return settings.OIDC_RP_CLIENT_ID

    OIDC_STATE_SIZE = 32
    OIDC_NONCE_SIZE = 32
    OIDC_USE_NONCE = True
    OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"

    @property
    def OIDC_RP_SCOPES(self):  # noqa: N802
        return settings.OIDC_RP_SCOPES

    @property
    def exempt_urls(self):
        return {
            reverse(name)
            for name in (
                "oidc_authentication_init",
                "oidc_authentication_callback",
                "oidc_logout",
                "accounts:logout",
                "accounts:login-otp",
                "accounts:otp-enrol",
            )
        }

    exempt_url_patterns: set = set()

    def is_refreshable_url(self, request):
        return (
            settings.KREO_OIDC_ENABLED
            and ID_TOKEN in request.session
            and super().is_refreshable_url(request)
        )
