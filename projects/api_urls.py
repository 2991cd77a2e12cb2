from django.urls import path

from projects import api

app_name = "api"

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="project-list"),
    path(
        "projects/<uuid:project_id>/",
        api.ProjectDetailView.as_view(),
        name="project-detail",
    ),
    path(
        "projects/<uuid:project_id>/files/",
        api.FileListView.as_view(),
        name="file-list",
    ),
    path(
        "projects/<uuid:project_id>/files/<uuid:file_id>/",
        api.FileDetailView.as_view(),
        name="file-detail",
    ),
    path(
        "projects/<uuid:project_id>/files/<uuid:file_id>/download/",
        api.FileDownloadView.as_view(),
        name="file-download",
    ),
    path(
        "projects/<uuid:project_id>/members/",
        api.MemberListView.as_view(),
        name="member-list",
    ),
    path(
        "projects/<uuid:project_id>/members/<int:membership_id>/",
        api.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path(
        "projects/<uuid:project_id>/invitations/",
        api.InvitationListView.as_view(),
        name="invitation-list",
    ),
    path(
        "projects/<uuid:project_id>/invitations/<int:invitation_id>/",
        api.InvitationDetailView.as_view(),
        name="invitation-detail",
    ),
]
