"""The embedded default: runs with no environment at all (SQLite, local files)."""

from kreo.settings.base import *  # noqa: F403
