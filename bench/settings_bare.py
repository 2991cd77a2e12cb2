"""Benchmark settings with a bare middleware stack: the embedded default minus
every middleware the pages do not need to work (security headers, CSP, size
limits, CSRF middleware, session control, audit context, ...).

The login view keeps its own CSRF protection (Django's ``csrf_protect``
decorator), so the bench logs in through the same form on both stacks.
"""

from kreo.settings.local import *  # noqa: F403

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
