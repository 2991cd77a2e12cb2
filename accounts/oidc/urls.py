"""Under /oidc/: the paths and names mozilla-django-oidc uses."""

from django.urls import path

from accounts.oidc import views

urlpatterns = [
    path(
        "authenticate/",
        views.AuthenticationRequestView.as_view(),
        name="oidc_authentication_init",
    ),
    path(
        "callback/", views.CallbackView.as_view(), name="oidc_authentication_callback"
    ),
    path("logout/", views.logout_view, name="oidc_logout"),
    path("link/", views.link_view, name="oidc_link"),
    path("reauth/", views.reauth_view, name="oidc_reauth"),
]
