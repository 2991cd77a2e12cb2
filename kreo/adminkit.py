"""Pieces the apps' admins share."""


class ReadOnlyAdmin:
    """A model admin (or inline) whose rows nobody adds, edits or deletes from
    the admin: records kept by the application (backup sets, the audit trail,
    compliance results). Mix in before ``admin.ModelAdmin``."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
