from django.urls import path

from privacy import views

app_name = "privacy"

urlpatterns = [
    path("export/", views.export_page, name="export"),
    path(
        "export/<uuid:export_id>/<str:token>/",
        views.export_download,
        name="export-download",
    ),
    path("delete-account/", views.account_delete, name="account-delete"),
]
