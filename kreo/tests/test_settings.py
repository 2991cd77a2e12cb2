"""Settings come from the environment; production refuses an insecure start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every variable production requires, as the CI placeholders .ci/run uses.
PRODUCTION_ENV = dict(
    line.split("=", 1)
    for line in (ROOT / ".ci" / "production.env").read_text().splitlines()
    if line and not line.startswith("#")
)
REQUIRED = [k for k in PRODUCTION_ENV if k != "DJANGO_SETTINGS_MODULE"]


def manage(*args, env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "missing",
    ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"],
)
def test_production_refuses_to_start_without_a_required_variable(missing):
    """A clear one-line message naming the variable, exit 1, no traceback."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    done = manage("check", env=env)
    assert done.returncode == 1
    assert f"refuse to start: set {missing}" in done.stderr
    assert "Traceback" not in done.stderr


def test_production_names_every_missing_variable_at_once():
    """An operator fixes the environment in one go: all missing names are listed."""
    done = manage("check", env={"DJANGO_SETTINGS_MODULE": "kreo.settings.production"})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    missing = done.stderr.split("set ", 1)[1].split(" in the environment")[0]
    assert sorted(missing.split(", ")) == sorted(REQUIRED)


def test_production_refuses_debug():
    done = manage("check", env={**PRODUCTION_ENV, "DJANGO_DEBUG": "true"})
    assert done.returncode == 1
    assert "DJANGO_DEBUG" in done.stderr


# The ledger bucket a production test may name (projects/tests/test_ledger.py).
LEDGER_BUCKET = "kreo-key-ledger"


def deploy_s3(s3_client) -> dict:
    """What `check --deploy` needs to read the backup bucket's region and each
    app bucket's Object Lock (kreo.W020): the CI buckets, with Object Lock, on
    the run's S3 server, in eu-west-2."""
    for bucket in (
        PRODUCTION_ENV["BACKUP_S3_BUCKET"],
        PRODUCTION_ENV["AUDIT_ARCHIVE_S3_BUCKET"],
        LEDGER_BUCKET,
    ):
        try:
            s3_client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
                ObjectLockEnabledForBucket=True,
            )
        except s3_client.exceptions.BucketAlreadyOwnedByYou:
            pass
    endpoint = os.environ["KREO_TEST_S3_ENDPOINT"]
    return {
        "BACKUP_S3_ENDPOINT_URL": endpoint,
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL": endpoint,
        "KREO_KEY_LEDGER_S3_ENDPOINT_URL": endpoint,
        # moto is plain HTTP on the loopback (kreo.checks, kreo.E132).
        "KREO_PLAINTEXT_LINKS_OK": "s3",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's test credentials
    }


def test_production_passes_the_deploy_check_with_no_warning(s3_client):
    done = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION_ENV, **deploy_s3(s3_client)},
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout


def test_production_security_settings():
    code = (
        "from django.conf import settings as s; import json; print(json.dumps({"
        "'hsts': s.SECURE_HSTS_SECONDS, 'sub': s.SECURE_HSTS_INCLUDE_SUBDOMAINS,"
        "'preload': s.SECURE_HSTS_PRELOAD, 'ssl': s.SECURE_SSL_REDIRECT,"
        "'cookie': [s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY,"
        " s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SECURE],"
        "'hasher': s.PASSWORD_HASHERS[0], 'csrf': s.CSRF_TRUSTED_ORIGINS,"
        "'frame': s.X_FRAME_OPTIONS, 'referrer': s.SECURE_REFERRER_POLICY,"
        "'csp': s.CONTENT_SECURITY_POLICY['DIRECTIVES']['default-src'],"
        "'age': s.SESSION_COOKIE_AGE, 'files': s.KREO_FILE_ENCRYPTION}))"
    )
    # No variable switches file encryption off (only the benchmark's own
    # settings module does, and production pins it on).
    tampered = {**PRODUCTION_ENV, "KREO_FILE_ENCRYPTION": "false"}
    done = manage("shell", "--no-imports", "-c", code, env=tampered)
    assert done.returncode == 0, done.stderr
    import json

    values = json.loads(done.stdout)
    assert values["hsts"] >= 31536000 and values["sub"] and values["preload"]
    assert values["ssl"] is True
    assert values["cookie"] == [True, True, "Lax", True]
    assert values["hasher"].endswith("Argon2PasswordHasher")
    assert values["csrf"] == ["https://app.kreo.example"]
    assert values["frame"] == "DENY" and values["referrer"] == "same-origin"
    assert values["csp"] == ["'self'"]
    assert 0 < values["age"] <= 12 * 3600
    assert values["files"] is True


def test_no_environment_means_the_embedded_default(tmp_path):
    """With nothing set: SQLite, local files, a filesystem broker, a generated key."""
    code = (
        "from django.conf import settings as s; from django.db import connection;"
        "print(connection.vendor, s.STORAGES['default']['BACKEND'],"
        " s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'])"
    )
    done = manage(
        "shell", "--no-imports", "-c", code, env={"KREO_VAR_DIR": str(tmp_path)}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "sqlite",
        "django.core.files.storage.FileSystemStorage",
        "filesystem://",
        "kreo.cache.SharedCache",
    ]
    key = tmp_path / "keys" / "django-secret-key"
    assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"
    assert "generated development key" in done.stderr
    again = manage(
        "shell", "--no-imports", "-c", "print(1)", env={"KREO_VAR_DIR": str(tmp_path)}
    )
    assert "generated development key" not in again.stderr


def test_environment_moves_the_app_to_real_servers(tmp_path):
    code = (
        "from django.conf import settings as s; from django.db import connection;"
        "print(connection.vendor, s.STORAGES['default']['BACKEND'],"
        " s.STORAGES['default']['OPTIONS']['region_name'], s.CELERY_BROKER_URL)"
    )
    env = {
        "KREO_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://kreo:kreo@127.0.0.1:5432/kreo",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "AWS_STORAGE_BUCKET_NAME": "kreo-files",
    }
    done = manage("shell", "--no-imports", "-c", code, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "postgresql",
        "storages.backends.s3.S3Storage",
        "eu-west-2",
        "redis://127.0.0.1:6379/3",
    ]
