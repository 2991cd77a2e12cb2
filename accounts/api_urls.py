from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/token/", api.TokenCreateView.as_view(), name="token-create"),
    path("auth/token/revoke/", api.TokenRevokeView.as_view(), name="token-revoke"),
]
