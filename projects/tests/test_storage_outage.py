"""S3 down is an outage, not an integrity failure.

Uploads and downloads, on the pages and the API, answer 503 with Retry-After
and a clear message while the S3 server is gone: no integrity alarm, no file
row without its object, and the same requests work again as soon as S3 is
back, without a restart. Only "no such object" is treated as missing.
"""

import logging
import socket
import subprocess
import sys
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent, Outcome
from kreo import s3 as kreo_s3
from projects import services
from projects.downloads import FILE_ALTERED
from projects.models import ProjectFile
from projects.storage import STORAGE_DOWN, is_missing
from projects.tests.factories import PDF, stored_file

pytestmark = pytest.mark.django_db

REGION = "eu-west-2"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    """A moto S3 server of this test's own, which the test kills and revives."""

    def __init__(self):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = f"kreo-outage-{uuid.uuid4().hex[:10]}"
        self.process = None

    def start(self) -> None:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1"]
        self.process = subprocess.Popen(  # noqa: S603 - moto, fixed arguments
            [*command, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto did not start")
        # moto keeps objects in memory: a revived server has an empty bucket.
        self.client.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    @property
    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's test credentials
        )

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listed.get("Contents", [])]


@pytest.fixture
def s3(settings):
    """The project files' storage on an S3 server this test owns, with the
    production client settings (kreo.s3.config)."""
    server = S3Server()
    server.start()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": server.bucket,
                "region_name": REGION,
                "endpoint_url": server.url,
                "access_key": "testing",
                "secret_key": "testing",
                "object_parameters": {"ServerSideEncryption": "AES256"},
                "default_acl": None,
                "file_overwrite": False,
                "client_config": kreo_s3.config(),
            },
        },
    }
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def project(owner):
    return services.project_create(actor=owner, name="Bridge deck")


@pytest.fixture
def page(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def api(owner):
    _, raw = AuthToken.objects.create(user=owner)
    return Client(HTTP_AUTHORIZATION=f"Token {raw}")


def _upload(page, project, name="deck.pdf"):
    return page.post(
        reverse("projects:file-upload", args=[project.pk]),
        {"file": SimpleUploadedFile(name, PDF + b"deck")},
    )


def _integrity_events():
    return AuditEvent.objects.filter(outcome=Outcome.ERROR, error_code="integrity")


def _assert_outage(response, caplog, *, json: bool) -> None:
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    if json:
        assert response.json()["detail"] == STORAGE_DOWN
    else:
        assert STORAGE_DOWN in response.content.decode()
        assert "Traceback" not in response.content.decode()
    assert any("S3 outage" in r.getMessage() for r in caplog.records)


def test_upload_page_with_s3_down_answers_503_stores_nothing_and_recovers(
    s3, page, project, caplog
):
    """The upload page answers 503 with the message and its form, no row is
    written, and the same upload works once S3 is back (no restart)."""
    assert _upload(page, project, "before.pdf").status_code == 302
    s3.kill()
    caplog.set_level(logging.ERROR, logger="projects.storage")
    response = _upload(page, project)
    _assert_outage(response, caplog, json=False)
    assert 'type="file"' in response.content.decode()  # the form, to retry
    assert list(ProjectFile.objects.values_list("name", flat=True)) == ["before.pdf"]
    assert not AuditEvent.objects.filter(
        event_type="file.upload", outcome=Outcome.SUCCESS, details__name="deck.pdf"
    ).exists()

    s3.start()
    assert _upload(page, project).status_code == 302
    item = ProjectFile.objects.get(name="deck.pdf")
    assert s3.keys() == [item.blob.name]


def test_api_upload_with_s3_down_answers_503_json(s3, api, project, caplog):
    """The API answers 503 JSON with the message and Retry-After; no row."""
    s3.kill()
    caplog.set_level(logging.ERROR, logger="projects.storage")
    response = api.post(
        reverse("api:file-list", args=[project.pk]),
        {"file": SimpleUploadedFile("deck.pdf", PDF + b"deck")},
    )
    _assert_outage(response, caplog, json=True)
    assert not ProjectFile.objects.exists()


def test_upload_to_an_s3_that_answers_nothing_leaves_no_object(
    s3, page, project, settings, caplog
):
    """Pointed at a port nobody listens on, the upload is refused with 503 and
    neither a row nor an object is left in the real bucket."""
    storages = {**settings.STORAGES}
    options = {**storages["default"]["OPTIONS"]}
    options["endpoint_url"] = f"http://127.0.0.1:{_free_port()}"
    storages["default"] = {**storages["default"], "OPTIONS": options}
    settings.STORAGES = storages
    caplog.set_level(logging.ERROR, logger="projects.storage")
    _assert_outage(_upload(page, project), caplog, json=False)
    assert not ProjectFile.objects.exists()
    assert s3.keys() == []


@pytest.mark.parametrize("via", ["page", "api"])
def test_download_with_s3_down_is_503_not_an_integrity_failure(
    s3, page, api, project, caplog, via
):
    """With S3 gone, a download answers 503 and raises no integrity alarm;
    once S3 is back with the object, the same download works."""
    item = stored_file(project, content=PDF + b"kept")
    sealed = s3.client.get_object(Bucket=s3.bucket, Key=item.blob.name)["Body"].read()
    client, name = (page, "projects") if via == "page" else (api, "api")
    url = reverse(f"{name}:file-download", args=[project.pk, item.pk])
    s3.kill()
    caplog.set_level(logging.ERROR, logger="projects.storage")
    response = client.get(url)
    _assert_outage(response, caplog, json=via == "api")
    assert not _integrity_events().exists()
    assert not AuditEvent.objects.filter(event_type="file.download").exists()

    s3.start()  # the same server, its object put back as a restore would
    s3.client.put_object(Bucket=s3.bucket, Key=item.blob.name, Body=sealed)
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF + b"kept"


@pytest.mark.parametrize("via", ["page", "api"])
def test_a_missing_object_is_still_an_integrity_failure(s3, page, api, project, via):
    """S3 answering NoSuchKey is what "missing" means: 409 and an audit event."""
    item = stored_file(project, content=PDF + b"gone")
    s3.client.delete_object(Bucket=s3.bucket, Key=item.blob.name)
    client, name = (page, "projects") if via == "page" else (api, "api")
    response = client.get(reverse(f"{name}:file-download", args=[project.pk, item.pk]))
    assert response.status_code == 409
    assert FILE_ALTERED in response.content.decode()
    assert _integrity_events().filter(target_id=str(item.pk)).count() == 1


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "missing"),
    [
        ("NoSuchKey", 404, True),
        ("404", 404, True),
        ("AccessDenied", 403, False),
        ("InternalError", 500, False),
        ("SlowDown", 503, False),
        ("NoSuchBucket", 404, False),
    ],
)
def test_only_no_such_key_counts_as_missing(code, status, missing):
    """AccessDenied, 5xx and a missing bucket are outages, never "missing"."""
    assert is_missing(_client_error(code, status)) is missing
