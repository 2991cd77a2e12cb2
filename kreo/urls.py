from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from accounts import api_urls as account_api_urls
from kreo import views
from projects import api_urls as project_api_urls

# One "api" namespace: tokens (accounts) beside projects, members and files.
api_patterns = (
    [*account_api_urls.urlpatterns, *project_api_urls.urlpatterns],
    "api",
)

urlpatterns = [
    path("", views.home, name="home"),
    # healthz, readyz, metrics (monitoring/; names and paths are a contract).
    path("", include("monitoring.urls")),
    path("accounts/", include("accounts.urls")),
    path("oidc/", include("accounts.oidc.urls")),
    path("projects/", include("projects.urls")),
    path("privacy/", include("privacy.urls")),
    path("api/", include(api_patterns)),
    path("status/", include("status.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
]

handler400 = "kreo.views.bad_request"
handler403 = "kreo.views.permission_denied"
handler404 = "kreo.views.page_not_found"
handler500 = "kreo.views.server_error"
