"""Staff write incidents and maintenance windows here; states come from probes."""

from django.contrib import admin

from status import services
from status.models import Component, Incident, IncidentUpdate, Maintenance


@admin.register(Component)
class ComponentAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "state_since", "position")
    fields = ("name", "description", "position", "state", "state_since")
    readonly_fields = ("state", "state_since")

    def has_add_permission(self, request):
        return False  # the six components come from status.probes

    def has_delete_permission(self, request, obj=None):
        return False


class IncidentUpdateInline(admin.StackedInline):
    model = IncidentUpdate
    extra = 1
    can_delete = False
    fields = ("status", "body", "created_at", "notified_at")
    readonly_fields = ("created_at", "notified_at")

    def has_change_permission(self, request, obj=None):
        return False  # an update once sent stays as sent; post a new one


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("title", "impact", "status", "created_at", "resolved_at")
    list_filter = ("impact", "status")
    search_fields = ("title",)
    fields = ("title", "impact", "components", "status", "created_at", "resolved_at")
    readonly_fields = ("status", "resolved_at")
    filter_horizontal = ("components",)
    inlines = [IncidentUpdateInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.incident_saved(
            actor=request.user, incident=obj, created=not change, request=request
        )

    def save_formset(self, request, form, formset, change):
        if formset.model is not IncidentUpdate:
            return super().save_formset(request, form, formset, change)
        for update in formset.save(commit=False):
            services.incident_update_create(
                actor=request.user,
                incident=form.instance,
                status=update.status,
                body=update.body,
                request=request,
            )
        return None


@admin.register(Maintenance)
class MaintenanceAdmin(admin.ModelAdmin):
    list_display = ("title", "starts_at", "ends_at")
    fields = ("title", "body", "starts_at", "ends_at", "components")
    filter_horizontal = ("components",)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        previous = None
        if change and "starts_at" in form.initial:
            previous = (form.initial["starts_at"], form.initial["ends_at"])
        services.maintenance_saved(
            actor=request.user,
            maintenance=form.instance,
            request=request,
            previous=previous,
        )

    def delete_model(self, request, obj):
        services.maintenance_delete(
            actor=request.user, maintenance=obj, request=request
        )

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
