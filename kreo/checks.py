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

Internal links: `check --deploy` reports each link to a server that is not
TLS with the server's identity checked (PostgreSQL without
``sslmode=verify-full``, ``redis://``, an ``http://`` S3 or IdP endpoint,
SMTP without TLS) unless ``KREO_PLAINTEXT_LINKS_OK`` names it.
"""

import os
from urllib.parse import parse_qs, urlsplit

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


# Internal links ----------------------------------------------------------------

# One error id per kind of link, the name KREO_PLAINTEXT_LINKS_OK accepts.
PLAINTEXT_LINK_IDS = {
    "database": "kreo.E130",
    "redis": "kreo.E131",
    "s3": "kreo.E132",
    "oidc": "kreo.E133",
    "smtp": "kreo.E134",
}
PLAINTEXT_LINK = (
    "The {name} link is not TLS with the server's identity checked: {where}. "
    "Anyone on the network path can read it or pose as the server."
)
PLAINTEXT_LINK_HINTS = {
    # require and verify-ca encrypt but accept any certificate (require) or
    # one for any host (verify-ca): neither stops a man in the middle.
    "database": "Add ?sslmode=verify-full&sslrootcert=/path/to/ca.crt to "
    "DATABASE_URL (require and verify-ca do not check whom they talk to).",
    "redis": "Use a rediss:// REDIS_URL, with REDIS_CA_FILE naming the CA.",
    "s3": "Use an https:// endpoint (AWS_CA_BUNDLE names a private CA).",
    "oidc": "Use the IdP's https:// URLs (REQUESTS_CA_BUNDLE names a private CA).",
    "smtp": "Set EMAIL_USE_TLS (STARTTLS, port 587) or EMAIL_USE_SSL (port 465).",
}
PLAINTEXT_HINT_ALLOWED = (
    " Or list {name!r} in KREO_PLAINTEXT_LINKS_OK, for a single-host Compose "
    "whose servers share one private network."
)
PLAINTEXT_UNKNOWN = (
    "KREO_PLAINTEXT_LINKS_OK names {names}, which is not a link: the names are {known}."
)
# libpq's modes that check the server's certificate and its host name.
SSLMODES_VERIFIED = frozenset({"verify-full"})
# Redis URL query values that switch certificate checking off.
REDIS_UNVERIFIED = frozenset({"none", "cert_none", "optional", "cert_optional"})


def _is_http(url) -> bool:
    return str(url or "").strip().lower().startswith("http://")


def _database_links() -> list[str]:
    found = []
    for alias, db in settings.DATABASES.items():
        if not db.get("ENGINE", "").endswith("postgresql"):
            continue  # SQLite: a file, no link
        host = str(db.get("HOST") or "")
        if not host or host.startswith("/"):
            continue  # a Unix socket: no network in between
        mode = db.get("OPTIONS", {}).get("sslmode") or os.environ.get(
            "PGSSLMODE", "prefer"
        )
        if mode not in SSLMODES_VERIFIED:
            found.append(f"DATABASES[{alias!r}] {host} sslmode={mode}")
    return found


def _redis_links() -> list[str]:
    urls = [
        (f"CACHES[{alias!r}]", c.get("LOCATION"))
        for alias, c in settings.CACHES.items()
    ]
    urls += [
        ("CELERY_BROKER_URL", getattr(settings, "CELERY_BROKER_URL", "")),
        ("CELERY_RESULT_BACKEND", getattr(settings, "CELERY_RESULT_BACKEND", "")),
    ]
    found = []
    for where, locations in urls:
        for url in locations if isinstance(locations, list | tuple) else [locations]:
            parts = urlsplit(str(url or ""))
            reqs = parse_qs(parts.query).get("ssl_cert_reqs", [""])[0].lower()
            if parts.scheme == "redis" or (
                parts.scheme == "rediss" and reqs in REDIS_UNVERIFIED
            ):
                found.append(f"{where} {parts.scheme}://{parts.hostname}")
    return sorted(set(found))


def _s3_links() -> list[str]:
    storage = settings.STORAGES.get("default", {}).get("OPTIONS", {})
    endpoints = {
        "AWS_S3_ENDPOINT_URL": storage.get("endpoint_url"),
        "BACKUP_S3_ENDPOINT_URL": settings.BACKUP_S3_ENDPOINT_URL,
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL": settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL,
        "KREO_KEY_LEDGER_S3_ENDPOINT_URL": settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL,
    }
    found = [f"{name}={url}" for name, url in endpoints.items() if _is_http(url)]
    if storage.get("verify") is False:
        found.append("the file storage's certificate check is off")
    return found


def _oidc_links() -> list[str]:
    if not settings.KREO_OIDC_ENABLED:
        return []
    names = (
        "KREO_OIDC_ISSUER",
        "OIDC_OP_AUTHORIZATION_ENDPOINT",
        "OIDC_OP_TOKEN_ENDPOINT",
        "OIDC_OP_USER_ENDPOINT",
        "OIDC_OP_JWKS_ENDPOINT",
        "OIDC_OP_LOGOUT_ENDPOINT",
    )
    found = [
        f"{name}={getattr(settings, name)}"
        for name in names
        if _is_http(getattr(settings, name, ""))
    ]
    if getattr(settings, "OIDC_VERIFY_SSL", True) is False:
        found.append("OIDC_VERIFY_SSL is off")
    return found


def _smtp_links() -> list[str]:
    if not settings.EMAIL_BACKEND.endswith("smtp.EmailBackend"):
        return []  # the embedded default writes mail to files
    if settings.EMAIL_USE_TLS or settings.EMAIL_USE_SSL:
        return []
    return [f"EMAIL_HOST {settings.EMAIL_HOST}:{settings.EMAIL_PORT} without TLS"]


PLAINTEXT_FINDERS = {
    "database": _database_links,
    "redis": _redis_links,
    "s3": _s3_links,
    "oidc": _oidc_links,
    "smtp": _smtp_links,
}


@register(Tags.security, deploy=True)
def plaintext_links_check(app_configs=None, **kwargs):
    allowed = {name.strip().lower() for name in settings.KREO_PLAINTEXT_LINKS_OK}
    allowed.discard("")
    errors = []
    unknown = sorted(allowed - set(PLAINTEXT_LINK_IDS))
    if unknown:
        errors.append(
            Error(
                PLAINTEXT_UNKNOWN.format(
                    names=", ".join(unknown), known=", ".join(PLAINTEXT_LINK_IDS)
                ),
                id="kreo.E135",
            )
        )
    for name, find in PLAINTEXT_FINDERS.items():
        found = find()
        if found and name not in allowed:
            errors.append(
                Error(
                    PLAINTEXT_LINK.format(name=name, where="; ".join(found)),
                    hint=PLAINTEXT_LINK_HINTS[name]
                    + PLAINTEXT_HINT_ALLOWED.format(name=name),
                    id=PLAINTEXT_LINK_IDS[name],
                )
            )
    return errors
