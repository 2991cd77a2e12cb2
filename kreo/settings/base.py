"""Settings shared by every environment.

Everything that differs between deployments comes from the environment
through the one ``env`` object below. With no environment at all the project
runs on its embedded default: SQLite, files on local disk under ``var/``, and
a Celery broker on the local filesystem, so nothing needs installing.
"""

import os
import socket
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from kreo.settings.localkeys import local_secret

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

# Local state of the embedded default (git-ignored): database, uploaded files,
# broker queues and generated development keys.
VAR_DIR = Path(env.str("KREO_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or local_secret(  # nosec B105
    VAR_DIR, "django-secret-key"
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Release identity, stamped on audit events and shown by /healthz consumers.
KREO_RELEASE = env.str("KREO_RELEASE", default="dev")
KREO_COMMIT = env.str("KREO_COMMIT", default="")
# This server's identity in audit events (the pod or host name by default).
KREO_INSTANCE_ID = env.str("KREO_INSTANCE_ID", default="") or socket.gethostname()

INSTALLED_APPS = [
    "accounts.apps.KreoAdminConfig",  # the admin, behind the accounts login + OTP
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "kreo.apps.TokensConfig",  # knox, named for the admin
    "drf_spectacular",
    "django_celery_beat",
    "csp",
    "django_otp",
    "kreo.apps.TotpConfig",  # django_otp.plugins.otp_totp
    "kreo.apps.RecoveryCodesConfig",  # django_otp.plugins.otp_static
    "django_recaptcha",
    "django_ratelimit",
    "kreo",
    # Before auditlog: its `auditlogflush` is replaced by audit's refusal.
    "audit",
    "auditlog",
    "accounts",
    "accounts.oidc",  # single sign-on through Keycloak
    "projects",
    "backups",
    "privacy",
    # Apps on top: they read the apps below through selectors or health checks
    # and write only through kreo/ and audit/; nothing above imports them.
    "monitoring",
    "status",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # IP deny list and /admin/ allow list: before any session, user or
    # database work, and outside the audit (a flood is summarised, not logged
    # row by row).
    "monitoring.middleware.IPFilterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Outside everything that can refuse a request, so every 4xx/5xx is seen.
    "audit.middleware.AuditMiddleware",
    # Inside it, so its log line carries the correlation id (monitoring/).
    "monitoring.middleware.RequestMetricsMiddleware",
    "kreo.middleware.RequestSizeLimitMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Limits per URL name (kreo.limits). Its process_view runs after every
    # __call__ above and below (the user is known) and first of the
    # process_view hooks, so a flood of forged-CSRF POSTs is counted too;
    # its 429 passes out through audit and metrics.
    "kreo.middleware.RequestLimitMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # A database outage met by the session store or a view answers 503 here.
    "kreo.outage.OutageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.SessionControlMiddleware",
    "accounts.middleware.TimeZoneMiddleware",  # times in the user's zone
    "accounts.middleware.DependencyOutageMiddleware",  # cache/broker down: 503
    "accounts.oidc.middleware.SessionRefresh",  # SSO roles re-read from the IdP
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kreo.urls"
CSRF_FAILURE_VIEW = "kreo.views.csrf_failure"
WSGI_APPLICATION = "kreo.wsgi.application"
ASGI_APPLICATION = "kreo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "kreo.context_processors.release",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
}
# TLS to PostgreSQL: DATABASE_URL ending ?sslmode=verify-full&sslrootcert=
# /path/to/ca.crt. django-environ puts the query's options in OPTIONS, which
# psycopg (and production's connection pool) hands to libpq as they are.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=0)
# A persistent connection broken by a database restart is dropped, not reused.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A database host that does not answer at all fails the request in
    # seconds (a 503, kreo/outage.py) rather than holding a worker until
    # gunicorn kills it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("KREO_DB_CONNECT_TIMEOUT_SECONDS", default=5)
    )
elif DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default's web workers, Celery worker and beat write one
    # file; a writer waits for the lock (a backup's snapshot holds a read
    # lock while it copies) up to this long instead of Django's 5 s, which a
    # loaded machine exceeded (beat's sync failed with "database is locked").
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "timeout", env.int("KREO_SQLITE_BUSY_SECONDS", default=20)
    )
# Internal links that may stay plaintext (single-host Compose only): any of
# database, redis, s3, oidc, smtp. `check --deploy` reports every other
# plaintext link as an error (kreo.checks.plaintext_links_check).
KREO_PLAINTEXT_LINKS_OK = env.list("KREO_PLAINTEXT_LINKS_OK", default=[])
# Seconds a client is told to wait (Retry-After) while the database is out.
KREO_OUTAGE_RETRY_AFTER_SECONDS = env.int("KREO_OUTAGE_RETRY_AFTER_SECONDS", default=30)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "projects:list"
LOGOUT_REDIRECT_URL = "accounts:login"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sessions end after a working day of idleness at most; the absolute cap is
# the accounts issue's to enforce.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# Cache: Redis when configured; else SQLite files under var/cache. Either way
# one cache shared by every process (gunicorn workers, Celery) with atomic
# add() and incr(): rate limits, failure and lockout counters, the
# CAPTCHA-needed state and single-use markers hold whichever process answers.
REDIS_URL = env.str("REDIS_URL", default="")
# TLS to Redis (a rediss:// REDIS_URL): the server's certificate is verified
# against REDIS_CA_FILE (else the system's CAs) and must name the host. The
# same options reach the cache, the rate-limit cache and the Celery broker.
REDIS_CA_FILE = env.str("REDIS_CA_FILE", default="")
REDIS_TLS = {}
if REDIS_URL.startswith("rediss://"):
    REDIS_TLS = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if REDIS_CA_FILE:
        REDIS_TLS["ssl_ca_certs"] = REDIS_CA_FILE
SILENCED_SYSTEM_CHECKS = []
# Cache outages (README, Outages): how long a cache call may wait before the
# request fails closed with 503 (Retry-After: KREO_OUTAGE_RETRY_AFTER_SECONDS).
KREO_CACHE_TIMEOUT = env.float("KREO_CACHE_TIMEOUT_SECONDS", default=1.0)
if REDIS_URL:
    # kreo.cache's subclasses of Django's and django-redis's backends: an
    # outage raises CacheUnavailable (a 503, accounts.middleware), and no
    # call waits longer than KREO_CACHE_TIMEOUT_SECONDS for a hung Redis.
    CACHES = {
        "default": {
            "BACKEND": "kreo.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("KREO_CACHE_PREFIX", default="kreo"),
            "OPTIONS": {
                **REDIS_TLS,
                "socket_connect_timeout": KREO_CACHE_TIMEOUT,
                "socket_timeout": KREO_CACHE_TIMEOUT,
            },
        }
    }
    # Rate limits and login-failure counters: django-redis, the backend that
    # django-ratelimit supports (atomic increments on the shared Redis).
    CACHES["ratelimit"] = {
        "BACKEND": "kreo.cache.RedisCounterCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("KREO_CACHE_PREFIX", default="kreo") + "-rl",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": KREO_CACHE_TIMEOUT,
            "SOCKET_TIMEOUT": KREO_CACHE_TIMEOUT,
            "CONNECTION_POOL_KWARGS": REDIS_TLS,
        },
    }
    # django-ratelimit's W001 knows django_redis.cache.RedisCache by name;
    # RedisCounterCache is that class, with outages translated (kreo/cache.py).
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.W001")
else:
    # diskcache's DjangoCache (kreo/cache.py): every write in a BEGIN IMMEDIATE
    # SQLite transaction. bench/bench_cache.py measures it against Django's
    # FileBasedCache and DatabaseCache, which lose concurrent increments.
    CACHES = {
        "default": {
            "BACKEND": "kreo.cache.SharedCache",
            "LOCATION": str(VAR_DIR / "cache" / "default"),
            "FAIL_AFTER": KREO_CACHE_TIMEOUT,
            "KEY_PREFIX": env.str("KREO_CACHE_PREFIX", default="kreo"),
        },
        "ratelimit": {
            "BACKEND": "kreo.cache.SharedCache",
            "LOCATION": str(VAR_DIR / "cache" / "ratelimit"),
            "FAIL_AFTER": KREO_CACHE_TIMEOUT,
            "KEY_PREFIX": env.str("KREO_CACHE_PREFIX", default="kreo") + "-rl",
        },
    }
    # django-ratelimit warns (W001) about any backend outside its list of
    # three (memcached x2, django-redis), whatever it does; its E003 (known
    # broken: LocMem, FileBased, Database, Dummy) stays on. Measured reason
    # for silencing W001 here only: 4 processes x 500 add+incr on one key
    # lose 0 of 2000 increments and 300 add() raced by 4 processes have 300
    # winners, as on django-redis (Django's FileBasedCache lost 1494 and had
    # 988 winners, DatabaseCache on SQLite lost 633), 45 us an incr and 22 us
    # a get: bench/bench_cache.py. The multi-process gunicorn test holds the
    # lockout and the 429 across workers (kreo/tests/test_multiprocess_limits.py),
    # and kreo.checks.shared_cache_check (kreo.E010) refuses other backends.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

# Files: S3 (django-storages) when a bucket is named, local disk otherwise.
# Neither is ever served by URL: downloads go through a view that checks
# membership and streams the bytes.
MEDIA_ROOT = Path(env.str("KREO_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = None
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    from kreo import s3 as kreo_s3

    DEFAULT_FILE_STORAGE_BACKEND = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "region_name": env.str("AWS_S3_REGION_NAME", default="eu-west-2"),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "object_parameters": {"ServerSideEncryption": "AES256"},
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
            "signature_version": "s3v4",
            "addressing_style": "path",
            # Short connect and read timeouts, two tries: an unreachable or
            # hung S3 answers 503 within seconds (projects.storage).
            "client_config": kreo_s3.config(read_timeout=kreo_s3.FILES_READ_TIMEOUT),
        },
    }
else:
    DEFAULT_FILE_STORAGE_BACKEND = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": MEDIA_ROOT,
            "base_url": None,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": DEFAULT_FILE_STORAGE_BACKEND,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage",
    },
}

# Uploads: the limit is enforced before the body is read (see
# projects.uploads); large files spool to disk rather than memory.
KREO_MAX_UPLOAD_BYTES = env.int("KREO_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)

# Project files are always encrypted (projects.storage). Not read from the
# environment: only a settings module can switch it off, and the only one
# that does is the benchmark's baseline (bench/settings_unencrypted.py);
# production pins it on.
KREO_FILE_ENCRYPTION = True

# Project file encryption (projects.keys): key-encryption keys as
# "id:base64key,..." and the id that wraps new data keys. The erasure ledger
# lives outside the database and the file storage, so restores never undo it.
KREO_KEYRING = env.str("KREO_KEYRING", default="") or (
    "dev1:" + local_secret(VAR_DIR, "kreo-keyring-dev1", 32)
)
KREO_ACTIVE_KEY_ID = (
    env.str("KREO_ACTIVE_KEY_ID", default="") or (KREO_KEYRING.split(":", 1)[0])
)
KREO_KEY_LEDGER_DIR = Path(
    env.str("KREO_KEY_LEDGER_DIR", default="") or str(VAR_DIR / "key-ledger")
)
# With several pods the ledger is an S3 bucket they all share (projects.ledger),
# never the file storage or backup bucket; when named it replaces the folder.
KREO_KEY_LEDGER_S3_BUCKET = env.str("KREO_KEY_LEDGER_S3_BUCKET", default="")
KREO_KEY_LEDGER_S3_PREFIX = env.str("KREO_KEY_LEDGER_S3_PREFIX", default="")
KREO_KEY_LEDGER_S3_ENDPOINT_URL = env.str(
    "KREO_KEY_LEDGER_S3_ENDPOINT_URL",
    default=env.str("AWS_S3_ENDPOINT_URL", default=""),
)
KREO_KEY_LEDGER_S3_REGION = env.str(
    "KREO_KEY_LEDGER_S3_REGION",
    default=env.str("AWS_S3_REGION_NAME", default="eu-west-2"),
)
KREO_KEY_LEDGER_LOCK_DAYS = env.int("KREO_KEY_LEDGER_LOCK_DAYS", default=400)
# Days before soft-deleted projects, never-verified accounts and expired
# exports are purged.
KREO_PURGE_AFTER_DAYS = env.int("KREO_PURGE_AFTER_DAYS", default=30)
KREO_PURGE_INTERVAL_SECONDS = env.int("KREO_PURGE_INTERVAL_SECONDS", default=86400)
# Days an invitation link to a project stays usable.
KREO_INVITATION_DAYS = env.int("KREO_INVITATION_DAYS", default=7)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o600
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# Client IP: REMOTE_ADDR, unless this many reverse proxies that append to
# X-Forwarded-For stand in front of the app (kreo.net.client_ip).
KREO_TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0)

# Accounts: sign-up, login defences, two-factor, sessions (accounts app).
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_IP_META_KEY = "kreo.net.client_ip"
# Rates as django-ratelimit strings ("count/period"), per client IP and per
# account (the normalised email address typed in the form).
ACCOUNTS_RATES = {
    "login-ip": env.str("KREO_RATE_LOGIN_IP", default="30/15m"),
    "login-account": env.str("KREO_RATE_LOGIN_ACCOUNT", default="10/15m"),
    "signup-ip": env.str("KREO_RATE_SIGNUP_IP", default="10/h"),
    "signup-account": env.str("KREO_RATE_SIGNUP_ACCOUNT", default="3/h"),
    "reset-ip": env.str("KREO_RATE_RESET_IP", default="10/h"),
    "reset-account": env.str("KREO_RATE_RESET_ACCOUNT", default="3/h"),
    "resend-ip": env.str("KREO_RATE_RESEND_IP", default="10/h"),
    "resend-account": env.str("KREO_RATE_RESEND_ACCOUNT", default="3/h"),
    "otp-ip": env.str("KREO_RATE_OTP_IP", default="20/15m"),
    "otp-account": env.str("KREO_RATE_OTP_ACCOUNT", default="10/15m"),
    # Project invitations, per inviting account and per IP (page and API).
    "invite-ip": env.str("KREO_RATE_INVITE_IP", default="60/h"),
    "invite-account": env.str("KREO_RATE_INVITE_ACCOUNT", default="30/h"),
}
# Passkeys (WebAuthn, accounts.passkeys). A passkey is bound to the relying
# party ID, a host name, and answers only pages at the listed origins. Unset,
# both are the host the request came in on (which ALLOWED_HOSTS has checked):
# set them where the site answers under more than one name.
WEBAUTHN_RP_ID = env.str("KREO_WEBAUTHN_RP_ID", default="")
WEBAUTHN_ORIGINS = env.list("KREO_WEBAUTHN_ORIGINS", default=[])
WEBAUTHN_RP_NAME = env.str("KREO_WEBAUTHN_RP_NAME", default="Kreo")
# Consecutive failures that lock an account; each further lockout doubles the
# cool-off, up to the maximum. A successful sign-in or a reset clears it.
ACCOUNTS_LOCKOUT_THRESHOLD = env.int("KREO_LOCKOUT_THRESHOLD", default=5)
ACCOUNTS_LOCKOUT_SECONDS = env.int("KREO_LOCKOUT_SECONDS", default=15 * 60)
ACCOUNTS_LOCKOUT_MAX_SECONDS = env.int("KREO_LOCKOUT_MAX_SECONDS", default=86400)
# The login form asks for a CAPTCHA after this many recent failures for the
# account, or from the client IP (within ACCOUNTS_FAILURE_WINDOW seconds).
ACCOUNTS_CAPTCHA_AFTER_ACCOUNT = env.int("KREO_CAPTCHA_AFTER_ACCOUNT", default=3)
ACCOUNTS_CAPTCHA_AFTER_IP = env.int("KREO_CAPTCHA_AFTER_IP", default=10)
ACCOUNTS_FAILURE_WINDOW = env.int("KREO_FAILURE_WINDOW_SECONDS", default=3600)
# Sessions end after this much idleness, and this long after sign-in at most.
ACCOUNTS_SESSION_IDLE_SECONDS = env.int("KREO_SESSION_IDLE_SECONDS", default=3600)
ACCOUNTS_SESSION_ABSOLUTE_SECONDS = env.int(
    "KREO_SESSION_ABSOLUTE_SECONDS", default=12 * 3600
)
# Who must use two-factor sign-in: "staff" (default) or "all".
ACCOUNTS_2FA_REQUIRED_FOR = env.str("KREO_2FA_REQUIRED_FOR", default="staff")
ACCOUNTS_VERIFY_MAX_AGE = env.int("KREO_VERIFY_MAX_AGE_SECONDS", default=2 * 86400)
# API tokens (django-rest-knox, accounts.api_tokens) expire this long after issue.
KREO_API_TOKEN_TTL_SECONDS = env.int("KREO_API_TOKEN_TTL_SECONDS", default=7 * 86400)
REST_KNOX = {"TOKEN_TTL": timedelta(seconds=KREO_API_TOKEN_TTL_SECONDS)}
# Named: accounts.ApiTokenUse refers to it.
KNOX_TOKEN_MODEL = "knox.AuthToken"  # noqa: S105  # nosec B105
PASSWORD_RESET_TIMEOUT = env.int("KREO_PASSWORD_RESET_SECONDS", default=3600)
OTP_TOTP_ISSUER = "Kreo"
# The admin never shows an authenticator's secret (its key, QR code or
# otpauth:// link): staff who may view devices could otherwise make any
# user's codes, the superuser's included.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Single sign-on through Keycloak (accounts.oidc, mozilla-django-oidc). Off
# unless KREO_OIDC_ISSUER names the realm, e.g.
# https://sso.example.com/realms/kreo; the endpoints are Keycloak's under it
# unless set one by one.
KREO_OIDC_ISSUER = env.str("KREO_OIDC_ISSUER", default="").rstrip("/")
KREO_OIDC_ENABLED = bool(KREO_OIDC_ISSUER)
_oidc_base = f"{KREO_OIDC_ISSUER}/protocol/openid-connect"
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str(
    "KREO_OIDC_AUTHORIZATION_ENDPOINT", default=f"{_oidc_base}/auth"
)
OIDC_OP_TOKEN_ENDPOINT = env.str(
    "KREO_OIDC_TOKEN_ENDPOINT", default=f"{_oidc_base}/token"
)
OIDC_OP_USER_ENDPOINT = env.str(
    "KREO_OIDC_USERINFO_ENDPOINT", default=f"{_oidc_base}/userinfo"
)
OIDC_OP_JWKS_ENDPOINT = env.str(
    "KREO_OIDC_JWKS_ENDPOINT", default=f"{_oidc_base}/certs"
)
OIDC_OP_LOGOUT_ENDPOINT = env.str(
    "KREO_OIDC_LOGOUT_ENDPOINT", default=f"{_oidc_base}/logout"
)
OIDC_RP_CLIENT_ID = env.str("KREO_OIDC_CLIENT_ID", default="kreo")
OIDC_RP_CLIENT_SECRET = env.str("KREO_OIDC_CLIENT_SECRET", default="")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_NONCE = True
OIDC_USE_PKCE = True
OIDC_PKCE_CODE_CHALLENGE_METHOD = "S256"
OIDC_TOKEN_USE_BASIC_AUTH = True  # client_secret_basic
OIDC_TIMEOUT = 10
OIDC_LEEWAY_SECONDS = 30  # clock skew allowed on exp/iat
# Deleting an SSO account needs a sign-in at the IdP at most this old
# (auth_time); the confirmation it gives lasts as long (accounts.oidc.reauth).
KREO_SSO_REAUTH_SECONDS = 300
# Roles are read again from the IdP (prompt=none) this often: a role removed
# in Keycloak is gone from the app at the next request after it.
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env.int("KREO_OIDC_REFRESH_SECONDS", default=300)
# Login buttons and the Keycloak broker alias each one sends as kc_idp_hint.
KREO_OIDC_IDP_HINTS = env.dict(
    "KREO_OIDC_IDP_HINTS",
    default={
        "google": "google",
        "linkedin": "linkedin-openid-connect",
        "microsoft": "microsoft",
        "company": "company-sso",
    },
)
# Keycloak role -> Django group ("-" for none); a user needs one of these roles.
KREO_OIDC_ROLE_GROUPS = env.dict(
    "KREO_OIDC_ROLE_GROUPS",
    default={"kreo-admin": "Admin", "kreo-auditor": "Auditor", "kreo-user": "-"},
)
KREO_OIDC_STAFF_ROLES = env.list(
    "KREO_OIDC_STAFF_ROLES", default=["kreo-admin", "kreo-auditor"]
)
# amr values that count as a second factor done at the IdP.
KREO_OIDC_MFA_AMR = env.list("KREO_OIDC_MFA_AMR", default=["otp", "mfa", "hwk"])
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.oidc.backends.KreoOIDCBackend",
]
# reCAPTCHA v2: keys from the environment (production requires them; the
# defaults are Google's published test keys). The verify endpoint is
# configurable so tests can run a local siteverify server.
RECAPTCHA_PUBLIC_KEY = env.str(
    "RECAPTCHA_PUBLIC_KEY", default="6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI"
)
RECAPTCHA_PRIVATE_KEY = env.str(
    "RECAPTCHA_PRIVATE_KEY",
    default="6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe",  # nosec B105 - Google's test key
)
RECAPTCHA_DOMAIN = env.str("RECAPTCHA_DOMAIN", default="www.google.com")
RECAPTCHA_VERIFY_URL = env.str(
    "RECAPTCHA_VERIFY_URL", default="https://www.google.com/recaptcha/api/siteverify"
)
RECAPTCHA_VERIFY_TIMEOUT = env.float("RECAPTCHA_VERIFY_TIMEOUT", default=5.0)
# The CAPTCHA (accounts/captcha/): "altcha", self-hosted proof of work that
# needs no third party (the default, and a production choice), or
# "recaptcha" (Google; production then requires the RECAPTCHA_* keys).
KREO_CAPTCHA = env.str("KREO_CAPTCHA", default="altcha")
if KREO_CAPTCHA not in ("altcha", "recaptcha"):
    raise ImproperlyConfigured(
        f"KREO_CAPTCHA must be altcha or recaptcha, not {KREO_CAPTCHA!r}."
    )
# ALTCHA challenges are HMAC-signed with this key (production requires it).
KREO_ALTCHA_HMAC_KEY = env.str("KREO_ALTCHA_HMAC_KEY", default="") or local_secret(
    VAR_DIR, "altcha-hmac-key"
)
# The browser's work: it tries between ATTEMPTS and 2 x ATTEMPTS counters, one
# PBKDF2-SHA256 of COST iterations each (the server derives one key to issue
# a challenge and one to check it). A challenge must be redeemed within
# EXPIRES_SECONDS of being fetched, and only once.
KREO_ALTCHA_COST = env.int("KREO_ALTCHA_COST", default=1000)
KREO_ALTCHA_ATTEMPTS = env.int("KREO_ALTCHA_ATTEMPTS", default=1000)
KREO_ALTCHA_EXPIRES_SECONDS = env.int("KREO_ALTCHA_EXPIRES_SECONDS", default=600)

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Security headers that hold in every environment; production adds TLS.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated API call gets 401 with
        # WWW-Authenticate, not a bare 403.
        "accounts.api_tokens.TokenAuthentication",  # knox's, plus revocation
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # drf-spectacular's, plus the error responses each operation can give.
    "DEFAULT_SCHEMA_CLASS": "kreo.schema.AutoSchema",
    # Per user and per scope (kreo.limits), counted on the rate-limit cache
    # with the pages' limits; anonymous callers per IP in the limit middleware.
    "DEFAULT_THROTTLE_CLASSES": [
        "kreo.throttles.UserThrottle",
        "kreo.throttles.ScopeThrottle",
    ],
    "DEFAULT_PARSER_CLASSES": [
        # JSON nested past 32 levels is a 400, never a RecursionError (a 500).
        "kreo.parsers.BoundedJSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "kreo.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
# Request limits on every endpoint (kreo.limits: the scope of each URL name),
# "count/period" per signed-in user, else per client IP, in fixed windows on
# the rate-limit cache. Generous for people, meaningful against floods.
KREO_LIMITS_ENABLED = env.bool("KREO_LIMITS_ENABLED", default=True)
# Per signed-in user on the API (scope "api", DRF's syntax also accepted).
KREO_API_RATE = env.str("KREO_RATE_API", default="600/minute")
KREO_REQUEST_RATES = {
    "page": env.str("KREO_RATE_PAGE", default="600/minute"),
    "api-anon": env.str("KREO_RATE_API_ANON", default="60/minute"),
    "download": env.str("KREO_RATE_DOWNLOAD", default="600/hour"),
    # Bytes sent by downloads per user (or IP) per hour: 10 GiB.
    "download-bytes": env.str("KREO_RATE_DOWNLOAD_BYTES", default=f"{10 * 2**30}/hour"),
    "upload": env.str("KREO_RATE_UPLOAD", default="300/hour"),
    "token": env.str("KREO_RATE_TOKEN", default="20/hour"),
    "oidc": env.str("KREO_RATE_OIDC", default="120/15m"),
    "password": env.str("KREO_RATE_PASSWORD", default="10/hour"),
    "account-delete": env.str("KREO_RATE_ACCOUNT_DELETE", default="10/hour"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kreo API",
    "DESCRIPTION": "Projects, members and files of construction estimates.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: Redis when configured; otherwise a broker on the local filesystem,
# so a real worker and beat run with no server installed.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_BROKER_USE_SSL = REDIS_TLS or False  # Celery's default
# Tasks that must not be lost (backups, audit archive and seal, spool drain,
# purge, drill, exports) are acks_late: the message is acknowledged only when
# the task ends, so one whose worker is killed is delivered again. On Redis an
# unacknowledged message comes back after ``visibility_timeout``; it must be
# longer than the longest task, or a second worker would take a task that is
# still running. The longest is a full backup (pg_dump, two encrypted copies
# and the S3 upload), which takes minutes at our sizes and stays well under
# 12 h at the largest we plan for, while 12 h is still shorter than the daily
# backup interval, so a daily backup lost with its worker is redelivered
# before the next one is due. A redelivered task is harmless: the backup and
# archive locks and each task's own checks (a set per task id, archive
# states, spool ids) stop it from doing the work twice. The quick path after
# a killed worker is not redelivery but the minute sweep (heartbeats, below).
KREO_TASK_VISIBILITY_SECONDS = env.int("KREO_TASK_VISIBILITY_SECONDS", default=43200)
# How often a worker looks for messages past their visibility (kombu scans
# every interval x throttle seconds, 10 x 10 by default: the same 100 s here,
# as one setting; the several-instances test shortens it).
KREO_TASK_RESTORE_SECONDS = env.int("KREO_TASK_RESTORE_SECONDS", default=100)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "visibility_timeout": KREO_TASK_VISIBILITY_SECONDS,
        "unacked_restore_interval": KREO_TASK_RESTORE_SECONDS,
        "unacked_restore_throttle": 1,
    }
    if REDIS_URL
    else {
        "data_folder_in": str(VAR_DIR / "broker" / "queue"),
        "data_folder_out": str(VAR_DIR / "broker" / "queue"),
        "processed_folder": str(VAR_DIR / "broker" / "processed"),
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
    }
)
# Backup tasks go to their own queue, so that a deployment can give them one
# worker that alone holds the backup keys and the two local copies' volumes
# (deploy/k8s: `--queues=backups`). A worker started without --queues (make
# run, Compose, the tests) consumes every queue listed here.
# Each queue has its own direct exchange and routing key: a Queue given only
# a name shares the default routing key, and a backup task would then land
# in both queues and run twice.


def celery_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (celery_queue("celery"), celery_queue("backups"))
CELERY_TASK_ROUTES = {"backups.tasks.*": {"queue": "backups"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# With acks_late a worker should not hold tasks it has not started: a killed
# worker then delays only the one it was running.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A running backup set stamps its heartbeat every KREO_TASK_HEARTBEAT_SECONDS;
# the sweep (every KREO_TASK_SWEEP_SECONDS) fails, cleans and retries a set
# whose heartbeat is older than KREO_TASK_STALE_SECONDS (its worker died).
KREO_TASK_HEARTBEAT_SECONDS = env.int("KREO_TASK_HEARTBEAT_SECONDS", default=30)
KREO_TASK_STALE_SECONDS = env.int("KREO_TASK_STALE_SECONDS", default=180)
KREO_TASK_SWEEP_SECONDS = env.int("KREO_TASK_SWEEP_SECONDS", default=60)
if KREO_TASK_STALE_SECONDS < 2 * KREO_TASK_HEARTBEAT_SECONDS:
    # A live backup whose heartbeat is one beat late would then look dead
    # (the lock still protects it, but the window would mean nothing).
    raise ImproperlyConfigured(
        "KREO_TASK_STALE_SECONDS must be at least twice KREO_TASK_HEARTBEAT_SECONDS."
    )
KREO_HEARTBEAT_SECONDS = env.int("KREO_HEARTBEAT_SECONDS", default=60)

# Mail: an SMTP relay when EMAIL_HOST is set; otherwise each message is
# written to var/mail so the embedded default needs no mail server.
EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.filebased.EmailBackend"
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
# STARTTLS (EMAIL_USE_TLS, port 587) or implicit TLS (EMAIL_USE_SSL, port
# 465); Django verifies the relay's certificate against the system's CAs.
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="kreo@localhost")

# Backups (backups/): copy 1 and copy 2 in two local folders (separate
# volumes in production), copy 3 in an S3 bucket in eu-west-2. Key A (32
# bytes, urlsafe base64) encrypts copy 1 and 3; copy 2 is encrypted to an age
# public key whose identity lives off this host (only restore needs it).
# (An empty value, as in .env.example, means the default, never the cwd.)
BACKUP_COPY1_DIR = Path(
    env.str("BACKUP_COPY1_DIR", default="") or VAR_DIR / "backups" / "copy1"
)
BACKUP_COPY2_DIR = Path(
    env.str("BACKUP_COPY2_DIR", default="") or VAR_DIR / "backups" / "copy2"
)
BACKUP_ENCRYPTION_KEY = env.str("BACKUP_ENCRYPTION_KEY", default="") or local_secret(
    VAR_DIR, "backup-encryption-key", 32
)
BACKUP_MANIFEST_KEY = env.str("BACKUP_MANIFEST_KEY", default="") or local_secret(
    VAR_DIR, "backup-manifest-key", 32
)
BACKUP_AGE_RECIPIENT = env.str("BACKUP_AGE_RECIPIENT", default="")
BACKUP_AGE_IDENTITY_FILE = env.str(
    "BACKUP_AGE_IDENTITY_FILE", default=str(VAR_DIR / "keys" / "backup-age-identity")
)
BACKUP_S3_BUCKET = env.str("BACKUP_S3_BUCKET", default="")
BACKUP_S3_PREFIX = env.str("BACKUP_S3_PREFIX", default="kreo-backups/")
# The region copy 3's bucket must be in: the client talks to it, and the
# backup, a restore from copy 3 and `check --deploy` refuse a bucket elsewhere.
# (BACKUP_S3_REGION_NAME, its former name, is still read.)
BACKUP_S3_REGION = env.str(
    "BACKUP_S3_REGION", default=env.str("BACKUP_S3_REGION_NAME", default="eu-west-2")
)
BACKUP_S3_ENDPOINT_URL = env.str(
    "BACKUP_S3_ENDPOINT_URL", default=env.str("AWS_S3_ENDPOINT_URL", default="")
)
# Object Lock mode for every app bucket that has Object Lock (backups' copy 3,
# audit archives, the erasure ledger): kreo.s3.retention_params.
KREO_S3_LOCK_MODE = env.str("KREO_S3_LOCK_MODE", default="COMPLIANCE")
BACKUP_S3_LOCK_DAYS = env.int("BACKUP_S3_LOCK_DAYS", default=30)
BACKUP_INTERVAL_SECONDS = env.int("BACKUP_INTERVAL_SECONDS", default=24 * 3600)
BACKUP_DRILL_SECONDS = env.int("BACKUP_DRILL_SECONDS", default=7 * 24 * 3600)
BACKUP_OFFSITE_RETRY_SECONDS = env.int("BACKUP_OFFSITE_RETRY_SECONDS", default=3600)
BACKUP_KEEP_DAILY = env.int("BACKUP_KEEP_DAILY", default=7)
BACKUP_KEEP_WEEKLY = env.int("BACKUP_KEEP_WEEKLY", default=4)
BACKUP_KEEP_MONTHLY = env.int("BACKUP_KEEP_MONTHLY", default=12)
BACKUP_MAX_AGE_HOURS = env.int("BACKUP_MAX_AGE_HOURS", default=26)

# KREO_LOG_JSON: one JSON object a line on stdout (python-json-logger), with
# a line per request (kreo.request: correlation id, user id, view, status,
# duration), for a log shipper. On by default in production.
KREO_LOG_JSON = env.bool("KREO_LOG_JSON", default=False)


def logging_config(json_lines: bool, *, stdout: bool = True) -> dict:
    """LOGGING: plain text on stderr, or JSON lines, on stdout unless told
    otherwise (production's manage.py commands keep stdout for their output)."""
    console = {"class": "logging.StreamHandler", "formatter": "plain"}
    if json_lines:
        console["formatter"] = "json"
        if stdout:
            console["stream"] = "ext://sys.stdout"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level"},
            },
        },
        "handlers": {"console": console},
        "root": {"handlers": ["console"], "level": "INFO"},
        "loggers": {
            "django.security": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
            # A line per request only as JSON: gunicorn's access log says as
            # much in plain text.
            "kreo.request": {"level": "INFO" if json_lines else "WARNING"},
        },
    }


LOGGING = logging_config(KREO_LOG_JSON)

# Monitoring (monitoring/): /metrics and /readyz's detail are for a bearer
# token or the networks listed (client address as kreo.net resolves it).
MONITORING_TOKEN = env.str("MONITORING_TOKEN", default="")
MONITORING_ALLOWED_CIDRS = env.list("MONITORING_ALLOWED_CIDRS", default=[])
# Detection rules over the audit trail (monitoring/rules.py), run by beat
# every MONITORING_RULES_SECONDS over the events recorded since the last run.
MONITORING_RULES_SECONDS = env.int("MONITORING_RULES_SECONDS", default=15)
MONITORING_RULES_BATCH = env.int("MONITORING_RULES_BATCH", default=5000)
# Events younger than this wait for the next run (a lower id may be in flight).
MONITORING_RULES_SETTLE_SECONDS = env.float(
    "MONITORING_RULES_SETTLE_SECONDS", default=5.0
)
MONITORING_STUFFING_FAILURES = env.int("MONITORING_STUFFING_FAILURES", default=30)
MONITORING_STUFFING_ACCOUNTS = env.int("MONITORING_STUFFING_ACCOUNTS", default=5)
MONITORING_SPRAY_ACCOUNTS = env.int("MONITORING_SPRAY_ACCOUNTS", default=15)
MONITORING_SPRAY_SUCCESS_RATE = env.float("MONITORING_SPRAY_SUCCESS_RATE", default=0.1)
MONITORING_BRUTE_FORCE_FAILURES = env.int("MONITORING_BRUTE_FORCE_FAILURES", default=10)
MONITORING_SIGNIN_WINDOW_SECONDS = env.int(
    "MONITORING_SIGNIN_WINDOW_SECONDS", default=300
)
MONITORING_DOWNLOADS_PER_MINUTE = env.int("MONITORING_DOWNLOADS_PER_MINUTE", default=50)
MONITORING_429_PER_MINUTE = env.int("MONITORING_429_PER_MINUTE", default=20)
# A repeat within this long of an alert's last sighting counts on that alert.
MONITORING_ALERT_WINDOW_SECONDS = env.int(
    "MONITORING_ALERT_WINDOW_SECONDS", default=3600
)
# Alert channels: mail (these addresses, else the Admin group's staff) and a
# Slack-compatible webhook signed with HMAC-SHA256 (X-Kreo-Signature).
MONITORING_ALERT_EMAILS = env.list("MONITORING_ALERT_EMAILS", default=[])
MONITORING_WEBHOOK_URL = env.str("MONITORING_WEBHOOK_URL", default="")
MONITORING_WEBHOOK_SECRET = env.str("MONITORING_WEBHOOK_SECRET", default="")
MONITORING_WEBHOOK_TIMEOUT_SECONDS = env.float(
    "MONITORING_WEBHOOK_TIMEOUT_SECONDS", default=5.0
)
MONITORING_WEBHOOK_RETRIES = env.int("MONITORING_WEBHOOK_RETRIES", default=5)
MONITORING_WEBHOOK_BACKOFF_SECONDS = env.int(
    "MONITORING_WEBHOOK_BACKOFF_SECONDS", default=10
)
# Traffic filtering (monitoring/ipfilter.py): each process re-reads the
# shared version of the IP deny / admin allow lists this often (a change
# applies everywhere within it); refused requests are summarised in the audit
# trail once per entry per MONITORING_IPFILTER_SUMMARY_SECONDS.
MONITORING_IPFILTER_REFRESH_SECONDS = env.float(
    "MONITORING_IPFILTER_REFRESH_SECONDS", default=2.0
)
MONITORING_IPFILTER_SUMMARY_SECONDS = env.int(
    "MONITORING_IPFILTER_SUMMARY_SECONDS", default=60
)
# Automatic temporary blocks: an alert of one of these rules about an IP
# puts that IP on the deny list for MONITORING_AUTOBLOCK_SECONDS.
MONITORING_AUTOBLOCK = env.bool("MONITORING_AUTOBLOCK", default=False)
MONITORING_AUTOBLOCK_RULES = env.list(
    "MONITORING_AUTOBLOCK_RULES", default=["credential_stuffing", "rate_limit_storm"]
)
MONITORING_AUTOBLOCK_SECONDS = env.int("MONITORING_AUTOBLOCK_SECONDS", default=3600)
# An IPv6 address is blocked with its network of this prefix length (a host
# usually holds a whole /64).
MONITORING_AUTOBLOCK_IPV6_PREFIX = env.int(
    "MONITORING_AUTOBLOCK_IPV6_PREFIX", default=64
)

# Audit trail (audit/): seals signed with Ed25519, archives AES-256-GCM in S3.
# Keys are any high-entropy strings; with no environment, development keys
# are generated once into var/keys (production must set them).
AUDIT_ENABLED = env.bool("AUDIT_ENABLED", default=True)
# Anonymous 4xx (and limit refusals) recorded one by one per client IP (or
# user) per minute; past it, one summary event for the rest of the minute.
AUDIT_FLOOD_PER_MINUTE = env.int("AUDIT_FLOOD_PER_MINUTE", default=30)
AUDIT_SIGNING_KEY = env.str("AUDIT_SIGNING_KEY", default="") or local_secret(
    VAR_DIR, "audit-signing-key"
)
AUDIT_ARCHIVE_KEY = env.str("AUDIT_ARCHIVE_KEY", default="") or local_secret(
    VAR_DIR, "audit-archive-key"
)
# The ring of event MAC keys, "id:secret[,id:secret...]", the first signs new
# events; the database never holds them (audit/keys.py).
AUDIT_EVENT_KEY = env.str("AUDIT_EVENT_KEY", default="") or (
    "dev:" + local_secret(VAR_DIR, "audit-event-key")
)
AUDIT_VERIFY_PUBLIC_KEY = env.str("AUDIT_VERIFY_PUBLIC_KEY", default="")
AUDIT_ARCHIVE_S3_BUCKET = env.str("AUDIT_ARCHIVE_S3_BUCKET", default="")
# The archival purge's own database role (audit.sql.purge_grants_sql): the
# application role then holds no DELETE on audit events. Blank: the app's
# connection purges (SQLite, one-role setups).
AUDIT_PURGE_DATABASE_URL = env.str("AUDIT_PURGE_DATABASE_URL", default="")
# An event outside a business transaction (request events, sign-in failures,
# task events) commits without waiting for PostgreSQL's WAL flush: the
# database groups the flushes (audit/services.py _write, README "Audit").
AUDIT_ASYNC_COMMIT = env.bool("AUDIT_ASYNC_COMMIT", default=True)
# Group commit (audit/buffer.py, PostgreSQL): such events, recorded in a
# request, a task or `buffered()`, wait in a per-process buffer written as one
# INSERT every AUDIT_BUFFER_MAX_EVENTS events or AUDIT_BUFFER_MAX_MS ms, and
# at the end of each request and task. The buffer's age is the crash window.
AUDIT_GROUP_COMMIT = env.bool("AUDIT_GROUP_COMMIT", default=True)
AUDIT_BUFFER_MAX_EVENTS = env.int("AUDIT_BUFFER_MAX_EVENTS", default=200)
AUDIT_BUFFER_MAX_MS = env.int("AUDIT_BUFFER_MAX_MS", default=50)
# Applied by `migrate` (run as the owner) when set: the application role's
# and the purge role's grants on the audit tables (audit/sql.py).
KREO_DB_APP_ROLE = env.str("KREO_DB_APP_ROLE", default="")
KREO_DB_PURGE_ROLE = env.str("KREO_DB_PURGE_ROLE", default="")
AUDIT_ARCHIVE_S3_ENDPOINT_URL = env.str(
    "AUDIT_ARCHIVE_S3_ENDPOINT_URL",
    default=env.str("AWS_S3_ENDPOINT_URL", default=""),
)
AUDIT_ARCHIVE_S3_REGION = env.str(
    "AUDIT_ARCHIVE_S3_REGION",
    default=env.str("AWS_S3_REGION_NAME", default="eu-west-2"),
)
AUDIT_ARCHIVE_PREFIX = env.str("AUDIT_ARCHIVE_PREFIX", default="audit/")
AUDIT_ARCHIVE_LOCK_DAYS = env.int("AUDIT_ARCHIVE_LOCK_DAYS", default=365)
AUDIT_ARCHIVE_MAX_EVENTS = env.int("AUDIT_ARCHIVE_MAX_EVENTS", default=250_000)
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=30)
AUDIT_SEAL_DELAY_SECONDS = env.int("AUDIT_SEAL_DELAY_SECONDS", default=10)
AUDIT_SEAL_BATCH = env.int("AUDIT_SEAL_BATCH", default=5000)
# Events dated this much before an earlier-id event count as back-dated inserts.
AUDIT_CLOCK_SKEW_SECONDS = env.int("AUDIT_CLOCK_SKEW_SECONDS", default=300)
AUDIT_SEAL_INTERVAL_SECONDS = env.int("AUDIT_SEAL_INTERVAL_SECONDS", default=60)
AUDIT_ARCHIVE_INTERVAL_SECONDS = env.int("AUDIT_ARCHIVE_INTERVAL_SECONDS", default=3600)
AUDIT_REVIEW_DAYS = env.int("AUDIT_REVIEW_DAYS", default=7)
AUDIT_REVIEW_INTERVAL_SECONDS = env.int("AUDIT_REVIEW_INTERVAL_SECONDS", default=3600)
# Events that cannot be written while the database is out go to a local,
# append-only spool (audit/spool.py), written to the trail when it returns.
AUDIT_SPOOL_DIR = Path(
    env.str("KREO_AUDIT_SPOOL_DIR", default="") or str(VAR_DIR / "audit-spool")
)
AUDIT_SPOOL_MAX_BYTES = env.int("KREO_AUDIT_SPOOL_MAX_BYTES", default=64 * 1024 * 1024)
AUDIT_SPOOL_DRAIN_SECONDS = env.int("KREO_AUDIT_SPOOL_DRAIN_SECONDS", default=60)
# Anchors (audit/anchors.py): each seal's head, signed and chained, kept
# outside the database: in AUDIT_ANCHOR_S3_BUCKET (default: the archive
# bucket) under AUDIT_ANCHOR_PREFIX with Object Lock, else in a local folder.
AUDIT_ANCHOR_SECONDS = env.int("AUDIT_ANCHOR_SECONDS", default=300)
AUDIT_ANCHOR_S3_BUCKET = env.str("AUDIT_ANCHOR_S3_BUCKET", default="")
AUDIT_ANCHOR_PREFIX = env.str("AUDIT_ANCHOR_PREFIX", default="audit-anchors/")
AUDIT_ANCHOR_LOCK_DAYS = env.int(
    "AUDIT_ANCHOR_LOCK_DAYS", default=AUDIT_ARCHIVE_LOCK_DAYS
)
AUDIT_ANCHOR_DIR = Path(
    env.str("AUDIT_ANCHOR_DIR", default="") or str(VAR_DIR / "audit-anchors")
)
# audit_verify on a schedule: hot store + anchors, and everything (archives).
AUDIT_VERIFY_HOT_SECONDS = env.int("AUDIT_VERIFY_HOT_SECONDS", default=15 * 60)
AUDIT_VERIFY_FULL_SECONDS = env.int("AUDIT_VERIFY_FULL_SECONDS", default=24 * 3600)
# audit_verify checks the hot store on PostgreSQL in this many processes side
# by side (forked, each with its own connection, a span of seals each), when
# each would get at least AUDIT_VERIFY_SPAN_MIN_EVENTS events; 1: one process.
AUDIT_VERIFY_WORKERS = env.int(
    "AUDIT_VERIFY_WORKERS", default=min(4, os.cpu_count() or 1)
)
AUDIT_VERIFY_SPAN_MIN_EVENTS = env.int("AUDIT_VERIFY_SPAN_MIN_EVENTS", default=20_000)
# django-auditlog: field-level changes, tied to the request's correlation id.
AUDITLOG_CID_GETTER = "audit.context.auditlog_cid"
AUDITLOG_MASK_CALLABLE = "audit.context.mask_secret"
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    {"model": "accounts.User", "mask_fields": ["password"]},
    "projects.Project",
    "projects.Membership",
)
AUDITLOG_DISABLE_REMOTE_ADDR = False

# Status page (status/): probes of our own endpoints every minute, samples
# kept STATUS_SAMPLE_DAYS, a static copy in STATUS_STATIC_DIR and, when set,
# in STATUS_S3_BUCKET (public read, its own bucket, never a data bucket).
STATUS_PROBE_BASE_URL = env.str(
    "STATUS_PROBE_BASE_URL", default="http://127.0.0.1:8000"
)
STATUS_PROBE_SECONDS = env.int("STATUS_PROBE_SECONDS", default=60)
STATUS_PROBE_TIMEOUT_SECONDS = env.float("STATUS_PROBE_TIMEOUT_SECONDS", default=5.0)
STATUS_PROBE_SLOW_MS = env.int("STATUS_PROBE_SLOW_MS", default=2000)
STATUS_SAMPLE_DAYS = env.int("STATUS_SAMPLE_DAYS", default=91)
STATUS_PUBLISH_SECONDS = env.int("STATUS_PUBLISH_SECONDS", default=300)
STATUS_STATIC_DIR = Path(
    env.str("STATUS_STATIC_DIR", default="") or str(VAR_DIR / "status-static")
)
STATUS_S3_BUCKET = env.str("STATUS_S3_BUCKET", default="")
STATUS_S3_ENDPOINT_URL = env.str(
    "STATUS_S3_ENDPOINT_URL", default=env.str("AWS_S3_ENDPOINT_URL", default="")
)
STATUS_S3_REGION = env.str(
    "STATUS_S3_REGION", default=env.str("AWS_S3_REGION_NAME", default="eu-west-2")
)
# The public address of the page in the app (links in mail, feeds, JSON).
STATUS_PUBLIC_URL = env.str(
    "STATUS_PUBLIC_URL", default="http://127.0.0.1:8000/status/"
)
# Webhooks to private or loopback addresses are refused (no SSRF) unless set.
STATUS_WEBHOOK_ALLOW_PRIVATE = env.bool("STATUS_WEBHOOK_ALLOW_PRIVATE", default=False)
STATUS_WEBHOOK_TIMEOUT_SECONDS = env.float(
    "STATUS_WEBHOOK_TIMEOUT_SECONDS", default=5.0
)
# One confirmation or reminder mail per address per this many seconds.
STATUS_MAIL_INTERVAL_SECONDS = env.int("STATUS_MAIL_INTERVAL_SECONDS", default=3600)
STATUS_RATES = {
    "subscribe-ip": env.str("KREO_RATE_STATUS_SUBSCRIBE_IP", default="10/h"),
    "subscribe-account": env.str("KREO_RATE_STATUS_SUBSCRIBE_ACCOUNT", default="3/h"),
    "unsubscribe-ip": env.str("KREO_RATE_STATUS_UNSUBSCRIBE_IP", default="30/h"),
}
