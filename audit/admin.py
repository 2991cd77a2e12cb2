"""The admin of the audit trail: read-only, auditors only, every access audited."""

import io
from urllib.parse import urlencode

from auditlog.admin import LogEntryAdmin
from auditlog.models import LogEntry
from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from audit import serialise, services
from audit.models import (
    AuditArchive,
    AuditEvent,
    AuditReview,
    AuditSeal,
    FieldChange,
)
from audit.selectors import (
    is_auditor,
    notable_q,
    review_own_events,
    verification_latest,
)
from kreo.adminkit import ReadOnlyAdmin

EXPORT_LIMIT = 50_000
REVIEW_SIGNED_OFF = (
    "Review of {start:%d %b %Y} to {end:%d %b %Y} signed off by {who} at "
    "{at:%d %b %Y %H:%M} UTC. It can no longer be changed; the sign-off is "
    "in the audit trail."
)
SUMMARY_EMPTY = "No notable events in this period."


class AuditorOnly(ReadOnlyAdmin):
    """Visible to superusers and the Auditor group; nobody adds, edits, deletes."""

    def has_module_permission(self, request):
        return is_auditor(request.user)

    def has_view_permission(self, request, obj=None):
        return is_auditor(request.user)


class ViewAudited:
    """Every list and detail page records ``audit.view``."""

    audit_kind = "event"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if is_auditor(request.user) and response.status_code == 200:
            services.audit_view_record(
                request=request,
                kind=f"{self.audit_kind}.list",
                filters={k: v for k, v in request.GET.items()},
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if is_auditor(request.user) and response.status_code == 200:
            services.audit_view_record(
                request=request, kind=f"{self.audit_kind}.detail", object_id=object_id
            )
        return response


VERIFY_FAILED = "Audit trail verification FAILED ({when}, {who}): {error}"
VERIFY_PASSED = "Audit trail verified intact ({when}, {who})."
VERIFY_NEVER = "The audit trail has not been verified yet."


class VerificationStatus:
    """The list pages say, in red when it failed, how the last check ended."""

    def changelist_view(self, request, extra_context=None):
        if is_auditor(request.user) and request.method == "GET":
            last = verification_latest()
            if last is None:
                messages.warning(request, VERIFY_NEVER)
            else:
                when = f"{last.occurred_at:%Y-%m-%d %H:%M UTC}"
                if last.outcome == "success":
                    text = VERIFY_PASSED.format(when=when, who=last.actor_label)
                    messages.success(request, text)
                else:
                    text = VERIFY_FAILED.format(
                        when=when, who=last.actor_label, error=last.error_description
                    )
                    messages.error(request, text)
        return super().changelist_view(request, extra_context)


class NotableFilter(admin.SimpleListFilter):
    """Failures, lockouts, role and permission changes, admin writes, errors."""

    title = "notable"
    parameter_name = "notable"

    def lookups(self, request, model_admin):
        return [("yes", "Notable for review")]

    def queryset(self, request, queryset):
        return queryset.filter(notable_q()) if self.value() == "yes" else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(VerificationStatus, ViewAudited, AuditorOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "occurred_at",
        "event_type",
        "outcome",
        "actor_label",
        "source_ip",
        "path",
        "correlation_id",
    )
    list_filter = (NotableFilter, "outcome", "event_type", "spooled", "occurred_at")
    search_fields = ("=actor_label", "=source_ip", "=correlation_id", "=target_id")
    date_hierarchy = "occurred_at"
    ordering = ("-id",)  # newest first: what a reviewer looks for
    actions = ["export_jsonl"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    @admin.action(description="Export selected events as JSON Lines")
    def export_jsonl(self, request, queryset):
        if not request.user.has_perm("audit.export_auditevent") and not (
            request.user.is_superuser
        ):
            self.message_user(request, services.EXPORT_DENIED, messages.ERROR)
            return None
        out = io.StringIO()
        count = serialise.write_jsonl(
            serialise.iter_values(queryset.order_by("id")[:EXPORT_LIMIT]), out
        )
        services.audit_export_record(
            request=request, count=count, fmt="jsonl", filters={"via": "admin"}
        )
        response = HttpResponse(out.getvalue(), content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="audit-events.jsonl"'
        return response


@admin.register(AuditSeal)
class AuditSealAdmin(VerificationStatus, ViewAudited, AuditorOnly, admin.ModelAdmin):
    audit_kind = "seal"
    list_display = ("seq", "first_id", "last_id", "count", "last_at", "head")
    exclude = ("digests",)
    readonly_fields = (
        "seq",
        "first_id",
        "last_id",
        "count",
        "first_at",
        "last_at",
        "prev_head",
        "head",
        "key_id",
        "signature",
        "sealed_at",
    )


@admin.register(AuditArchive)
class AuditArchiveAdmin(ViewAudited, AuditorOnly, admin.ModelAdmin):
    audit_kind = "archive"
    list_display = ("first_id", "last_id", "count", "first_at", "last_at", "state")
    list_filter = ("state",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class ReviewSignOffForm(forms.ModelForm):
    """The sign-off: a comment, and a reason when the period holds the
    signer's own notable events (``signer`` is set by the admin)."""

    signer = None

    class Meta:
        model = AuditReview
        fields = ("comment", "own_events_reason")
        labels = {"own_events_reason": "Reason for signing your own activity"}
        help_texts = {
            "own_events_reason": (
                "Needed only when this period holds notable events of your own; "
                "otherwise another auditor signs it off."
            )
        }

    def clean_comment(self):
        comment = self.cleaned_data.get("comment", "").strip()
        if not comment:
            raise forms.ValidationError(services.REVIEW_NEEDS_COMMENT)
        return comment

    def clean_own_events_reason(self):
        reason = self.cleaned_data.get("own_events_reason", "").strip()
        if self.signer is not None and self.instance.pk and not reason:
            own = review_own_events(review=self.instance, user=self.signer).count()
            if own:
                raise forms.ValidationError(
                    services.REVIEW_OWN_EVENTS.format(count=own)
                )
        return reason


@admin.register(AuditReview)
class AuditReviewAdmin(ViewAudited, AuditorOnly, admin.ModelAdmin):
    """Auditors sign a review off by saving it with a comment."""

    audit_kind = "review"
    form = ReviewSignOffForm
    list_display = (
        "period_start",
        "period_end",
        "notable_count",
        "signed_off_label",
        "signed_off_at",
    )
    fields = (
        "period_start",
        "period_end",
        "notable_count",
        "notable_events",
        "summary_table",
        "signed_off_label",
        "signed_off_at",
        "comment",
        "own_events_reason",
    )
    readonly_fields = (
        "period_start",
        "period_end",
        "notable_count",
        "notable_events",
        "summary_table",
        "signed_off_label",
        "signed_off_at",
    )

    def has_change_permission(self, request, obj=None):
        return is_auditor(request.user) and (obj is None or not obj.signed_off)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"signer": request.user})

    @admin.display(description="events to review")
    def notable_events(self, obj):
        query = urlencode(
            {
                "notable": "yes",
                "occurred_at__gte": obj.period_start.isoformat(),
                "occurred_at__lt": obj.period_end.isoformat(),
            }
        )
        url = reverse("admin:audit_auditevent_changelist") + "?" + query
        return format_html('<a href="{}">{} notable events</a>', url, obj.notable_count)

    @admin.display(description="summary")
    def summary_table(self, obj):
        """The notable events of the period by type and outcome, most first."""
        rows = []
        for key, count in sorted(obj.summary.items(), key=lambda kv: (-kv[1], kv[0])):
            event_type, _, outcome = key.rpartition(" ")
            rows.append((event_type or outcome, outcome if event_type else "", count))
        if not rows:
            return SUMMARY_EMPTY
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            '<table class="review-summary"><thead><tr><th scope="col">Event type'
            '</th><th scope="col">Outcome</th><th scope="col">Count</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            body,
        )

    def response_change(self, request, obj):
        """Say plainly what signing off did, instead of "changed successfully"."""
        obj.refresh_from_db()
        self.message_user(
            request,
            REVIEW_SIGNED_OFF.format(
                start=obj.period_start,
                end=obj.period_end,
                who=obj.signed_off_label,
                at=obj.signed_off_at,
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:audit_auditreview_changelist"))

    def save_model(self, request, obj, form, change):
        services.review_sign_off(
            review_id=obj.pk,
            actor=request.user,
            comment=form.cleaned_data["comment"],
            own_events_reason=form.cleaned_data.get("own_events_reason", ""),
            request=request,
        )


def unregister_log_entries() -> None:
    """django-auditlog's own "Log entries" page goes: its entries are shown
    as "Field changes" below, under the audit access rules. Called from
    ``AuditConfig.ready`` (auditlog's admin module registers after ours)."""
    if admin.site.is_registered(LogEntry):
        admin.site.unregister(LogEntry)


@admin.register(FieldChange)
class FieldChangeAdmin(ViewAudited, AuditorOnly, LogEntryAdmin):
    """django-auditlog's field-level changes, under the same access rules."""

    audit_kind = "field_change"
