"""SSO pages: start (with kc_idp_hint), callback, logout, link, re-authenticate."""

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import devices_for_user
from mozilla_django_oidc.views import OIDCAuthenticationRequestView

from accounts.oidc import errors, reauth, services
from kreo.views import error_response

LINKED = "Single sign-on is now linked to your account."
REAUTHENTICATED = "Your sign-in provider confirmed it is you."


class AuthenticationRequestView(OIDCAuthenticationRequestView):
    """Send the browser to the IdP; ``?idp=google`` adds its kc_idp_hint."""

    http_method_names = ["get", "head"]  # HEAD wherever GET (monitors, checkers)

    def __init__(self, *args, **kwargs):
        View.__init__(self, *args, **kwargs)
        self.OIDC_OP_AUTH_ENDPOINT = settings.OIDC_OP_AUTHORIZATION_ENDPOINT
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        if not settings.KREO_OIDC_ENABLED:
            return error_response(request, 404, errors.NOT_CONFIGURED)
        idp = request.GET.get("idp", "")
        if idp and idp not in settings.KREO_OIDC_IDP_HINTS:
            return error_response(request, 400, errors.UNKNOWN_IDP)
        return super().get(request)

    def get_extra_params(self, request):
        idp = request.GET.get("idp", "")
        return {"kc_idp_hint": settings.KREO_OIDC_IDP_HINTS[idp]} if idp else {}


@method_decorator(never_cache, name="dispatch")
class CallbackView(View):
    """Finish the code flow; any refusal gets a clear page and an audit event."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        if not settings.KREO_OIDC_ENABLED:
            return error_response(request, 404, errors.NOT_CONFIGURED)
        if reauth.reauth_is_pending(request, request.GET.get("state", "")):
            return self.reauthenticated(request)
        states = request.session.get("oidc_states") or {}
        entry = states.pop(request.GET.get("state", ""), None)
        request.session["oidc_states"] = states
        if entry is None:
            # Not a flow this browser started: refuse, and leave its session
            # alone (a stray link must not sign anyone out).
            return self.failure(
                request, errors.SSOFailure("state_mismatch"), keep_session=True
            )
        if request.GET.get("error"):
            code = "provider_error"
            if request.GET["error"] in {"login_required", "interaction_required"}:
                code = "idp_session_ended"
            return self.failure(request, errors.SSOFailure(code))
        link_to = services.link_target(request)
        try:
            user = auth.authenticate(
                request,
                nonce=entry.get("nonce", ""),
                code_verifier=entry.get("code_verifier"),
                link_to=link_to,
            )
        except errors.SSOFailure as exc:
            return self.failure(request, exc, keep_session=link_to is not None)
        if user is None:
            return self.failure(request, errors.SSOFailure("bad_token"))
        if link_to is not None:
            messages.success(request, LINKED)
            return redirect("accounts:security")
        next_step = services.sso_login(request=request, user=user, result=user.sso)
        next_url = request.session.pop("oidc_login_next", None) or ""
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}
        ):
            next_url = reverse(settings.LOGIN_REDIRECT_URL)
        if next_step:
            return redirect(f"{next_step}?next={next_url}")
        return HttpResponseRedirect(next_url)

    def reauthenticated(self, request: HttpRequest) -> HttpResponse:
        """A re-authentication came back: back to the page that asked for it,
        with the refusal as a message; the session stays signed in."""
        try:
            next_url = reauth.reauth_finish(request=request)
        except errors.SSOFailure as exc:
            messages.error(request, errors.MESSAGES.get(exc.code, errors.REAUTH_FAILED))
            return HttpResponseRedirect(exc.next_url)
        messages.success(request, REAUTHENTICATED)
        return HttpResponseRedirect(next_url)

    def failure(self, request, exc: errors.SSOFailure, keep_session=False):
        user = exc.user
        if user is None and request.user.is_authenticated:
            user = request.user
        services.failure_record(request=request, code=exc.code, user=user)
        if request.user.is_authenticated and not keep_session:
            # A failed refresh ends the session it was refreshing.
            services.logout_url(request=request)
        status = 403 if exc.code in errors.FORBIDDEN else 400
        return render(
            request,
            "accounts/oidc/failed.html",
            {"message": exc.message, "code": exc.code},
            status=status,
        )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """End the local session, then the IdP's (RP-initiated, id_token_hint)."""
    return HttpResponseRedirect(services.logout_url(request=request))


@login_required
@require_POST
def link_view(request: HttpRequest) -> HttpResponse:
    """Start linking an SSO identity to the signed-in (and 2FA-verified) user."""
    if not settings.KREO_OIDC_ENABLED:
        return error_response(request, 404, errors.NOT_CONFIGURED)
    user = request.user
    if any(devices_for_user(user, confirmed=True)) and not user.is_verified():
        return error_response(request, 403, errors.LINK_NEEDS_2FA)
    services.link_start(request=request, user=user)
    return redirect(reverse("oidc_authentication_init"))


@login_required
@require_POST
def reauth_view(request: HttpRequest) -> HttpResponse:
    """Send the signed-in user to sign in again at the IdP (prompt=login)."""
    if not settings.KREO_OIDC_ENABLED:
        return error_response(request, 404, errors.NOT_CONFIGURED)
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse(settings.LOGIN_REDIRECT_URL)
    try:
        url = reauth.reauth_start(request=request, user=request.user, next_url=next_url)
    except errors.SSOFailure as exc:
        return error_response(request, 403, exc.message)
    return HttpResponseRedirect(url)
