"""Session refresh: SSO sessions go back to the IdP (prompt=none) every
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS, so roles are read again."""

from urllib.parse import urlsplit

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

    def process_response(self, request, response):
        """Let forms lead to the IdP: sign-out and link POST, then redirect
        there, and CSP's form-action covers the redirect's target too."""
        if settings.KREO_OIDC_ENABLED:
            origins = {
                "{0.scheme}://{0.netloc}".format(urlsplit(url))
                for url in (
                    settings.OIDC_OP_LOGOUT_ENDPOINT,
                    settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
                )
            }
            update = dict(getattr(response, "_csp_update", None) or {})
            update["form-action"] = [*update.get("form-action", []), *sorted(origins)]
            response._csp_update = update
        return response
