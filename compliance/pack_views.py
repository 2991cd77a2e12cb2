"""The admin's "Evidence pack" page: pick a period, get the signed archive.

Wired under the admin site (``CheckRunAdmin.get_urls``), so the admin's
sign-in and two-factor requirement apply; Admin and Auditor group members
(and superusers) may build a pack.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.http import require_http_methods

from compliance.pack import PackError, pack_build
from kreo.permissions import GlobalRole, has_global_role

TEMPLATE = "compliance/pack/form.html"


class PackForm(forms.Form):
    start = forms.DateField(
        label="From",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput({"type": "date"}),
    )
    end = forms.DateField(
        label="To (inclusive)",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput({"type": "date"}),
    )


def _may_build(user) -> bool:
    return has_global_role(user, GlobalRole.ADMIN) or has_global_role(
        user, GlobalRole.AUDITOR
    )


@require_http_methods(["GET", "POST"])
def pack_build_view(request):
    if not _may_build(request.user):
        raise PermissionDenied
    form = PackForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = pack_build(
                start=form.cleaned_data["start"],
                end=form.cleaned_data["end"],
                actor=request.user,
                request=request,
            )
        except PackError as exc:
            form.add_error(None, str(exc))
        else:
            response = HttpResponse(result.data, content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="{result.name}"'
            response["X-Kreo-Pack-SHA256"] = result.sha256
            response["X-Kreo-Pack-Location"] = result.location
            return response
    context = {
        **admin.site.each_context(request),
        "title": "Evidence pack",
        "form": form,
    }
    return TemplateResponse(
        request, TEMPLATE, context, status=400 if form.errors else 200
    )
