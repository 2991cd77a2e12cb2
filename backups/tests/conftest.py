"""Backup fixtures: private copy folders and keys per test, a seeded database,
and an Object Lock bucket on the run's real S3 server."""

import os
import uuid

import pytest
from django.db import connection

from accounts.tests.factories import UserFactory
from audit.services import audit_record
from backups import databases
from projects.tests.factories import MembershipFactory, ProjectFactory, stored_file

S3_ENDPOINT = os.environ.get("KREO_TEST_S3_ENDPOINT", "")


@pytest.fixture(autouse=True)
def _every_backup_test_has_its_own_copies(backup_settings):
    return backup_settings


@pytest.fixture
def versioned_offsite(settings, s3_client):
    """A versioned bucket in eu-west-2 without Object Lock: any version of an
    object can be deleted, as a careless or hostile operator could."""
    bucket = f"kreo-backups-v-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
    )
    s3_client.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    settings.BACKUP_S3_BUCKET = bucket
    settings.BACKUP_S3_ENDPOINT_URL = S3_ENDPOINT
    return bucket


@pytest.fixture
def seeded(transactional_db):
    """Users, projects with members and files, and audit events."""
    owner = UserFactory(email="owner@example.test")
    files = []
    for index in range(3):
        project = ProjectFactory(name=f"Tower {index}", created_by=owner)
        MembershipFactory(project=project, user=UserFactory())
        files.append(
            stored_file(
                project,
                name=f"drawing-{index}.pdf",
                content=b"%PDF-1.7\n" + os.urandom(3000 + index * 70000),
                uploaded_by=owner,
            )
        )
        audit_record(event_type="project.create", actor=owner, target=project)
    return {"owner": owner, "files": files}


def current_stats() -> dict:
    return databases.table_stats(connection.alias)


def stored_bytes(names) -> dict:
    from django.core.files.storage import default_storage

    out = {}
    for name in names:
        with default_storage.open(name, "rb") as handle:
            out[name] = handle.read()
    return out


@pytest.fixture
def pg_scratch_url():
    """An empty PostgreSQL database on the local server (both legs)."""
    import psycopg

    name = f"kreo_restore_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 user=kreo password=kreo dbname=kreo"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 for role kreo")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://kreo:kreo@127.0.0.1:5432/{name}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
