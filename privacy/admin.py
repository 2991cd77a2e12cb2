from django.contrib import admin

from privacy.models import DataExport


@admin.register(DataExport)
class DataExportAdmin(admin.ModelAdmin):
    list_display = ("user", "state", "requested_at", "expires_at", "downloaded_at")
    list_filter = ("state",)
    fields = readonly_fields = (
        "id",
        "user",
        "state",
        "size",
        "error",
        "requested_at",
        "ready_at",
        "expires_at",
        "downloaded_at",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
