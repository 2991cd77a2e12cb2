from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header

from audit.services import audit_record
from projects import erasure, invitations, keys, services
from projects.ledger import LedgerError
from projects.models import (
    ErasureCertificate,
    Invitation,
    Membership,
    Project,
    ProjectFile,
)


def _erase_selected(modeladmin, request, queryset):
    """Django's delete action in one transaction: a ledger refusal part-way
    rolls back the items erased before it and the action's log entries, so
    none of the selection is erased or logged as deleted.

    The tombstones of the items rolled back were written before their
    erasures committed; they are withdrawn here (best effort, logged), or
    else a restore within settling's grace would erase the live items."""
    ids = list(queryset.values_list("pk", flat=True))
    with keys.ledger_recording() as written:
        try:
            with transaction.atomic():
                return delete_selected(modeladmin, request, queryset)
        except LedgerError as exc:
            keys.ledger_withdraw(written)
            # Fresh rows: the instances erased before the refusal lost their pk.
            targets = modeladmin.model._default_manager.filter(pk__in=ids)
            modeladmin.ledger_refused(request, exc, list(targets))
            return None
        except BaseException:
            keys.ledger_withdraw(written)
            raise


class LedgerRefusalAdmin(admin.ModelAdmin):
    """Admin deletion that turns an erasure ledger refusal into a message.

    The admin deletes inside its own transaction, which rolls back the
    service's audit record of the refusal with everything else; it is
    recorded again once the transaction is over.
    """

    def ledger_refused(self, request, error: LedgerError, targets) -> None:
        for target in targets:
            erasure.erasure_refused(
                actor=request.user,
                target=target,
                error=error,
                request=request,
                via="admin",
            )
        self.message_user(request, str(error), messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except LedgerError as exc:
            target = self.get_object(request, unquote(object_id))
            self.ledger_refused(request, exc, [target])
            info = self.opts.app_label, self.opts.model_name
            return redirect(f"admin:{info[0]}_{info[1]}_change", target.pk)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions[name] = (_erase_selected, name, description)
        return actions


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


class ProjectFileInline(admin.TabularInline):
    model = ProjectFile
    extra = 0
    fields = ("name", "kind", "size", "uploaded_by", "uploaded_at")
    readonly_fields = ("kind", "size", "uploaded_by", "uploaded_at")
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        # Files arrive through the upload checks only.
        return False

    def has_delete_permission(self, request, obj=None):
        # Files go through the erasure path (tombstone, every object version,
        # certificate): from their own admin page, not as an inline row.
        return False


@admin.register(Project)
class ProjectAdmin(LedgerRefusalAdmin):
    list_display = ("name", "created_by", "created_at", "updated_at")
    search_fields = ("name", "memberships__user__email")
    readonly_fields = ("id", "created_by", "created_at", "updated_at")
    inlines = [MembershipInline, ProjectFileInline]

    def delete_model(self, request, obj):
        services.project_delete(
            actor=request.user, project=obj, request=request, staff=True
        )

    def delete_queryset(self, request, queryset):
        for project in queryset:
            self.delete_model(request, project)


@admin.register(ProjectFile)
class ProjectFileAdmin(LedgerRefusalAdmin):
    list_display = ("name", "project", "kind", "size", "uploaded_by", "uploaded_at")
    list_filter = ("kind",)
    search_fields = ("name", "project__name", "sha256")
    readonly_fields = (
        "id",
        "project",
        "blob",
        "kind",
        "content_type",
        "size",
        "sha256",
        "uploaded_by",
        "uploaded_at",
    )

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        services.project_file_delete(
            actor=request.user, item=obj, request=request, staff=True
        )

    def delete_queryset(self, request, queryset):
        for item in queryset:
            self.delete_model(request, item)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("project", "user", "role", "added_at")
    list_filter = ("role",)
    search_fields = ("project__name", "user__email")
    autocomplete_fields = ("project", "user")


class InvitationStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending"),
            ("expired", "Expired"),
            ("accepted", "Accepted"),
            ("revoked", "Revoked"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        open_ = queryset.filter(accepted_at=None, revoked_at=None)
        return {
            "pending": lambda: open_.filter(expires_at__gt=now),
            "expired": lambda: open_.filter(expires_at__lte=now),
            "accepted": lambda: queryset.exclude(accepted_at=None),
            "revoked": lambda: queryset.exclude(revoked_at=None),
        }.get(self.value(), lambda: queryset)()


def invitation_state(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "Accepted"
    if invitation.revoked_at is not None:
        return "Revoked"
    if invitation.expires_at <= timezone.now():
        return "Expired"
    return "Pending"


REVOKED_COUNT = "{count} invitation(s) revoked; their links no longer work."
REVOKE_SKIPPED = "{email}: {reason}"


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Read-only: invitations are made by project owners; staff may only revoke,
    through the invitations service (audited, ``via`` admin)."""

    list_display = (
        "email",
        "project",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "state",
    )
    list_filter = (InvitationStateFilter, "role")
    search_fields = ("email", "project__name", "invited_by__email")
    list_select_related = ("project", "invited_by")
    date_hierarchy = "created_at"
    actions = ["revoke"]
    fields = (
        "project",
        "email",
        "role",
        "state",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "accepted_by",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A revoked invitation stays, as the record of who was invited.
        return False

    @admin.display(description="State")
    def state(self, obj):
        return invitation_state(obj)

    def has_revoke_permission(self, request):
        # The edit form stays read-only; revoking is the one change staff
        # make, under the model's change permission.
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(
        description="Revoke the selected pending invitations",
        permissions=["revoke"],
    )
    def revoke(self, request, queryset):
        done = 0
        for invitation in queryset.select_related("project"):
            try:
                invitations.invitation_revoke(
                    actor=request.user,
                    invitation=invitation,
                    request=request,
                    staff=True,
                )
            except ValidationError as exc:
                text = REVOKE_SKIPPED.format(
                    email=invitation.email, reason=" ".join(exc.messages)
                )
                self.message_user(request, text, messages.WARNING)
            else:
                done += 1
        if done:
            self.message_user(request, REVOKED_COUNT.format(count=done))


def certificate_document(certificate: ErasureCertificate) -> dict:
    """The certificate as the JSON document staff download."""
    return {
        "certificate": str(certificate.pk),
        "subject": {
            "type": certificate.subject_type,
            "id": certificate.subject_id,
            "label": certificate.subject_label,
        },
        "method": certificate.method,
        "method_label": certificate.get_method_display(),
        "requested_by": certificate.requested_by_label,
        "reason": certificate.reason,
        "key_destroyed": certificate.key_destroyed,
        "objects_planned": certificate.objects_planned,
        "objects_removed": certificate.objects_removed,
        "requested_at": certificate.created_at.isoformat(),
        "completed_at": (
            certificate.completed_at.isoformat() if certificate.completed_at else None
        ),
    }


@admin.register(ErasureCertificate)
class ErasureCertificateAdmin(admin.ModelAdmin):
    list_display = (
        "subject_type",
        "subject_label",
        "method",
        "requested_by_label",
        "created_at",
        "completed_at",
    )
    list_filter = ("subject_type", "method")
    search_fields = ("subject_id", "subject_label", "requested_by_label")
    readonly_fields = (
        "download",
        "id",
        "subject_type",
        "subject_id",
        "subject_label",
        "method",
        "requested_by",
        "requested_by_label",
        "reason",
        "key_destroyed",
        "objects_planned",
        "objects_removed",
        "created_at",
        "completed_at",
    )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Certificates are the evidence of an erasure: nobody deletes them.
        return False

    @admin.display(description="Certificate")
    def download(self, obj):
        url = reverse("admin:projects_erasurecertificate_download", args=[obj.pk])
        return format_html('<a class="button" href="{}">Download (JSON)</a>', url)

    def get_urls(self):
        own = [
            path(
                "<uuid:certificate_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="projects_erasurecertificate_download",
            )
        ]
        return own + super().get_urls()

    def download_view(self, request, certificate_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        certificate = get_object_or_404(ErasureCertificate, pk=certificate_id)
        audit_record(
            event_type="erasure.certificate.download",
            actor=request.user,
            request=request,
            target=certificate,
        )
        response = JsonResponse(
            certificate_document(certificate), json_dumps_params={"indent": 2}
        )
        response["Content-Disposition"] = content_disposition_header(
            True, f"erasure-certificate-{certificate.pk}.json"
        )
        return response
