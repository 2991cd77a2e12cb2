"""Check runs and results in the admin: read-only (a result is evidence,
nobody edits it), for the Admin and Auditor groups; the cockpit, its
drill-down per control and "Run checks now" hang off the check runs."""

from __future__ import annotations

import json
from collections import Counter

from django.contrib import admin
from django.urls import path
from django.utils.html import format_html

from compliance import pack_views, views
from compliance.models import CheckRun, ControlResult
from kreo.adminkit import ReadOnlyAdmin


class CockpitOnly(ReadOnlyAdmin):
    """Visible to the cockpit's readers; nobody adds, edits or deletes."""

    def has_module_permission(self, request):
        return views.cockpit_allowed(request.user)

    def has_view_permission(self, request, obj=None):
        return views.cockpit_allowed(request.user)


def _badge(status: str):
    return format_html(
        '<strong class="check-status check-{}">{}</strong>', status, status
    )


class ControlResultInline(CockpitOnly, admin.TabularInline):
    model = ControlResult
    fields = ["control_id", "status_badge", "summary"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="status")
    def status_badge(self, obj):
        return _badge(obj.status)


@admin.register(CheckRun)
class CheckRunAdmin(CockpitOnly, admin.ModelAdmin):
    change_list_template = "compliance/checkrun_change_list.html"
    list_display = ["started_at", "trigger", "actor", "finished_at", "statuses"]
    list_filter = ["trigger"]
    date_hierarchy = "started_at"
    readonly_fields = ["started_at", "finished_at", "trigger", "actor"]
    inlines = [ControlResultInline]

    class Media:
        css = {"all": ("css/admin-compliance.css",)}

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="results")
    def statuses(self, obj):
        counts = Counter(obj.results.values_list("status", flat=True))
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))

    def get_urls(self):
        site = self.admin_site
        return [
            path(
                "cockpit/",
                site.admin_view(self.cockpit_view),
                name="compliance_cockpit",
            ),
            path(
                "cockpit/<str:control_id>/",
                site.admin_view(self.control_view),
                name="compliance_control",
            ),
            path(
                "run-now/",
                site.admin_view(self.run_now_view),
                name="compliance_checkrun_run_now",
            ),
            path(
                "pack/",
                site.admin_view(pack_views.pack_build_view),
                name="compliance_pack",
            ),
            *super().get_urls(),
        ]

    def cockpit_view(self, request):
        return views.cockpit(request, self.admin_site)

    def control_view(self, request, control_id):
        return views.control_detail(request, self.admin_site, control_id)

    def run_now_view(self, request):
        return views.run_now(request, self.admin_site)


@admin.register(ControlResult)
class ControlResultAdmin(CockpitOnly, admin.ModelAdmin):
    list_display = ["checked_at", "control_id", "status_badge", "summary", "run"]
    list_filter = ["status", "control_id"]
    search_fields = ["control_id", "summary"]
    date_hierarchy = "checked_at"
    fields = ["run", "control_id", "checked_at", "status", "summary", "evidence_json"]
    readonly_fields = fields

    class Media:
        css = {"all": ("css/admin-compliance.css",)}

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return _badge(obj.status)

    @admin.display(description="evidence")
    def evidence_json(self, obj):
        return format_html(
            '<pre class="evidence">{}</pre>',
            json.dumps(obj.evidence, indent=2, sort_keys=True, ensure_ascii=False),
        )
