"""System checks of the platform.

Shared caches: the caches that hold counters are shared by every process.

Rate limits, sign-in failure and lockout counters (the ``ratelimit`` cache)
and single-use markers (``default``: ``cache.add``) are only worth anything
if every gunicorn worker and Celery process sees the same value and ``add``
and ``incr`` are atomic. django-ratelimit's own check knows three backends;
this one names the backends that Kreo has measured to hold (see
``kreo/cache.py`` and ``bench/bench_cache.py``) and refuses the rest.

Key formats: every key in the settings has the format its user expects.

The same rules production settings enforce at start (kreo.keyformats), for
`manage.py check --deploy`, each problem an error naming the variable.

Object Lock: the app's own buckets that keep what must not be deleted
(backups' copy 3, audit archives, the erasure ledger) have Object Lock
configured; without it kreo.s3.retention_params writes them unretained.
"""

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from kreo import keyformats
from kreo import s3 as kreo_s3

SHARED_ATOMIC_BACKENDS = frozenset(
    {
        "django_redis.cache.RedisCache",  # production: ratelimit
        "django.core.cache.backends.redis.RedisCache",  # production: default
        "kreo.cache.SharedCache",  # the embedded default (SQLite files)
        "kreo.cache.RedisCounterCache",  # production: ratelimit, outages -> 503
        "kreo.cache.RedisCache",  # production: default, outages -> 503
    }
)
NOT_SHARED = (
    "The {alias!r} cache ({backend}) is not one that every process shares with "
    "atomic add() and incr(): rate limits, lockouts and single-use markers "
    "would count per process."
)


@register(Tags.caches)
def shared_cache_check(app_configs=None, **kwargs):
    errors = []
    for alias in sorted({"default", settings.RATELIMIT_USE_CACHE}):
        backend = settings.CACHES.get(alias, {}).get("BACKEND", "(none)")
        if backend not in SHARED_ATOMIC_BACKENDS:
            errors.append(
                Error(
                    NOT_SHARED.format(alias=alias, backend=backend),
                    hint="Set REDIS_URL, or keep the embedded default's "
                    "kreo.cache.SharedCache (kreo/settings/base.py).",
                    id="kreo.E010",
                )
            )
    return errors


@register(Tags.security, deploy=True)
def key_format_check(app_configs=None, **kwargs):
    values = {
        name: str(getattr(settings, keyformats.SETTING_NAMES.get(name, name), "") or "")
        for name in keyformats.IDS
    }
    return [
        Error(message, hint="See .env.example.", id=keyformats.IDS[variable])
        for variable, message in keyformats.problems(values)
    ]


# Session engines that keep sessions in the cache: with Redis down every
# signed-in user would be signed out (or get an error), where the database
# engine keeps project pages working through a cache outage.
CACHE_SESSION_ENGINES = frozenset(
    {
        "django.contrib.sessions.backends.cache",
        "django.contrib.sessions.backends.cached_db",
    }
)
SESSIONS_ON_CACHE = (
    "Sessions are kept in the cache ({engine}): a Redis outage would end or "
    "break every signed-in session, not only sign-in."
)


@register(Tags.caches)
def session_engine_check(app_configs=None, **kwargs):
    if settings.SESSION_ENGINE not in CACHE_SESSION_ENGINES:
        return []
    return [
        Error(
            SESSIONS_ON_CACHE.format(engine=settings.SESSION_ENGINE),
            hint="Keep Django's default database session engine.",
            id="kreo.E011",
        )
    ]


# (bucket setting, endpoint setting, region setting) of each locked bucket.
LOCKED_BUCKETS = (
    ("BACKUP_S3_BUCKET", "BACKUP_S3_ENDPOINT_URL", "BACKUP_S3_REGION"),
    (
        "AUDIT_ARCHIVE_S3_BUCKET",
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL",
        "AUDIT_ARCHIVE_S3_REGION",
    ),
    (
        "KREO_KEY_LEDGER_S3_BUCKET",
        "KREO_KEY_LEDGER_S3_ENDPOINT_URL",
        "KREO_KEY_LEDGER_S3_REGION",
    ),
)
NO_OBJECT_LOCK = (
    "The bucket {bucket} ({setting}) has no Object Lock configured: what Kreo "
    "writes there is not retained and can be deleted or overwritten."
)
LOCK_UNKNOWN = (
    "Whether the bucket {bucket} ({setting}) has Object Lock could not be "
    "read ({error}); writes there fail until S3 answers."
)


@register(Tags.security, deploy=True)
def object_lock_check(app_configs=None, **kwargs):
    problems = []
    for setting, endpoint, region in LOCKED_BUCKETS:
        bucket = getattr(settings, setting, "")
        if not bucket:
            continue
        client = kreo_s3.client(
            getattr(settings, endpoint), getattr(settings, region), attempts=1
        )
        try:
            locked = kreo_s3.lock_configured(client, bucket)
        except (BotoCoreError, ClientError) as exc:
            problems.append(
                Error(
                    LOCK_UNKNOWN.format(bucket=bucket, setting=setting, error=exc),
                    hint="Check the endpoint, region and credentials, and that "
                    "they may call s3:GetBucketObjectLockConfiguration.",
                    id="kreo.E020",
                )
            )
            continue
        if not locked:
            problems.append(
                Warning(
                    NO_OBJECT_LOCK.format(bucket=bucket, setting=setting),
                    hint="Create the bucket with Object Lock enabled (it cannot "
                    "be turned on for most existing buckets); the mode is "
                    "KREO_S3_LOCK_MODE.",
                    id="kreo.W020",
                )
            )
    return problems
