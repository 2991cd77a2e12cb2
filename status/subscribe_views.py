"""Subscribe, confirm (double opt-in) and unsubscribe (one click)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from kreo.views import error_response
from status import subscriptions
from status.forms import SubscribeForm
from status.views import app_links

TOO_MANY = "Too many attempts. Please wait a while before trying again."
CHECK_MAIL = (
    "If the address can receive mail, a confirmation link is on its way. "
    "Nothing is sent until it is opened."
)
CONFIRMED = "Subscribed: updates will be sent from now on."
UNSUBSCRIBED = "Unsubscribed: no more updates will be sent to this address."


def _too_many(request: HttpRequest, wait: int) -> HttpResponse:
    response = error_response(request, 429, TOO_MANY)
    response["Retry-After"] = str(wait)
    return response


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    form = SubscribeForm(request.POST or None)
    context = {"form": form, **app_links()}
    if request.method == "POST":
        if wait := subscriptions.limited(request=request, scope="subscribe"):
            return _too_many(request, wait)
        if form.is_valid():
            email = form.cleaned_data["email"]
            url = form.cleaned_data["webhook"]
            if url and not subscriptions.webhook_public(url):
                form.add_error("webhook", subscriptions.WEBHOOK_NOT_PUBLIC)
            else:
                # Counted per address as well; limited or not, new, pending or
                # subscribed: the same answer, so nobody learns who is listed.
                if not subscriptions.limited(
                    request=request, scope="subscribe", email=email
                ):
                    subscriptions.subscription_request(
                        email=email,
                        url=url,
                        components=form.chosen_components(),
                        request=request,
                    )
                context["message"] = CHECK_MAIL
                return render(request, "status/subscribe_done.html", context)
        return render(request, "status/subscribe.html", context, status=400)
    return render(request, "status/subscribe.html", context)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    context = {"token": token, **app_links()}
    if request.method == "POST":
        if wait := subscriptions.limited(request=request, scope="unsubscribe"):
            return _too_many(request, wait)
    try:
        if request.method == "POST":
            subscriber = subscriptions.subscription_confirm(
                token=token, request=request
            )
            context.update(subscriber=subscriber, message=CONFIRMED)
            return render(request, "status/subscribe_done.html", context)
        subscriptions.subscriber_for_confirm(token=token)
    except subscriptions.LinkInvalid:
        return error_response(request, 400, subscriptions.LINK_INVALID)
    return render(request, "status/confirm.html", context)


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs; the signed link is the key
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    context = {"token": token, **app_links()}
    if request.method == "POST":
        if wait := subscriptions.limited(request=request, scope="unsubscribe"):
            return _too_many(request, wait)
    try:
        if request.method == "POST":
            subscriptions.subscription_cancel(token=token, request=request)
            context["message"] = UNSUBSCRIBED
            return render(request, "status/subscribe_done.html", context)
        subscriptions.subscriber_for_unsubscribe(token=token)
    except subscriptions.LinkInvalid:
        return error_response(request, 400, subscriptions.LINK_INVALID)
    return render(request, "status/unsubscribe.html", context)
