"""The static copy: files in a folder and a bucket, served without the app."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import feedparser
import pytest

from conftest import S3_ENDPOINT, make_bucket
from status import publish, services
from status.models import IncidentStatus
from status.tests import factories

pytestmark = pytest.mark.django_db


def _incident(components):
    return factories.incident(
        title="Files slow <i>today</i>",
        components=[components["storage"]],
        updates=[(IncidentStatus.MONITORING, "Fix deployed.")],
    )


def test_the_copy_has_page_json_feeds_and_incident_pages(settings, components):
    """Every part of the page is written as a file, links rooted at /."""
    item = _incident(components)
    count = publish.publish_all()
    folder = settings.STATUS_STATIC_DIR
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert count == len(names)
    for name in (
        "index.html",
        f"incidents/{item.public_id}/index.html",
        "api/v2/summary.json",
        "api/v2/status.json",
        "api/v2/components.json",
        "api/v2/incidents.json",
        "api/v2/incidents/unresolved.json",
        "api/v2/scheduled-maintenances.json",
        "history.atom",
        "history.rss",
        "status.css",
        "status-time.js",
    ):
        assert name in names
    html = (folder / "index.html").read_text()
    assert 'href="/status.css"' in html and "static copy, published" in html
    assert f'href="/incidents/{item.public_id}/"' in html
    assert "Files slow &lt;i&gt;today&lt;/i&gt;" in html
    assert "csrfmiddlewaretoken" not in html
    summary = json.loads((folder / "api/v2/summary.json").read_text())
    assert summary["incidents"][0]["status"] == "monitoring"
    assert not feedparser.parse((folder / "history.atom").read_bytes()).bozo


def test_a_deleted_incident_leaves_the_copy(settings, components):
    item = _incident(components)
    publish.publish_all()
    page = settings.STATUS_STATIC_DIR / f"incidents/{item.public_id}/index.html"
    assert page.exists()
    item.delete()
    publish.publish_all()
    assert not page.exists()


@pytest.mark.django_db(transaction=True)
def test_a_state_change_publishes_the_copy(settings, mail_now):
    """The mail relay goes away: two probe rounds later Email is degraded on
    the static copy, with nobody touching the admin."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()
    settings.STATUS_PROBE_BASE_URL = f"http://127.0.0.1:{_free_port()}"
    with mail_now():
        assert services.probe_all() == 0  # one bad round moves nothing
    assert not (settings.STATUS_STATIC_DIR / "api/v2/summary.json").exists()
    with mail_now():
        assert services.probe_all() > 0
    summary = json.loads(
        (settings.STATUS_STATIC_DIR / "api/v2/summary.json").read_text()
    )
    states = {c["name"]: c["status"] for c in summary["components"]}
    assert states["Email"] == "degraded_performance"
    assert summary["status"]["indicator"] in ("minor", "major", "critical")


def test_the_copy_goes_to_the_bucket(settings, s3_client, components):
    """With STATUS_S3_BUCKET set, the same files land in that bucket with
    their content types (the S3 server, over HTTP)."""
    bucket = make_bucket(s3_client, f"kreo-status-{uuid.uuid4().hex[:10]}")
    settings.STATUS_S3_BUCKET = bucket
    settings.STATUS_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.STATUS_S3_REGION = "eu-west-2"
    _incident(components)
    count = publish.publish_all()
    listed = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert len(listed) == count
    head = s3_client.head_object(Bucket=bucket, Key="index.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    body = s3_client.get_object(Bucket=bucket, Key="api/v2/status.json")["Body"]
    assert json.loads(body.read())["status"]["indicator"] == "major"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_plain_file_server_serves_the_copy_without_the_app(settings, components):
    """With no application running, python -m http.server on the folder
    answers the page, the API, the feed and each incident's permalink."""
    item = _incident(components)
    publish.publish_all()
    port = _free_port()
    server = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(settings.STATUS_STATIC_DIR),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/", timeout=1).close()  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)

        def get(path):
            with urllib.request.urlopen(base + path, timeout=5) as response:  # noqa: S310
                return response.status, response.read()

        status, page = get("/")
        assert status == 200 and b"Partial System Outage" in page
        assert get("/status.css")[0] == 200
        status, body = get("/api/v2/summary.json")
        assert json.loads(body)["status"]["indicator"] == "major"
        status, page = get(f"/incidents/{item.public_id}/")
        assert b"Fix deployed." in page
        assert not feedparser.parse(get("/history.atom")[1]).bozo
    finally:
        server.terminate()
        server.wait(10)


def test_the_status_bucket_is_never_a_data_bucket(settings):
    """A public status bucket that is also the backup bucket stops the check."""
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from status.checks import SHARED_BUCKET

    settings.BACKUP_S3_BUCKET = settings.STATUS_S3_BUCKET = "kreo-shared"
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert SHARED_BUCKET.format(name="BACKUP_S3_BUCKET") in str(raised.value)
    settings.STATUS_S3_BUCKET = "kreo-status"
    call_command("check")
