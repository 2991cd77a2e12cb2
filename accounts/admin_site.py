"""The admin site: no login form of its own, and staff need a verified OTP."""

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_otp.admin import OTPAdminSite

from kreo.views import error_response

ADMIN_NEEDS_OTP = (
    "The admin needs a staff account signed in with two-factor authentication."
)


class KreoAdminSite(OTPAdminSite):
    """Admin access requires ``is_staff`` and an OTP-verified session.

    Its login page sends people to the accounts login, so the admin gets the
    same rate limits, lockout, CAPTCHA and second step, and is no side door.
    """

    site_header = "Kreo administration"
    site_title = "Kreo admin"

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if request.user.is_authenticated:
            return error_response(request, 403, ADMIN_NEEDS_OTP)
        target = request.GET.get("next") or reverse("admin:index")
        return redirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")
