"""Account pages. Each view parses input, calls a service and renders."""

import base64
import json
from io import BytesIO
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import api_tokens, limits, passkeys, selectors, services
from accounts.captcha import (
    CAPTCHA_UNAVAILABLE,
    captcha_csp,
    captcha_refused_as_bad_input,
)
from accounts.captcha.services import captcha_failure_record
from accounts.forms import (
    CaptchaPasswordResetForm,
    EmailAuthenticationForm,
    EmailForm,
    EnrolCodeForm,
    OTPForm,
    PasskeyRemoveForm,
    PasswordConfirmForm,
    SignupForm,
    TimeZoneForm,
)
from audit.models import Outcome
from audit.services import audit_record
from kreo.net import client_ip

OTP_INVALID = "The code is not correct, or it has been used already."
OTP_EXPIRED = "Your sign-in took too long. Please sign in again."
PASSWORD_WRONG = "That is not your password."  # noqa: S105  # nosec B105
SESSION_SIGNED_OUT = "The session has been signed out."
TIME_ZONE_SET = "Times are now shown in {zone}."
TIME_ZONE_UNKNOWN = "Choose a time zone from the list."
PASSKEY_ADDED = "The passkey {name} has been added."
PASSKEY_REMOVED = "The passkey {name} has been removed."
PASSKEY_BAD_REQUEST = "The browser's answer could not be read. Please try again."
OTHERS_SIGNED_OUT = "All your other sessions have been signed out."
TOKEN_REVOKED = "The API token has been revoked: it no longer works."  # noqa: S105  # nosec B105
TWO_FACTOR_OFF = "Two-factor authentication is off."
VERIFIED_SIGNED_IN = "{email} is confirmed. You are signed in."
VERIFIED_SIGN_IN = "{email} is confirmed. Please sign in."
VERIFY_INVALID_OR_EXPIRED = (
    "This link is not valid: it has expired, been used already or been changed. "
    "Ask for a new one below."
)


# Session key: the page a sign-up asked to come back to (``next``), kept until
# the address is confirmed in the same browser.
AFTER_SIGNUP = "accounts.after_signup"


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(settings.LOGIN_REDIRECT_URL)


def _captcha_failed(request: HttpRequest, form, scope: str) -> int:
    """Record a CAPTCHA the form refused; return the status to answer with.

    A crafted or stale ALTCHA payload is bad input (400); an unsolved CAPTCHA
    is an ordinary form error (200).
    """
    errors = form.errors.as_data().get("captcha")
    if not errors:
        return 200
    error = errors[0]
    message = error.messages[0]
    # The widget is a hidden input, whose errors the form template does not
    # show: repeat them at the top of the form.
    form.add_error(None, message)
    bad_input = captcha_refused_as_bad_input(error.code)
    if bad_input:
        code = error.code
    else:
        code = "unavailable" if message == CAPTCHA_UNAVAILABLE else "rejected"
    captcha_failure_record(request=request, scope=scope, code=code, description=message)
    return 400 if bad_input else 200


# Sign-in ------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = _next(request)
    if request.user.is_authenticated:
        return redirect(next_url)
    ip = client_ip(request)
    if request.method == "POST":
        email = request.POST.get("username", "")
        wait = limits.limit_wait(request, scope="login", email=email)
        if wait:
            return limits.limited_response(request, scope="login", wait=wait)
        form = EmailAuthenticationForm(
            request.POST, captcha=limits.captcha_needed(email=email, ip=ip)
        )
        form.set_remote_ip(ip)
        if form.is_valid():
            result = services.login_attempt(
                request=request,
                email=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
            if result.needs_otp:
                query = urlencode({"next": next_url})
                return redirect(f"{reverse('accounts:login-otp')}?{query}")
            if result.user is not None:
                return redirect(next_url)
            form.add_error(None, result.error)
        status = _captcha_failed(request, form, "login")
        if "captcha" not in form.fields and limits.captcha_needed(email=email, ip=ip):
            # Failures just crossed the threshold: ask from the next try on.
            form.add_captcha()
    else:
        status = 200
        form = EmailAuthenticationForm(captcha=limits.captcha_needed(email="", ip=ip))
    response = render(
        request,
        "accounts/login.html",
        {"form": form, "next": next_url},
        status=status,
    )
    return captcha_csp(response) if "captcha" in form.fields else response


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def login_otp_view(request: HttpRequest) -> HttpResponse:
    user = services.login_pending_user(request)
    if user is None:
        messages.info(request, OTP_EXPIRED)
        return redirect("accounts:login")
    next_url = _next(request)
    form = OTPForm(request.POST or None)
    if request.method == "POST":
        wait = limits.limit_wait(request, scope="otp", email=user.email)
        if wait:
            return limits.limited_response(request, scope="otp", wait=wait)
        if form.is_valid():
            if services.login_otp_attempt(
                request=request, user=user, token=form.cleaned_data["token"]
            ):
                return redirect(next_url)
            form.add_error("token", OTP_INVALID)
    second = selectors.second_factors(user=user)
    return render(
        request,
        "accounts/login_otp.html",
        {"form": form, "next": next_url, **second},
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    services.user_logout(request=request)
    return redirect(settings.LOGOUT_REDIRECT_URL)


# Sign-up ------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def signup_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignupForm(request.POST or None)
    form.set_remote_ip(client_ip(request))
    if request.method == "POST":
        wait = limits.limit_wait(
            request, scope="signup", email=request.POST.get("email", "")
        )
        if wait:
            return limits.limited_response(request, scope="signup", wait=wait)
        if form.is_valid():
            services.user_signup(
                request=request,
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
            if request.POST.get("next") or request.GET.get("next"):
                # Where to go once the address is confirmed in this browser
                # (an invitation's link, for one).
                request.session[AFTER_SIGNUP] = _next(request)
            return redirect("accounts:signup-done")
        status = _captcha_failed(request, form, "signup")
    else:
        status = 200
    return captcha_csp(
        render(request, "accounts/signup.html", {"form": form}, status=status)
    )


def signup_done_view(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/signup_done.html")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def verify_view(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button; only the POST verifies (mail scanners follow GETs)."""
    if request.method == "POST":
        try:
            user = services.user_verify_email(request=request, token=token)
        except ValueError as exc:
            return render(
                request,
                "accounts/verify.html",
                {"error": str(exc), "resend": EmailForm()},
                status=400,
            )
        if request.user.is_authenticated and request.user.pk == user.pk:
            messages.success(request, VERIFIED_SIGNED_IN.format(email=user.email))
            return redirect(
                request.session.pop(AFTER_SIGNUP, None) or settings.LOGIN_REDIRECT_URL
            )
        messages.success(request, VERIFIED_SIGN_IN.format(email=user.email))
        return redirect("accounts:login")
    user = services.verify_link_user(token=token)
    if user is None or user.email_verified_at is not None:
        # Nothing is recorded for a GET: mail scanners fetch links too.
        return render(
            request,
            "accounts/verify.html",
            {"error": VERIFY_INVALID_OR_EXPIRED, "resend": EmailForm()},
            status=400,
        )
    return render(request, "accounts/verify.html", {"email": user.email})


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def resend_view(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    if request.method == "POST":
        wait = limits.limit_wait(
            request, scope="resend", email=request.POST.get("email", "")
        )
        if wait:
            return limits.limited_response(request, scope="resend", wait=wait)
        if form.is_valid():
            services.verification_resend(
                request=request, email=form.cleaned_data["email"]
            )
            return redirect("accounts:signup-done")
    return render(request, "accounts/resend.html", {"form": form})


# Password reset and change ------------------------------------------------


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset page, with the mail handed to a task (see the service)."""

    form_class = CaptchaPasswordResetForm
    template_name = "accounts/password_reset.html"
    success_url = reverse_lazy("accounts:password-reset-done")

    def post(self, request, *args, **kwargs):
        wait = limits.limit_wait(
            request, scope="reset", email=request.POST.get("email", "")
        )
        if wait:
            return limits.limited_response(request, scope="reset", wait=wait)
        return super().post(request, *args, **kwargs)

    def get_form(self, form_class=None):
        form = super().get_form(form_class)
        form.set_remote_ip(client_ip(self.request))
        return form

    def form_valid(self, form):
        # Not super(): Django's form_valid sends the mail inside the request.
        services.password_reset_request(
            request=self.request, email=form.cleaned_data["email"]
        )
        return HttpResponseRedirect(self.get_success_url())

    def form_invalid(self, form):
        status = _captcha_failed(self.request, form, "reset")
        return self.render_to_response(self.get_context_data(form=form), status=status)

    def render_to_response(self, context, **kwargs):
        return captcha_csp(super().render_to_response(context, **kwargs))


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:login")

    def form_valid(self, form):
        response = super().form_valid(form)
        services.password_reset_done(request=self.request, user=form.user)
        messages.success(self.request, "Your password has been reset. Please sign in.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:security")

    def form_valid(self, form):
        old_key = self.request.session.session_key
        response = super().form_valid(form)  # cycles the session key
        services.password_changed(request=self.request, user=form.user, old_key=old_key)
        messages.success(self.request, "Your password has been changed.")
        return response


# Security page and two-factor ---------------------------------------------


@login_required
@never_cache
def security_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    user_passkeys = selectors.passkey_list(user=user)
    sessions = [
        {
            "record": record,
            "browser": selectors.browser_label(record.user_agent),
            "current": record.session_key == request.session.session_key,
        }
        for record in selectors.session_list(user=user)
    ]
    return render(
        request,
        "accounts/security.html",
        {
            "sessions": sessions,
            "history": selectors.signin_history(user=user),
            "otp": selectors.otp_status(user=user),
            "disable_form": PasswordConfirmForm(),
            "recovery_form": PasswordConfirmForm(prefix="recovery"),
            "passkeys": user_passkeys,
            "passkey_remove_form": PasskeyRemoveForm(
                prefix="passkey", passkeys=user_passkeys
            ),
            "api_tokens": selectors.api_token_list(user=user),
            "zone_form": TimeZoneForm(initial={"time_zone": user.time_zone}),
        },
    )


@login_required
@require_POST
def time_zone_view(request: HttpRequest) -> HttpResponse:
    form = TimeZoneForm(request.POST)
    if not form.is_valid():
        messages.error(request, TIME_ZONE_UNKNOWN)
        return redirect("accounts:security")
    zone = form.cleaned_data["time_zone"]
    services.user_time_zone_set(request=request, user=request.user, time_zone=zone)
    messages.success(request, TIME_ZONE_SET.format(zone=zone))
    return redirect("accounts:security")


@login_required
@require_POST
def session_revoke_view(request: HttpRequest, record_id: int) -> HttpResponse:
    if services.session_revoke(
        request=request, actor=request.user, record_id=record_id
    ):
        messages.success(request, SESSION_SIGNED_OUT)
    return redirect("accounts:security")


@login_required
@require_POST
def api_token_revoke_view(request: HttpRequest, token_id: str) -> HttpResponse:
    """Revoke one of one's own API tokens; any other id answers 404."""
    api_tokens.token_revoke(actor=request.user, token_id=token_id, request=request)
    messages.success(request, TOKEN_REVOKED)
    return redirect("accounts:security")


@login_required
@require_POST
def sessions_revoke_others_view(request: HttpRequest) -> HttpResponse:
    services.sessions_end_others(
        request=request,
        user=request.user,
        keep=request.session.session_key,
        reason="user",
    )
    messages.success(request, OTHERS_SIGNED_OUT)
    return redirect("accounts:security")


def _qr_data_uri(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@login_required
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def otp_enrol_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if selectors.otp_status(user=user)["enabled"]:
        if not user.is_verified():
            # Enrolled, but this session skipped the second step: start over.
            services.user_logout(request=request)
            return redirect("accounts:login")
        return redirect("accounts:security")
    device = services.otp_enrol_start(user=user)
    form = EnrolCodeForm(request.POST or None)
    if request.method == "POST":
        wait = limits.limit_wait(request, scope="otp", email=user.email)
        if wait:
            return limits.limited_response(request, scope="otp", wait=wait)
        if form.is_valid():
            try:
                codes = services.otp_enrol_confirm(
                    request=request, user=user, token=form.cleaned_data["token"]
                )
            except ValueError as exc:
                form.add_error("token", str(exc))
            else:
                return _codes_page(request, codes)
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return render(
        request,
        "accounts/otp_enrol.html",
        {"form": form, "qr": _qr_data_uri(device.config_url), "secret": secret},
    )


@login_required
@require_POST
def otp_recovery_view(request: HttpRequest) -> HttpResponse:
    """New recovery codes for the password; the old ones stop working."""
    form = PasswordConfirmForm(request.POST, prefix="recovery")
    wait = limits.limit_wait(request, scope="otp", email=request.user.email)
    if wait:
        return limits.limited_response(request, scope="otp", wait=wait)
    if not (
        form.is_valid() and request.user.check_password(form.cleaned_data["password"])
    ):
        audit_record(
            event_type="auth.2fa.failed",
            request=request,
            outcome=Outcome.FAILURE,
            error_code="recovery_bad_password",
        )
        messages.error(request, PASSWORD_WRONG)
        return redirect("accounts:security")
    try:
        codes = services.otp_recovery_regenerate(request=request, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("accounts:security")
    return _codes_page(request, codes, regenerated=True)


def _codes_page(request: HttpRequest, codes: list[str], *, regenerated=False):
    """The once-only page of recovery codes, with copy, download and print."""
    text = "Kreo recovery codes (each works once)\n\n" + "\n".join(codes) + "\n"
    return render(
        request,
        "accounts/otp_codes.html",
        {
            "codes": codes,
            "regenerated": regenerated,
            "download": "data:text/plain;charset=utf-8," + quote(text),
        },
    )


@login_required
@require_POST
def otp_disable_view(request: HttpRequest) -> HttpResponse:
    form = PasswordConfirmForm(request.POST)
    wait = limits.limit_wait(request, scope="otp", email=request.user.email)
    if wait:
        return limits.limited_response(request, scope="otp", wait=wait)
    if form.is_valid() and request.user.check_password(form.cleaned_data["password"]):
        services.otp_disable(request=request, user=request.user)
        messages.success(request, TWO_FACTOR_OFF)
    else:
        audit_record(
            event_type="auth.2fa.failed",
            request=request,
            outcome=Outcome.FAILURE,
            error_code="disable_bad_password",
        )
        messages.error(request, PASSWORD_WRONG)
    return redirect("accounts:security")


# Passkeys -------------------------------------------------------------------
# The browser half is static/js/passkeys.js: it asks for options, hands them
# to navigator.credentials and posts the answer back as JSON.


def _json_body(request: HttpRequest) -> dict | None:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _refused(exc: passkeys.PasskeyRefused) -> JsonResponse:
    return JsonResponse({"detail": str(exc), "code": exc.code}, status=400)


@login_required
@never_cache
@require_POST
def passkey_register_options_view(request: HttpRequest) -> HttpResponse:
    try:
        options = passkeys.registration_options(request=request, user=request.user)
    except passkeys.PasskeyRefused as exc:
        return _refused(exc)
    return HttpResponse(options, content_type="application/json")


@login_required
@never_cache
@require_POST
def passkey_add_view(request: HttpRequest) -> HttpResponse:
    wait = limits.limit_wait(request, scope="otp", email=request.user.email)
    if wait:
        return limits.limited_response(request, scope="otp", wait=wait, json=True)
    body = _json_body(request)
    if body is None or not isinstance(body.get("credential"), dict):
        return JsonResponse({"detail": PASSKEY_BAD_REQUEST}, status=400)
    try:
        passkey = passkeys.passkey_register(
            request=request,
            user=request.user,
            credential=json.dumps(body["credential"]),
            name=str(body.get("name") or ""),
        )
    except passkeys.PasskeyRefused as exc:
        return _refused(exc)
    messages.success(request, PASSKEY_ADDED.format(name=passkey.name))
    return JsonResponse({"redirect": reverse("accounts:security")})


@login_required
@require_POST
def passkey_remove_view(request: HttpRequest) -> HttpResponse:
    """Remove one of one's passkeys, for the password (as turning 2FA off)."""
    user = request.user
    wait = limits.limit_wait(request, scope="otp", email=user.email)
    if wait:
        return limits.limited_response(request, scope="otp", wait=wait)
    form = PasskeyRemoveForm(
        request.POST, prefix="passkey", passkeys=selectors.passkey_list(user=user)
    )
    if not (form.is_valid() and user.check_password(form.cleaned_data["password"])):
        audit_record(
            event_type="auth.2fa.failed",
            request=request,
            outcome=Outcome.FAILURE,
            error_code="passkey_remove_bad_password",
        )
        messages.error(request, PASSWORD_WRONG)
        return redirect("accounts:security")
    passkey_id = form.cleaned_data["passkey"]
    name = dict(form.fields["passkey"].choices).get(passkey_id, "")
    if passkeys.passkey_remove(request=request, user=user, passkey_id=passkey_id):
        messages.success(request, PASSKEY_REMOVED.format(name=name))
    return redirect("accounts:security")


@never_cache
@require_POST
def passkey_login_options_view(request: HttpRequest) -> HttpResponse:
    """Options for a sign-in: the second step of a pending sign-in when the
    page asks for it (``step=2fa``), else a sign-in without a password."""
    user = None
    if request.POST.get("step") == passkeys.SECOND_FACTOR:
        user = services.login_pending_user(request)
        if user is None:
            return JsonResponse({"detail": OTP_EXPIRED}, status=400)
    options = passkeys.authentication_options(request=request, user=user)
    return HttpResponse(options, content_type="application/json")


@never_cache
@require_POST
def passkey_login_view(request: HttpRequest) -> HttpResponse:
    """Check a passkey's answer and sign in; answers JSON with where to go."""
    body = _json_body(request)
    step = (body or {}).get("step")
    pending = None
    if step == passkeys.SECOND_FACTOR:
        pending = services.login_pending_user(request)
        if pending is None:
            return JsonResponse({"detail": OTP_EXPIRED}, status=400)
        wait = limits.limit_wait(request, scope="otp", email=pending.email)
        scope = "otp"
    else:
        wait = limits.limit_wait(request, scope="login")
        scope = "login"
    if wait:
        return limits.limited_response(request, scope=scope, wait=wait, json=True)
    if body is None or not isinstance(body.get("credential"), dict):
        return JsonResponse({"detail": PASSKEY_BAD_REQUEST}, status=400)
    try:
        passkey = passkeys.passkey_authenticate(
            request=request,
            credential=json.dumps(body["credential"]),
            user=pending,
        )
    except passkeys.PasskeyRefused as exc:
        return _refused(exc)
    services.login_passkey_finish(request=request, passkey=passkey, pending=pending)
    next_url = str(body.get("next") or "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse(settings.LOGIN_REDIRECT_URL)
    return JsonResponse({"redirect": next_url})
