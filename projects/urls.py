from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_create, name="create"),
    path("<uuid:project_id>/", views.project_detail, name="detail"),
    path("<uuid:project_id>/edit/", views.project_edit, name="edit"),
    path("<uuid:project_id>/delete/", views.project_delete, name="delete"),
    path("<uuid:project_id>/files/", views.file_upload, name="file-upload"),
    path(
        "<uuid:project_id>/files/<uuid:file_id>/download/",
        views.file_download,
        name="file-download",
    ),
    path(
        "<uuid:project_id>/files/<uuid:file_id>/preview/",
        views.file_preview,
        name="file-preview",
    ),
    path(
        "<uuid:project_id>/files/<uuid:file_id>/thumbnail/",
        views.file_thumbnail,
        name="file-thumbnail",
    ),
    path(
        "<uuid:project_id>/files/<uuid:file_id>/rename/",
        views.file_rename,
        name="file-rename",
    ),
    path(
        "<uuid:project_id>/files/<uuid:file_id>/delete/",
        views.file_delete,
        name="file-delete",
    ),
    path("<uuid:project_id>/members/", views.member_list, name="members"),
    path(
        "<uuid:project_id>/invitations/<int:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation-revoke",
    ),
    path(
        "invitations/<str:token>/",
        views.invitation_accept,
        name="invitation-accept",
    ),
    path(
        "<uuid:project_id>/members/<int:membership_id>/role/",
        views.member_role,
        name="member-role",
    ),
    path(
        "<uuid:project_id>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
]
