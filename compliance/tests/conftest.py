import pytest

from audit.tests.conftest import (  # noqa: F401 - fixtures
    archive_bucket,
    attacker_sql,
    sealed_now,
    superuser_sql,
    superuser_sql_or_none,
)
from conftest import make_locked_bucket


@pytest.fixture
def locked_archive(archive_bucket, settings, s3_client):  # noqa: F811
    """The audit archive in a bucket with Object Lock, as production has."""
    bucket = make_locked_bucket(s3_client, "kreo-audit-lock")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    return bucket
