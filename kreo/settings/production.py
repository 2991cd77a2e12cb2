"""Production: TLS only, secrets from the environment, refuses an insecure start.

Passes ``manage.py check --deploy --fail-level WARNING``.
"""

import os
import sys

# A production process also needs its real database and a shared cache (rate
# limits and sessions must hold across processes): no silent SQLite fallback.
REQUIRED = ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL")
# Project files live in object storage (S3 in eu-west-2, or compatible): on a
# pod's disk they would die with it and no other pod would see them.
REQUIRED = (*REQUIRED, "AWS_STORAGE_BUCKET_NAME")
# The CAPTCHA of sign-up, password reset and the adaptive login CAPTCHA:
# ALTCHA (the default) signs its challenges with a key of its own; reCAPTCHA
# needs Google's keys.
_captcha = os.environ.get("KREO_CAPTCHA", "").strip() or "altcha"
if _captcha not in ("altcha", "recaptcha"):
    sys.stderr.write(
        "kreo: production settings refuse to start: KREO_CAPTCHA must be "
        f"altcha or recaptcha, not {_captcha!r}.\n"
    )
    raise SystemExit(1)
if _captcha == "recaptcha":
    REQUIRED = (*REQUIRED, "RECAPTCHA_PUBLIC_KEY", "RECAPTCHA_PRIVATE_KEY")
else:
    REQUIRED = (*REQUIRED, "KREO_ALTCHA_HMAC_KEY")
# Key-encryption keys of project files, and where erasure tombstones live: a
# folder on one host, or else a bucket all pods share.
REQUIRED = (*REQUIRED, "KREO_KEYRING", "KREO_ACTIVE_KEY_ID")
if not os.environ.get("KREO_KEY_LEDGER_S3_BUCKET", "").strip():
    REQUIRED = (*REQUIRED, "KREO_KEY_LEDGER_DIR")
# The audit trail: seal signing key, archive encryption key, event MAC key
# ring, archive bucket
# (without them, dev keys would be generated on the pod's tmpfs and lost).
REQUIRED = (
    *REQUIRED,
    "AUDIT_SIGNING_KEY",
    "AUDIT_ARCHIVE_KEY",
    "AUDIT_EVENT_KEY",
    "AUDIT_ARCHIVE_S3_BUCKET",
)
# Backups: key A (copies 1 and 3), the manifest MAC key, and the age public
# key of copy 2 (the identity stays off the app hosts). The two secret keys
# are required only where backups run: a process that never runs them
# (Kubernetes' web, default worker, beat and migration job: deploy/k8s, where
# backup tasks go to the `backups` queue's own worker) sets
# KREO_RUNS_BACKUPS=false and is not handed them; a backup reaching it anyway
# fails naming the missing key.
REQUIRED = (*REQUIRED, "BACKUP_AGE_RECIPIENT")
if os.environ.get("KREO_RUNS_BACKUPS", "true").strip().lower() not in (
    "false",
    "0",
    "no",
    "off",
):
    REQUIRED = (*REQUIRED, "BACKUP_ENCRYPTION_KEY", "BACKUP_MANIFEST_KEY")
# The 3-2-1 rule: copy 3's bucket (without it no set is ever good), and the
# two local copies' folders, named so they can be put on two filesystems
# (`check --deploy` refuses one device for both).
REQUIRED = (*REQUIRED, "BACKUP_S3_BUCKET", "BACKUP_COPY1_DIR", "BACKUP_COPY2_DIR")
# An alert webhook is signed: a URL without its secret would send unsigned.
if os.environ.get("MONITORING_WEBHOOK_URL", "").strip():
    REQUIRED = (*REQUIRED, "MONITORING_WEBHOOK_SECRET")
# Single sign-on (accounts.oidc), when switched on: the Keycloak client secret.
if os.environ.get("KREO_OIDC_ISSUER", "").strip():
    REQUIRED = (*REQUIRED, "KREO_OIDC_CLIENT_SECRET")
_missing = [name for name in REQUIRED if not os.environ.get(name, "").strip()]
if _missing:
    # A plain message and exit status 1, not a traceback from deep inside
    # Django: operators read this in a container log.
    sys.stderr.write(
        "kreo: production settings refuse to start: set "
        + ", ".join(_missing)
        + " in the environment (see .env.example).\n"
    )
    raise SystemExit(1)
# Every key in the format the code that uses it expects (kreo.keyformats): a
# malformed one would otherwise fail a backup or an upload hours later.
from kreo.keyformats import problems as _key_problems  # noqa: E402

_malformed = _key_problems(os.environ)
if _malformed:
    sys.stderr.write(
        "kreo: production settings refuse to start: "
        + " ".join(message for _, message in _malformed)
        + "\n"
    )
    raise SystemExit(1)

from kreo.settings.base import *  # noqa: E402, F403
from kreo.settings.base import env  # noqa: E402

# A short key could be found from one signed challenge, and then challenges
# forged offline.
if _captcha == "altcha" and len(KREO_ALTCHA_HMAC_KEY) < 32:  # noqa: F405
    sys.stderr.write(
        "kreo: production settings refuse to start: KREO_ALTCHA_HMAC_KEY must "
        "be at least 32 characters (openssl rand -base64 48).\n"
    )
    raise SystemExit(1)

if env.bool("DJANGO_DEBUG", default=False):
    sys.stderr.write(
        "kreo: production settings refuse to start with DJANGO_DEBUG on.\n"
    )
    raise SystemExit(1)
# Never Google's public test keys (the embedded default's): with ALTCHA chosen
# the reCAPTCHA keys stay blank.
RECAPTCHA_PUBLIC_KEY = env.str("RECAPTCHA_PUBLIC_KEY", default="")
RECAPTCHA_PRIVATE_KEY = env.str("RECAPTCHA_PRIVATE_KEY", default="")
DEBUG = False
# JSON lines on stdout for the log shipper (monitoring/, README "Logs"); a
# manage.py command's go to stderr, as its stdout is its answer (backup_now
# prints the set's id for scripts).
KREO_LOG_JSON = env.bool("KREO_LOG_JSON", default=True)
LOGGING = logging_config(  # noqa: F405
    KREO_LOG_JSON, stdout=os.path.basename(sys.argv[0]) != "manage.py"
)
# A token a scraper holds; short ones could be guessed.
MONITORING_TOKEN = env.str("MONITORING_TOKEN", default="")
if MONITORING_TOKEN and len(MONITORING_TOKEN) < 32:
    sys.stderr.write(
        "kreo: production settings refuse to start: MONITORING_TOKEN must be "
        "at least 32 characters (openssl rand -base64 48).\n"
    )
    raise SystemExit(1)
# Whatever a settings module above said: project files are encrypted.
KREO_FILE_ENCRYPTION = True

SECRET_KEY = env.str("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list(
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    default=[f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS],
)

# Passkeys answer pages over https only: each allowed host's https origin
# (the RP ID stays the request's host name unless KREO_WEBAUTHN_RP_ID says).
WEBAUTHN_ORIGINS = env.list(
    "KREO_WEBAUTHN_ORIGINS",
    default=[
        f"https://{host.lstrip('.')}" for host in ALLOWED_HOSTS if "*" not in host
    ],
)

SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# The load balancer terminates TLS and says so in this header; only honoured
# behind a trusted proxy.
if env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0) > 0:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"
# Probes and in-cluster scrapers reach the pod over plain HTTP (/metrics still
# wants its token or an allowed network).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Persistent connections (a top-level CONN_MAX_AGE would be ignored); the
# health check of base.py drops one a database restart broke.
DATABASES["default"]["CONN_MAX_AGE"] = env.int(  # noqa: F405
    "DJANGO_CONN_MAX_AGE", default=60
)

# gunicorn runs up to 256 threads a worker (deploy/gunicorn/gunicorn.conf.py,
# for slow clients): a connection per thread could exhaust PostgreSQL's
# max_connections. Each web worker shares a bounded pool instead (Django's
# psycopg pool, which needs CONN_MAX_AGE 0); a request that finds every
# connection busy waits up to KREO_DB_POOL_TIMEOUT seconds for one. The
# gunicorn config sets KREO_DB_POOL for its workers only: Celery's forked
# processes keep plain connections (a pool must not cross a fork).
_postgres = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"  # noqa: F405
if _postgres and env.bool("KREO_DB_POOL", default=False):
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {  # noqa: F405
        "min_size": 1,
        "max_size": env.int("KREO_DB_POOL_SIZE", default=10),
        "timeout": env.int("KREO_DB_POOL_TIMEOUT", default=10),
    }

# Backups never use generated development keys here: they would live on the
# container's tmpfs and die with it, taking every backup with them. Without
# these, backup_now and the scheduled backup fail with a message naming the
# variable (see .env.example); restore needs BACKUP_AGE_IDENTITY_FILE only
# for copy 2, on the host that restores.
BACKUP_ENCRYPTION_KEY = env.str("BACKUP_ENCRYPTION_KEY", default="")
BACKUP_MANIFEST_KEY = env.str("BACKUP_MANIFEST_KEY", default="")
BACKUP_AGE_RECIPIENT = env.str("BACKUP_AGE_RECIPIENT", default="")
BACKUP_AGE_IDENTITY_FILE = env.str("BACKUP_AGE_IDENTITY_FILE", default="")
