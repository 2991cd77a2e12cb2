from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from accounts import services
from accounts.models import User


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
