"""Benchmark settings for bench_instances: the full stack (kreo.settings.local)
on the PostgreSQL, Redis and S3 the environment names, with the bounded
connection pool production gives each gunicorn worker.

Production settings themselves need HTTPS (secure cookies, redirects), which
a loopback load test does not have; the pool is the part of them that
decides how a threaded worker talks to PostgreSQL, so it is repeated here as
kreo/settings/production.py has it (the gunicorn config sets KREO_DB_POOL).
"""

import environ

from kreo.settings.local import *  # noqa: F403

_env = environ.Env()
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and (  # noqa: F405
    _env.bool("KREO_DB_POOL", default=False)
):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {  # noqa: F405
        "min_size": 1,
        "max_size": _env.int("KREO_DB_POOL_SIZE", default=10),
        "timeout": _env.int("KREO_DB_POOL_TIMEOUT", default=10),
    }
