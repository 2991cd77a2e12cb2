"""Benchmark settings with the full middleware stack: the embedded default as
``make run`` serves it (kreo.settings.local), unchanged."""

from kreo.settings.local import *  # noqa: F403
