"""The static copy: page, JSON and feeds as files, outside the application.

Written to ``STATUS_STATIC_DIR`` and, when ``STATUS_S3_BUCKET`` is set, to
that bucket (public read, website hosting: see the README), so the status
answers while the application, its database or its cluster is down. Links
in the copy are rooted at ``/``: it is served from a hostname of its own.
"""

import mimetypes
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils import timezone

from kreo import s3
from status import api, feeds, selectors, views

ASSETS = {"status.css": "css/status.css", "status-time.js": "js/status-time.js"}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".atom": "application/atom+xml; charset=utf-8",
    ".rss": "application/rss+xml; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


def _links(now) -> dict:
    return {
        "root": "/",
        "css": "/status.css",
        "js": "/status-time.js",
        "subscribe": api.public_link("subscribe/"),
        "static_copy": True,
        "published_at": now,
    }


def _feed_request() -> HttpRequest:
    """A request to hand the feed classes: every link in them is absolute
    (STATUS_PUBLIC_URL), so only a host the site accepts is needed."""
    request = HttpRequest()
    hosts = [h.lstrip(".") for h in settings.ALLOWED_HOSTS if h not in ("*", "")]
    request.META = {
        "SERVER_NAME": hosts[0] if hosts else "localhost",
        "SERVER_PORT": "443",
    }
    return request


def _feed(feed_class) -> bytes:
    generator = feed_class().get_feed(None, _feed_request())
    return generator.writeString("utf-8").encode()


def render_all(now=None) -> dict[str, bytes]:
    """Every file of the static copy: path -> bytes."""
    import json

    now = now or timezone.now()
    links = _links(now)
    files: dict[str, bytes] = {}
    first = views.page_context(history_page=1)
    files["index.html"] = render_to_string(
        "status/index.html", {**first, **links}
    ).encode()
    for number in first["history"].paginator.page_range:
        if number > 1:
            context = {**views.page_context(history_page=number), **links}
            files[f"history/{number}/index.html"] = render_to_string(
                "status/history.html", context
            ).encode()
    for incident in selectors.incidents_all():
        files[f"incidents/{incident.public_id}/index.html"] = render_to_string(
            "status/incident.html", {"incident": incident, **links}
        ).encode()
    for name, document in api.documents(now).items():
        files[f"api/v2/{name}"] = json.dumps(document).encode()
    files["history.atom"] = _feed(feeds.IncidentsAtom)
    files["history.rss"] = _feed(feeds.IncidentsRss)
    for name, source in ASSETS.items():
        files[name] = Path(finders.find(source)).read_bytes()
    return files


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Readers never see a half-written file: write aside, then rename.
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    keep = set(files)
    for path in folder.rglob("*"):
        if path.is_file() and str(path.relative_to(folder)) not in keep:
            path.unlink()  # an incident deleted by staff leaves the copy too


def _content_type(name: str) -> str:
    suffix = Path(name).suffix
    return (
        CONTENT_TYPES.get(suffix)
        or mimetypes.guess_type(name)[0]
        or "application/octet-stream"
    )


def _write_bucket(files: dict[str, bytes]) -> None:
    client = s3.client(settings.STATUS_S3_ENDPOINT_URL, settings.STATUS_S3_REGION)
    bucket = settings.STATUS_S3_BUCKET
    for name, data in files.items():
        client.put_object(
            Bucket=bucket,
            Key=name,
            Body=data,
            ContentType=_content_type(name),
            CacheControl="public, max-age=60",
        )


def publish_all() -> int:
    """Render and write the static copy; returns the number of files."""
    files = render_all()
    _write_folder(Path(settings.STATUS_STATIC_DIR), files)
    if settings.STATUS_S3_BUCKET:
        _write_bucket(files)
    return len(files)
