"""The embedded default: runs with no environment at all (SQLite, local files)."""

from kreo.settings.base import *  # noqa: F403

# Serve static files straight from the source folders: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None

# The rate-limit cache is shared by every process (base.py, CACHES): only the
# W001 that base.py silences with its measured reason on the embedded default.
SILENCED_SYSTEM_CHECKS = [
    *SILENCED_SYSTEM_CHECKS,  # noqa: F405
    "django_recaptcha.recaptcha_test_key_error",
]
