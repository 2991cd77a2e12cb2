from django.contrib import admin

from projects import services
from projects.models import Membership, Project, ProjectFile


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


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
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
class ProjectFileAdmin(admin.ModelAdmin):
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
