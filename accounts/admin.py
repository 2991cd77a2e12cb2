from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.shortcuts import redirect

from accounts import api_tokens, deletion, services
from accounts.models import User
from projects.ledger import LedgerError


class UserChangeAdminForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class UserCreationAdminForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserChangeAdminForm
    add_form = UserCreationAdminForm
    ordering = ("email",)
    list_display = (
        "email",
        "full_name",
        "is_active",
        "is_staff",
        "locked_until",
        "date_joined",
    )
    search_fields = ("email", "full_name")
    list_filter = ("is_active", "is_staff", "is_superuser", "groups")
    readonly_fields = (
        "last_login",
        "date_joined",
        "email_verified_at",
        "locked_until",
        "lockout_level",
    )
    actions = ["unlock"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined", "email_verified_at")}),
        ("Lockout", {"fields": ("locked_until", "lockout_level")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    filter_horizontal = ("groups",)

    @admin.action(description="Unlock the selected accounts")
    def unlock(self, request, queryset):
        for user in queryset:
            services.user_unlock(actor=request.user, user=user)
        self.message_user(request, f"Unlocked {queryset.count()} account(s).")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            api_tokens.tokens_revoke_all(
                user=obj, actor=request.user, request=request, reason="deactivated"
            )

    def delete_view(self, request, object_id, extra_context=None):
        """A deletion the erasure ledger refuses leaves the account as it was
        and says why."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except LedgerError as exc:
            # The admin's transaction rolled back the service's record of
            # the refusal with everything else: record it again.
            user = self.get_object(request, unquote(object_id))
            deletion.user_delete_refused(
                actor=request.user,
                user=user,
                request=request,
                code="erasure_ledger",
                message=str(exc),
                via="staff",
            )
            self.message_user(request, str(exc), messages.ERROR)
            return redirect("admin:accounts_user_change", user.pk)

    # Deleting in the admin goes through the account-deletion rule (projects
    # the user alone owns put aside for erasure, audit trail kept), never a
    # bare cascade that would leave ownerless projects behind.
    def delete_model(self, request, obj):
        from privacy.services import account_delete

        account_delete(
            actor=request.user,
            user=obj,
            request=request,
            staff=True,
            reason="deleted in the admin",
        )

    def delete_queryset(self, request, queryset):
        for user in queryset:
            self.delete_model(request, user)
