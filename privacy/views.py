"""Pages: ask for a data export, download it once, delete one's account."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods, require_safe

from accounts.oidc import reauth
from kreo.views import error_response
from privacy import services
from privacy.forms import AccountDeleteForm
from privacy.models import DataExport
from projects.ledger import LedgerError


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def export_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            services.export_request(actor=request.user, request=request)
        except ValidationError as exc:
            messages.error(request, exc.messages[0])
        else:
            messages.success(
                request, "Your export is being prepared: the link comes by e-mail."
            )
        return redirect("privacy:export")
    exports = DataExport.objects.filter(user=request.user)[:10]
    return render(request, "privacy/export.html", {"exports": exports})


@login_required
@require_safe
def export_download(request: HttpRequest, export_id, token: str) -> HttpResponse:
    try:
        export, chunks = services.export_open(
            actor=request.user, export_id=export_id, token=token, request=request
        )
    except PermissionDenied as exc:
        status = 404 if str(exc) == services.EXPORT_LINK_INVALID else 410
        return error_response(request, status, str(exc))
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Length"] = str(export.size)
    response["Content-Disposition"] = content_disposition_header(
        True, f"kreo-export-{export.requested_at:%Y%m%d}.zip"
    )
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete one's account after re-authenticating: the password, or for an
    account linked to SSO a fresh sign-in at the provider (accounts.oidc)."""
    user = request.user
    marker = reauth.reauth_marker(request, user)
    via_sso = marker is not None or not user.has_usable_password()
    form = AccountDeleteForm(request.POST or None, with_password=not via_sso)
    status = 400
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["confirm"].strip() != "DELETE":
            if via_sso:
                # One confirmation at the provider, one attempt.
                reauth.reauth_discard(request=request)
                messages.error(
                    request, f"{services.CONFIRM_MISMATCH} {services.REAUTH_REQUIRED}"
                )
                return redirect("privacy:account-delete")
            form.add_error("confirm", services.CONFIRM_MISMATCH)
        else:
            try:
                services.account_delete(
                    actor=user,
                    user=user,
                    request=request,
                    password=form.cleaned_data.get("password"),
                    reauthenticated=via_sso,
                )
            except ValidationError as exc:
                if via_sso:
                    messages.error(request, exc.messages[0])
                    return redirect("privacy:account-delete")
                form.add_error("password", exc.messages[0])
            except LedgerError as exc:
                # Nothing deleted; the page says why and the user may retry.
                form.add_error(None, str(exc))
                status = 503
            else:
                logout(request)
                messages.success(request, "Your account was deleted.")
                return redirect("accounts:login")
    rule = services.OWNED_PROJECTS_RULE.format(days=settings.KREO_PURGE_AFTER_DAYS)
    status = status if form.errors else 200
    context = {
        "form": form,
        "rule": rule,
        "confirmed_at_provider": marker is not None,
        "reauth_offered": marker is None and reauth.reauth_available(user),
        "password_set": user.has_usable_password(),
        "reauth_seconds": settings.KREO_SSO_REAUTH_SECONDS,
    }
    return render(request, "privacy/account_delete.html", context, status=status)
