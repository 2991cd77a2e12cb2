"""Fixtures shared by every app's tests: real S3, real Redis, users and projects."""

import base64
import os
import uuid

import boto3
import pytest
from django.conf import settings
from django.db import connection

S3_ENDPOINT = os.environ.get("KREO_TEST_S3_ENDPOINT", "")
REDIS_URL = os.environ.get("KREO_TEST_REDIS_URL", "")
REGION = "eu-west-2"


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    test_name = (db.get("TEST") or {}).get("NAME") or f"test_{db['NAME']}"
    where = (
        f"test database file {test_name}"
        if db["ENGINE"].endswith("sqlite3")
        else f"test database {test_name} on {db.get('HOST')}:{db.get('PORT')}"
    )
    storage = settings.STORAGES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return [
        f"kreo: database {connection.vendor} ({where})",
        f"kreo: file storage {storage}; cache {settings.CACHES['default']['BACKEND']}",
        f"kreo: S3 server {S3_ENDPOINT or 'none'}; Redis {REDIS_URL or 'none'}",
    ]


def _need(value: str, what: str) -> str:
    if not value:
        pytest.fail(f"{what} is not set: run the suite with `make test`.")
    return value


@pytest.fixture(scope="session")
def s3_client():
    """A boto3 client talking to the run's real S3 server."""
    return boto3.client(
        "s3",
        endpoint_url=_need(S3_ENDPOINT, "KREO_TEST_S3_ENDPOINT"),
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's test credentials
    )


def make_locked_bucket(client, prefix: str) -> str:
    """A new bucket with Object Lock (as production's archive, backup copy 3
    and erasure ledger buckets are), named ``prefix-<random>``."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    client.create_bucket(
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": REGION},
        ObjectLockEnabledForBucket=True,
    )
    return name


def make_bucket(client, name: str) -> str:
    try:
        client.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return name


@pytest.fixture(scope="session", autouse=True)
def _app_bucket():
    """The PostgreSQL leg keeps files in S3: its bucket must exist."""
    bucket = settings.STORAGES["default"].get("OPTIONS", {}).get("bucket_name")
    if bucket:
        make_bucket(
            boto3.client(
                "s3",
                endpoint_url=S3_ENDPOINT,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106
            ),
            bucket,
        )


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path):
    """Local file storage goes to a fresh folder for each test."""
    if settings.STORAGES["default"]["BACKEND"].endswith("FileSystemStorage"):
        storages = {**settings.STORAGES}
        storages["default"] = {
            **storages["default"],
            "OPTIONS": {
                **storages["default"]["OPTIONS"],
                "location": tmp_path / "media",
            },
        }
        settings.STORAGES = storages


@pytest.fixture(autouse=True)
def _isolated_key_ledger(settings, tmp_path):
    """Each test has its own erasure ledger (projects.keys), outside the database."""
    settings.KREO_KEY_LEDGER_DIR = tmp_path / "key-ledger"


@pytest.fixture(autouse=True)
def _isolated_audit_anchors(settings, tmp_path):
    """Each test has its own audit anchor folder (audit/anchors.py): anchors
    of another test's seals would make audit_verify report a cut tail."""
    settings.AUDIT_ANCHOR_DIR = tmp_path / "audit-anchors"


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.fixture
def backup_settings(settings, tmp_path):
    """Backups into this test's own folders, under fresh keys, no copy 3."""
    settings.BACKUP_COPY1_DIR = tmp_path / "copy1"
    settings.BACKUP_COPY2_DIR = tmp_path / "copy2"
    settings.BACKUP_ENCRYPTION_KEY = new_key()
    settings.BACKUP_MANIFEST_KEY = new_key()
    settings.BACKUP_AGE_RECIPIENT = ""
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "keys" / "age-identity")
    settings.BACKUP_S3_BUCKET = ""
    return settings


@pytest.fixture
def offsite(settings, s3_client):
    """An Object Lock bucket in eu-west-2 for backup copy 3: a set is good only
    with its three copies (the 3-2-1 rule)."""
    bucket = make_locked_bucket(s3_client, "kreo-backups")
    settings.BACKUP_S3_BUCKET = bucket
    settings.BACKUP_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.BACKUP_S3_LOCK_DAYS = 1
    return bucket


@pytest.fixture
def ledger_bucket(settings, s3_client):
    """An erasure ledger bucket of its own, with Object Lock, on the S3 server."""
    bucket = make_locked_bucket(s3_client, "kreo-ledger")
    settings.KREO_KEY_LEDGER_S3_BUCKET = bucket
    settings.KREO_KEY_LEDGER_S3_PREFIX = "kreo/"
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = S3_ENDPOINT
    return bucket


@pytest.fixture
def s3_storage(settings, s3_client):
    """Point the default storage at a fresh bucket on the S3 server."""
    bucket = make_bucket(s3_client, f"kreo-files-{uuid.uuid4().hex[:12]}")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "region_name": REGION,
                "endpoint_url": S3_ENDPOINT,
                "access_key": "testing",
                "secret_key": "testing",
                "object_parameters": {"ServerSideEncryption": "AES256"},
                "default_acl": None,
                "file_overwrite": False,
                "addressing_style": "path",
            },
        },
    }
    return bucket


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of the test's own on a free port (kreo.testing.faults.OwnRedis),
    for tests that kill, freeze or restart it."""
    from kreo.testing.faults import OwnRedis

    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture
def redis_url():
    return _need(REDIS_URL, "KREO_TEST_REDIS_URL")


@pytest.fixture(autouse=True)
def _isolated_rate_limits(settings):
    """Each test counts rate limits and sign-in failures from zero.

    A fresh key prefix for the ``ratelimit`` cache (Redis, or the embedded
    default's shared SQLite cache), so no test inherits another's attempts
    and nothing is flushed.
    """
    run = uuid.uuid4().hex[:12]
    caches = {**settings.CACHES}
    caches["ratelimit"] = {
        **caches["ratelimit"],
        "KEY_PREFIX": f"{caches['ratelimit'].get('KEY_PREFIX', '')}-{run}",
        "LOCATION": caches["ratelimit"].get("LOCATION") or f"ratelimit-{run}",
    }
    settings.CACHES = caches


@pytest.fixture
def otp_login(db):
    """Sign a user in through the real two-step login with a TOTP device.

    ``otp_login(client, user)`` gives ``user`` a confirmed TOTP device, posts
    the email and password to the login page, then a code computed from the
    device's secret to the second step, so the session is OTP-verified as the
    admin requires. The user's password must be the factories' ``PASSWORD``
    (or pass ``password=``). Returns the device.
    """
    from django.urls import reverse
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts.tests.factories import PASSWORD

    def login(client, user, password=PASSWORD):
        device = TOTPDevice.objects.create(user=user, name="test", confirmed=True)
        first = client.post(
            reverse("accounts:login"), {"username": user.email, "password": password}
        )
        assert first.status_code == 302, "the password step did not pass"
        code = totp(device.bin_key, step=device.step, t0=device.t0, digits=6)
        second = client.post(reverse("accounts:login-otp"), {"token": f"{code:06d}"})
        assert second.status_code == 302, "the code step did not pass"
        return device

    return login
