"""Alerts in the admin: a filtered list, acknowledge and resolve (with a reason)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm

from monitoring import services
from monitoring.models import Alert

REASON_HELP = "Why: required to acknowledge or resolve."


class AlertActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=2000, help_text=REASON_HELP)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "severity",
        "rule",
        "subject_kind",
        "subject",
        "summary",
        "count",
        "first_seen",
        "last_seen",
        "state",
    )
    list_filter = ("state", "severity", "rule", "subject_kind", "last_seen")
    search_fields = ("subject", "summary")
    date_hierarchy = "last_seen"
    action_form = AlertActionForm
    actions = ("acknowledge", "resolve")
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request):
        return False  # alerts come from the rules

    def has_delete_permission(self, request, obj=None):
        return False  # the record of what was seen and who handled it stays

    def _apply(self, request, queryset, service, done: str) -> None:
        reason = request.POST.get("reason", "")
        handled = 0
        for alert in queryset:
            try:
                service(
                    actor=request.user,
                    alert_id=alert.pk,
                    reason=reason,
                    request=request,
                )
                handled += 1
            except services.AlertError as exc:
                self.message_user(request, f"Alert {alert.pk}: {exc}", messages.ERROR)
        if handled:
            self.message_user(request, f"{handled} alert(s) {done}.", messages.SUCCESS)

    @admin.action(description="Acknowledge (give a reason)", permissions=["change"])
    def acknowledge(self, request, queryset):
        self._apply(request, queryset, services.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve (give a reason)", permissions=["change"])
    def resolve(self, request, queryset):
        self._apply(request, queryset, services.alert_resolve, "resolved")
