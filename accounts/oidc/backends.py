"""The OIDC authentication backend: code for tokens, then full ID token checks.

mozilla-django-oidc's backend leaves the audience and the issuer unchecked
and matches users on email; this one checks signature (RS256 from the
provider's JWKS), issuer, audience, expiry and nonce, and hands identity
matching to ``services.identity_resolve`` (issuer and subject).
"""

import secrets

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import absolutify

from accounts.oidc import errors

# ID token claims without which a token is refused.
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]


class KreoOIDCBackend(OIDCAuthenticationBackend):
    """Settings are read per call (the tests point them at a local provider)."""

    refresh_token = ""  # nosec B105 - empty: none received yet

    def __init__(self, *args, **kwargs):
        self.UserModel = get_user_model()

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self):  # noqa: N802 (the library's names)
        return settings.OIDC_OP_TOKEN_ENDPOINT

    @property
    def OIDC_OP_JWKS_ENDPOINT(self):  # noqa: N802
        return settings.OIDC_OP_JWKS_ENDPOINT

    @property
    def OIDC_RP_CLIENT_ID(self):  # noqa: N802
        return settings.OIDC_RP_CLIENT_ID

    @property
    def OIDC_RP_CLIENT_SECRET(self):  # noqa: N802
        return settings.OIDC_RP_CLIENT_SECRET

    @property
    def OIDC_RP_SIGN_ALGO(self):  # noqa: N802
        return settings.OIDC_RP_SIGN_ALGO

    @property
    def OIDC_RP_IDP_SIGN_KEY(self):  # noqa: N802
        return None

    def authenticate(self, request, nonce=None, code_verifier=None, **kwargs):
        """Run only from the callback view, which passes nonce and verifier."""
        if request is None or nonce is None or code_verifier is None:
            return None
        if not request.GET.get("code"):
            return None
        claims, id_token = self.claims_for_code(
            request, nonce=nonce, code_verifier=code_verifier
        )
        from accounts.oidc import services

        user = services.identity_resolve(
            request=request,
            claims=claims,
            link_to=kwargs.get("link_to"),
            refresh_token=self.refresh_token,
        )
        user.sso = services.SSOResult(claims=claims, id_token=id_token)
        return user

    def claims_for_code(
        self, request, *, nonce: str, code_verifier: str
    ) -> tuple[dict, str]:
        """Exchange the callback's code; return the checked claims and token.

        Shared by sign-in and re-authentication (accounts.oidc.reauth), which
        matches the claims against the signed-in user instead of resolving one.
        """
        code = request.GET.get("code")
        if not code:
            raise errors.SSOFailure("bad_token")
        self.request = request
        try:
            token_info = self.get_token(
                {
                    "client_id": self.OIDC_RP_CLIENT_ID,
                    "client_secret": self.OIDC_RP_CLIENT_SECRET,
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": absolutify(
                        request, reverse("oidc_authentication_callback")
                    ),
                    "code_verifier": code_verifier,
                }
            )
        except requests.RequestException as exc:
            raise errors.SSOFailure("code_rejected") from exc
        if not isinstance(token_info, dict):
            raise errors.SSOFailure("bad_token")  # JSON, but not a token response
        id_token = token_info.get("id_token")
        if not isinstance(id_token, str):
            raise errors.SSOFailure("bad_token")
        refresh = token_info.get("refresh_token")
        self.refresh_token = refresh if isinstance(refresh, str) else ""
        return self.verify_token(id_token, nonce=nonce), id_token

    def claims_for_refresh(self, refresh_token: str) -> tuple[dict, str]:
        """Use a refresh token at the token endpoint (grant ``refresh_token``);
        return the new ID token's checked claims and the next refresh token.

        ``requests.HTTPError`` when the provider refuses the grant (session
        ended, user disabled), ``requests.RequestException`` when it cannot
        be reached, ``SSOFailure`` when its answer does not check out.
        """
        token_info = self.get_token(
            {
                "client_id": self.OIDC_RP_CLIENT_ID,
                "client_secret": self.OIDC_RP_CLIENT_SECRET,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
            }
        )
        if not isinstance(token_info, dict) or not isinstance(
            token_info.get("id_token"), str
        ):
            raise errors.SSOFailure("bad_token")
        id_token = token_info["id_token"]
        try:
            # A refreshed ID token repeats the sign-in's nonce, if any: the
            # grant itself (client secret, refresh token) is the proof here.
            nonce = jwt.decode(id_token, options={"verify_signature": False}).get(
                "nonce", ""
            )
        except jwt.PyJWTError as exc:
            raise errors.SSOFailure("bad_token") from exc
        claims = self.verify_token(id_token, nonce=str(nonce))
        following = token_info.get("refresh_token")
        return claims, following if isinstance(following, str) else refresh_token

    def verify_token(self, token, **kwargs):
        """Check the ID token completely; raise SSOFailure with the reason."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise errors.SSOFailure("bad_token") from exc
        if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
            raise errors.SSOFailure("bad_signature")
        try:
            key = self.retrieve_matching_jwk(token)
        except (SuspiciousOperation, jwt.PyJWTError, KeyError) as exc:
            raise errors.SSOFailure("bad_signature") from exc
        except requests.RequestException as exc:
            raise errors.SSOFailure("provider_unreachable") from exc
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.KREO_OIDC_ISSUER,
                leeway=settings.OIDC_LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError as exc:
            raise errors.SSOFailure("bad_signature") from exc
        except jwt.ExpiredSignatureError as exc:
            raise errors.SSOFailure("expired_token") from exc
        except jwt.InvalidAudienceError as exc:
            raise errors.SSOFailure("wrong_audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise errors.SSOFailure("wrong_issuer") from exc
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError) as exc:
            raise errors.SSOFailure("expired_token") from exc
        except jwt.PyJWTError as exc:
            raise errors.SSOFailure("bad_token") from exc
        azp = claims.get("azp")
        if azp is not None and azp != self.OIDC_RP_CLIENT_ID:
            raise errors.SSOFailure("wrong_audience")
        nonce = kwargs.get("nonce") or ""
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise errors.SSOFailure("nonce_mismatch")
        return claims
