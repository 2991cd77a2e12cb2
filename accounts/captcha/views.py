"""The ALTCHA challenge endpoint the widget fetches from (same origin)."""

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.captcha.altcha import challenge_create


@never_cache
@require_safe
def altcha_challenge_view(request: HttpRequest) -> JsonResponse:
    """A fresh signed challenge; nothing is stored until one is redeemed."""
    if settings.KREO_CAPTCHA != "altcha":
        raise Http404
    return JsonResponse(challenge_create())
