"""The embedded default: runs with no environment at all (SQLite, local files)."""

from kreo.settings.base import *  # noqa: F403

# Serve static files straight from the source folders: no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None
