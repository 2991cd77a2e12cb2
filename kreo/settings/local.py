"""The embedded default: runs with no environment at all (SQLite, local files)."""

from kreo.settings.base import *  # noqa: F403

# Serve static files straight from the source folders: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None

# The embedded default has no shared cache: django-ratelimit's checks object to
# LocMem, which is right for one process. Production requires REDIS_URL.
SILENCED_SYSTEM_CHECKS = [
    "django_ratelimit.E003",
    "django_ratelimit.W001",
    "django_recaptcha.recaptcha_test_key_error",
]
