"""Settings for the test suite: the embedded default, or the servers that the
environment names (the test runner sets DATABASE_URL, REDIS_URL and the S3
variables for the PostgreSQL leg)."""

from kreo.settings.base import *  # noqa: F403
from kreo.settings.base import env

# Argon2 stays on (the tests check it), with the cheapest parameters.
PASSWORD_HASHERS = ["kreo.testing.hashers.FastArgon2PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
KREO_MAX_UPLOAD_BYTES = env.int("KREO_MAX_UPLOAD_BYTES", default=2 * 1024 * 1024)

# Concurrent runs (a developer's and CI's) must not share a test database.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": f"test_kreo_{env.str('KREO_TEST_RUN', default='0')}"
    }
else:
    # A file, not Django's shared in-memory database: live-server and worker
    # threads then get connections of their own instead of sharing one, which
    # fails at random ("cannot commit transaction - SQL statements in
    # progress") when a browser request is still running at teardown.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(VAR_DIR / f"test-{env.str('KREO_TEST_RUN', default='0')}.sqlite3")  # noqa: F405
    }
# Nor a Celery queue: on the shared Redis a worker of one run would take
# (and fail) the tasks another run queued.
CELERY_TASK_DEFAULT_QUEUE = f"kreo-test-{env.str('KREO_TEST_RUN', default='0')}"
CELERY_TASK_QUEUES = (
    celery_queue(CELERY_TASK_DEFAULT_QUEUE),  # noqa: F405
    celery_queue(f"{CELERY_TASK_DEFAULT_QUEUE}-backups"),  # noqa: F405
)
CELERY_TASK_ROUTES = {
    "backups.tasks.*": {"queue": f"{CELERY_TASK_DEFAULT_QUEUE}-backups"}
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = None

# The rate-limit cache is shared by every process (base.py, CACHES): only the
# W001 that base.py silences with its measured reason on the embedded default.
SILENCED_SYSTEM_CHECKS = [
    *SILENCED_SYSTEM_CHECKS,  # noqa: F405
    "django_recaptcha.recaptcha_test_key_error",
]

# Transactional tests empty tables with TRUNCATE; the audit trail's guard
# allows that only on connections that say so (audit/sql.py).
if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (  # noqa: F405
        "-c kreo.audit_truncate_ok=on"
    )

# pytest-django's live_server wraps the app in a media handler that parses
# MEDIA_URL, and fails on None. No URL serves files: this prefix routes nowhere.
MEDIA_URL = "/media-not-served/"

# ALTCHA (the default CAPTCHA): little work per challenge, so tests and the
# browser test solve it in milliseconds; the protocol is the same.
KREO_ALTCHA_COST = env.int("KREO_ALTCHA_COST", default=1)
KREO_ALTCHA_ATTEMPTS = env.int("KREO_ALTCHA_ATTEMPTS", default=20)

# Test only (never read outside the test settings): seconds to pause per
# streamed chunk of a backup or audit archive, so a test can kill a real
# worker mid-run (kreo.worker.stream_pause).
KREO_TEST_STREAM_DELAY = env.float("KREO_TEST_STREAM_DELAY", default=0.0)
