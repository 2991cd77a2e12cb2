"""Alerts in the admin: a filtered list, acknowledge and resolve (with a
reason); the IP deny list and /admin/ allow list, every change audited."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from monitoring import ipfilter, services
from monitoring.models import Alert, IPListKind, IPRule

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
    readonly_fields = [f.name for f in Alert._meta.fields] + ["ip_blocks"]

    def has_add_permission(self, request):
        return False  # alerts come from the rules

    @admin.display(description="IP blocks")
    def ip_blocks(self, obj):
        blocks = obj.ip_rules.all()
        if not blocks:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:monitoring_iprule_change", args=[b.pk]), str(b))
                for b in blocks
            ),
        )

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


class IPRuleForm(forms.ModelForm):
    """Refuses a malformed network, a past expiry, and a change that would
    lock the staff member out of the admin, each with its message."""

    request = None  # set per request by IPRuleAdmin.get_form

    class Meta:
        model = IPRule
        fields = ("kind", "network", "reason", "expires_at")

    def clean(self):
        data = super().clean()
        kind, network = data.get("kind"), data.get("network")
        if kind and network is not None:
            try:
                parsed = ipfilter.parse_network(network, deny=kind == IPListKind.DENY)
                data["network"] = str(parsed)
            except ipfilter.NetworkError as exc:
                self.add_error("network", str(exc))
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            self.add_error("expires_at", services.IP_EXPIRY_PAST)
        if not self.errors:
            change = {
                "kind": kind,
                "network": data["network"],
                "expires_at": expires_at,
            }
            error = services.ip_rule_lockout_error(
                request=self.request, change=change, exclude_id=self.instance.pk
            )
            if error:
                raise ValidationError(error)
        return data


@admin.register(IPRule)
class IPRuleAdmin(admin.ModelAdmin):
    form = IPRuleForm
    list_display = (
        "network",
        "kind",
        "in_force",
        "expires_at",
        "reason",
        "source",
        "alert_link",
        "created_label",
        "created_at",
    )
    list_filter = ("kind", "source", "created_at")
    search_fields = ("network", "reason")
    readonly_fields = (
        "source",
        "alert_link",
        "created_label",
        "created_at",
        "updated_at",
    )

    @admin.display(boolean=True, description="In force")
    def in_force(self, obj):
        return obj.in_force()

    @admin.display(description="Alert")
    def alert_link(self, obj):
        if obj.alert_id is None:
            return "-"
        url = reverse("admin:monitoring_alert_change", args=[obj.alert_id])
        return format_html('<a href="{}">alert #{}</a>', url, obj.alert_id)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data.get(name) for name in IPRuleForm.Meta.fields}
        if change:
            saved = services.ip_rule_update(
                actor=request.user, rule_id=obj.pk, request=request, **fields
            )
        else:
            saved = services.ip_rule_create(
                actor=request.user, request=request, **fields
            )
        obj.pk, obj.network = saved.pk, saved.network

    def delete_model(self, request, obj):
        try:
            services.ip_rule_delete(actor=request.user, rule_id=obj.pk, request=request)
        except services.IPRuleError as exc:
            self.message_user(request, f"{obj}: {exc}", messages.ERROR)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)
