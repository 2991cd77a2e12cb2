from django.urls import path

from accounts import views
from accounts.captcha.views import altcha_challenge_view

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.login_otp_view, name="login-otp"),
    path(
        "login/passkey/options/",
        views.passkey_login_options_view,
        name="passkey-login-options",
    ),
    path("login/passkey/", views.passkey_login_view, name="passkey-login"),
    path("logout/", views.logout_view, name="logout"),
    path("signup/", views.signup_view, name="signup"),
    path("signup/done/", views.signup_done_view, name="signup-done"),
    path("verify/resend/", views.resend_view, name="resend"),
    path("verify/<str:token>/", views.verify_view, name="verify"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password-reset"),
    path(
        "password/reset/sent/",
        views.auth_views.PasswordResetDoneView.as_view(
            template_name="accounts/password_reset_done.html"
        ),
        name="password-reset-done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "password/change/", views.PasswordChangeView.as_view(), name="password-change"
    ),
    path("captcha/challenge/", altcha_challenge_view, name="captcha-challenge"),
    path("security/", views.security_view, name="security"),
    path("security/time-zone/", views.time_zone_view, name="time-zone"),
    path(
        "security/sessions/<int:record_id>/revoke/",
        views.session_revoke_view,
        name="session-revoke",
    ),
    path(
        "security/sessions/revoke-others/",
        views.sessions_revoke_others_view,
        name="sessions-revoke-others",
    ),
    path(
        "security/api-tokens/<str:token_id>/revoke/",
        views.api_token_revoke_view,
        name="api-token-revoke",
    ),
    path("security/2fa/", views.otp_enrol_view, name="otp-enrol"),
    path("security/2fa/disable/", views.otp_disable_view, name="otp-disable"),
    path("security/2fa/recovery/", views.otp_recovery_view, name="otp-recovery"),
    path(
        "security/passkeys/options/",
        views.passkey_register_options_view,
        name="passkey-register-options",
    ),
    path("security/passkeys/add/", views.passkey_add_view, name="passkey-add"),
    path(
        "security/passkeys/remove/",
        views.passkey_remove_view,
        name="passkey-remove",
    ),
]
