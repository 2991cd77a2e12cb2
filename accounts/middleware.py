"""Session control: idle and absolute timeouts, revocation, required 2FA."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from accounts import services
from accounts.policy import otp_required_for
from kreo.views import error_response

SESSION_ENDED = "Your session ended. Please sign in again."
TWO_FACTOR_NEEDED = "Your account needs two-factor authentication: set it up first."

# Pages a signed-in user who still has to enrol in 2FA may open.
ENROL_ALLOWED = ("accounts:otp-enrol", "accounts:logout")


class SessionControlMiddleware:
    """End sessions that are idle, too old or revoked; make required 2FA happen.

    Runs after the authentication and OTP middleware, so ``request.user`` is
    known and ``is_verified()`` answers.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ended = services.session_check(request=request)
            if ended:
                messages.info(request, SESSION_ENDED)
                return redirect(settings.LOGIN_URL)
            if otp_required_for(user) and not user.is_verified():
                return self._enrol(request)
        return self.get_response(request)

    def _enrol(self, request):
        allowed = {reverse(name) for name in ENROL_ALLOWED}
        static = "/" + settings.STATIC_URL.lstrip("/")
        if request.path in allowed or request.path.startswith(static):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return error_response(request, 403, TWO_FACTOR_NEEDED)
        messages.warning(request, TWO_FACTOR_NEEDED)
        return redirect("accounts:otp-enrol")
