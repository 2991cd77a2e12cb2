from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from kreo import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/", include("accounts.urls")),
    path("oidc/", include("accounts.oidc.urls")),
    path("projects/", include("projects.urls")),
    path("privacy/", include("privacy.urls")),
    path("api/", include("projects.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
]

handler400 = "kreo.views.bad_request"
handler403 = "kreo.views.permission_denied"
handler404 = "kreo.views.page_not_found"
handler500 = "kreo.views.server_error"
