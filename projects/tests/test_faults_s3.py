"""Fault injection: S3 unreachable under load, then back (issue #18).

The product as deployed: production settings (``.ci/production.env``), the
shipped gunicorn config (``deploy/gunicorn/gunicorn.conf.py``: gthread, here
with three workers; ``KREO_FAULT_S3_WORKER_CLASS=sync`` for sync workers,
one thread each), the test database, a Redis of the test's own, and the
project files on a moto S3 server that this test starts on a free port
(never the run's shared one). A small load runs throughout: downloads of
files uploaded before the fault through the page and the API, uploads through
the page and the API, a signed-in project page and ``/healthz``.

Two faults, each for ``KREO_FAULT_S3_SECONDS`` (default 8; the issue's figure
is 60):

- ``refused``: S3 is gone, as when its server is killed: the app reaches it
  through a TCP relay that this test owns, which stops listening and resets
  every open connection, then listens again on the same port. (moto keeps its
  objects in memory, so killing moto itself would lose every object stored
  before the fault, and the counts after it would mean nothing.)
- ``hung``: moto is stopped with SIGSTOP (connections are accepted, nothing is
  answered) and resumed with SIGCONT; it lasts at least 40 s, so that requests
  both start and end (503) inside it.

Expected: during the fault, uploads and downloads answer 503 with
Retry-After and ``projects.storage.STORAGE_DOWN``, the project page and
``/healthz`` 200, nothing 500 and no connection dropped; every request to
``/projects/`` or ``/api/`` has its audit event (same correlation id); no
integrity event; the same gunicorn workers (pids) answer normally again
within seconds of S3's return; and the file rows and the bucket's objects
match one for one, before and after (every upload stored whole, or refused
with nothing left behind). The figures are written as JSON to
``KREO_FAULT_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from knox.models import AuthToken

from accounts.tests.factories import PASSWORD
from audit.models import AuditEvent
from kreo.testing.faults import (
    BIN,
    Client,
    Load,
    production_env,
    recovered_at,
    serving,
)
from projects.models import ProjectFile, Role
from projects.storage import STORAGE_DOWN
from projects.tests.factories import PDF, MembershipFactory
from scripts import services

DOWN_SECONDS = float(os.environ.get("KREO_FAULT_S3_SECONDS", "8"))
HUNG_AT_LEAST = 40.0
# The shipped config's gthread, or "sync" (the setup) to compare.
WORKER_CLASS = os.environ.get("KREO_FAULT_S3_WORKER_CLASS", "gthread")
NAMED_KEY = re.compile(r"S3 outage: upload of .* key (projects/\S+) failed")
LINGER_RESET = struct.pack("ii", 1, 0)
REGION = "eu-west-2"
MESSAGE = STORAGE_DOWN.split(",")[0]
S3_KINDS = ("download_page", "download_api", "upload_page", "upload_api")
KINDS = (*S3_KINDS, "project", "healthz")
GOOD = {
    "download_page": 200,
    "download_api": 200,
    "upload_page": 302,
    "upload_api": 201,
    "project": 200,
    "healthz": 200,
}
# S3 is back when every upload and download is answered normally.
S3_GOOD = {kind: GOOD[kind] for kind in S3_KINDS}

pytestmark = [
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="the fault test runs the deployed layout: PostgreSQL leg",
    ),
]


class Relay:
    """A TCP relay on a fixed port: stopped, it refuses new connections and
    resets open ones, as a killed server does; started again, same port."""

    def __init__(self, target_port: int):
        self.port, self.target = services.free_port(), target_port
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                far = socket.create_connection(("127.0.0.1", self.target), 5)
            except OSError:
                near.close()
                continue
            far.settimeout(None)  # waiting on S3 is the app's to time out
            with self.lock:
                stopped = listener is not self.listener
                if not stopped:
                    self.open |= {near, far}
            if stopped:  # accepted just as the relay stopped
                _reset(near, far)
                continue
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            dropped, self.open = self.open, set()
        if listener is not None:
            listener.close()
        _reset(*dropped)


def _reset(*sockets: socket.socket) -> None:
    """Close with RST, not FIN: the peer sees "connection reset", as on a crash."""
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            sock.close()
        except OSError:
            pass


class OwnS3:
    """moto's S3 server of this test's own, reached only through the relay."""

    def __init__(self):
        self.moto_port = services.free_port()
        self.relay = Relay(self.moto_port)
        self.url = f"http://127.0.0.1:{self.relay.port}"
        self.bucket = f"kreo-fault-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - moto, fixed arguments
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1"]
            + ["-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        services.wait_for("127.0.0.1", self.moto_port, 30, "the test's S3 server")
        self.relay.start()
        self.client.create_bucket(
            Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )

    @property
    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's test credentials
        )

    def keys(self) -> set[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return {entry["Key"] for entry in listed.get("Contents", [])}

    def stop(self) -> None:
        self.relay.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def own_s3():
    s3 = OwnS3()
    s3.start()
    yield s3
    s3.stop()


@pytest.fixture
def gunicorn(own_s3, own_redis, tmp_path):
    """Production settings under the shipped gunicorn config, 3 workers."""
    port = services.free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **production_env(tmp_path, own_redis.url),
        "AWS_STORAGE_BUCKET_NAME": own_s3.bucket,
        "AWS_S3_ENDPOINT_URL": own_s3.url,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "KREO_PORT": str(port),
        "GUNICORN_WORKERS": "3",
        # gunicorn runs gthread for "sync" when threads > 1.
        **({"GUNICORN_THREADS": "1"} if WORKER_CLASS == "sync" else {}),
    }
    command = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn/gunicorn.conf.py"]
    with serving(command + ["--worker-class", WORKER_CLASS], env, port, log) as (
        url,
        process,
    ):
        yield url, process, log


class FilesLoad(Load):
    """One thread for each kind of request, so that a request waiting on S3
    does not hide how the others are answered."""

    def __init__(self, page: Client, token: str, project: str, files: list[str]):
        super().__init__(MESSAGE)
        self.page, self.token = page, token
        self.project, self.files = project, files
        self.counter = 0
        self.names: dict[int, str] = {}

    def _name(self, kind: str) -> str:
        with self.lock:
            self.counter += 1
            name = f"{kind}-{self.counter}.pdf"
        self.names[threading.get_ident()] = name
        return name

    def _one(self, kind: str, n: int, visitor: Client) -> requests.Response:
        self.names[threading.get_ident()] = ""
        page, api = f"/projects/{self.project}", f"/api/projects/{self.project}"
        token = {"Authorization": f"Token {self.token}"}
        file_id = self.files[n % len(self.files)]
        if kind == "download_page":
            return self.page.get(f"{page}/files/{file_id}/download/")
        if kind == "download_api":
            path = f"{api}/files/{file_id}/download/"
            return self.page.request("GET", path, headers=token)
        if kind == "upload_page":
            name = self._name(kind)
            csrf = {"csrfmiddlewaretoken": self.page.cookies["__Host-csrftoken"]}
            upload = {"file": (name, PDF + name.encode())}
            return self.page.request("POST", f"{page}/files/", data=csrf, files=upload)
        if kind == "upload_api":
            name = self._name(kind)
            upload = {"file": (name, PDF + name.encode())}
            return self.page.request(
                "POST", f"{api}/files/", files=upload, headers=token
            )
        if kind == "project":
            return self.page.get(f"{page}/")
        return self.page.get("/healthz")

    def _extra(self, kind: str, response: requests.Response | None) -> dict:
        name = self.names.get(threading.get_ident(), "")
        if response is None:
            return {"name": name, "cid": "", "complete": False}
        return {
            "name": name,
            "cid": response.headers.get("X-Correlation-ID", ""),
            "complete": response.headers.get("Content-Length")
            in (None, str(len(response.content))),
        }

    def start(self) -> list[threading.Thread]:
        return [self.thread(lambda n, k=kind: k, self.page) for kind in KINDS]


def _worker_pids(master: int) -> set[str]:
    """The gunicorn master's children: the workers."""
    return set(Path(f"/proc/{master}/task/{master}/children").read_text().split())


def _integrity_events():
    return AuditEvent.objects.filter(error_code="integrity").count()


@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_s3_down_under_load(own_s3, gunicorn, fault):
    """S3 refusing connections (killed) or hanging (SIGSTOP), under load:
    uploads and downloads answer 503 with Retry-After and the message, the
    project page and /healthz 200, never a 500 or a dropped connection; every
    request has its audit event and none is an integrity alarm; the same
    workers answer normally again within seconds of S3's return; every file
    row has its object and every object its row, before and after."""
    url, process, log = gunicorn
    member = MembershipFactory(role=Role.OWNER)
    page = Client(url)
    assert page.sign_in(member.user.email, PASSWORD).status_code == 302
    project = str(member.project.pk)
    _, token = AuthToken.objects.create(user=member.user)
    files = []
    for n in range(3):
        response = page.request(
            "POST",
            f"/api/projects/{project}/files/",
            files={"file": (f"before-{n}.pdf", PDF + bytes([n]))},
            headers={"Authorization": f"Token {token}"},
        )
        assert response.status_code == 201, response.text
        files.append(response.json()["id"])

    def counts() -> dict:
        rows = set(
            ProjectFile.objects.filter(project_id=project).values_list(
                "blob", flat=True
            )
        )
        objects = own_s3.keys()
        return {
            "rows": len(rows),
            "objects": len(objects),
            "rows_without_object": len(rows - objects),
            "objects_without_row": len(objects - rows),
        }

    before = counts()
    integrity_before = _integrity_events()
    events_before = AuditEvent.objects.count()

    load = FilesLoad(page, token, project, files)
    threads = load.start()
    time.sleep(3)
    pids_before = _worker_pids(process.pid)
    down_for = DOWN_SECONDS if fault == "refused" else max(DOWN_SECONDS, HUNG_AT_LEAST)
    if fault == "refused":
        own_s3.relay.stop()
    else:
        own_s3.process.send_signal(signal.SIGSTOP)
    down = time.monotonic()
    time.sleep(down_for)
    returning = time.monotonic()
    if fault == "refused":
        own_s3.relay.start()
    else:
        own_s3.process.send_signal(signal.SIGCONT)
    back = time.monotonic()
    deadline = back + 90
    while time.monotonic() < deadline:
        recovered = recovered_at(load.results, back, S3_GOOD)
        if recovered and time.monotonic() - recovered > 4:
            break
        time.sleep(0.2)
    load.stop.set()
    for thread in threads:
        thread.join(60)
    assert process.poll() is None, "gunicorn stopped"
    time.sleep(2)  # request events are written when each response closes

    results = load.results
    # Asked and answered while S3 was away (a request waiting on a hung S3
    # when it resumes is answered normally).
    during = [
        r
        for r in results
        if down < r["started"] and r["started"] + r["seconds"] < returning
    ]
    by_kind = {
        kind: sorted({r["status"] for r in during if r["kind"] == kind})
        for kind in KINDS
    }
    recovered = recovered_at(results, back, S3_GOOD)
    after = counts()
    audited = set(
        AuditEvent.objects.filter(
            correlation_id__in=[r["cid"] for r in results if r["cid"]]
        ).values_list("correlation_id", flat=True)
    )
    needs_event = [r for r in results if r["kind"] != "healthz"]
    unaudited = [r for r in needs_event if r["cid"] not in audited]
    stored = {r["name"] for r in results if r["name"] and r["status"] in (201, 302)}
    refused = [r for r in results if r["name"] and r["status"] == 503]
    names = set(
        ProjectFile.objects.filter(project_id=project).values_list("name", flat=True)
    )
    pids_after = _worker_pids(process.pid)
    orphans = own_s3.keys() - set(
        ProjectFile.objects.filter(project_id=project).values_list("blob", flat=True)
    )
    named = set(NAMED_KEY.findall(log.read_text(errors="replace")))
    report = {
        "fault": fault,
        "down_seconds": round(returning - down, 1),
        "gunicorn": f"deploy/gunicorn/gunicorn.conf.py, {WORKER_CLASS}, 3 workers",
        "requests": len(results),
        "during_fault": len(during),
        "statuses_during_fault": by_kind,
        "statuses_overall": sorted({r["status"] for r in results}),
        "slowest_s3_request_during_fault_s": round(
            max((r["seconds"] for r in during if r["kind"] in S3_KINDS), default=0), 3
        ),
        "slowest_project_page_during_fault_s": round(
            max((r["seconds"] for r in during if r["kind"] == "project"), default=0), 3
        ),
        "recovery_s_after_s3_back": round(recovered - back, 3) if recovered else None,
        "uploads_stored": len(stored),
        "uploads_refused_503": len(refused),
        "counts_before": before,
        "counts_after": after,
        "integrity_events_during": _integrity_events() - integrity_before,
        "audit_events_before": events_before,
        "audit_events_after": AuditEvent.objects.count(),
        "requests_needing_event": len(needs_event),
        "requests_without_event": len(unaudited),
        "incomplete_bodies": len([r for r in results if not r["complete"]]),
        "s3_requests_from_fault": [
            (
                round(r["started"] - down, 1),
                r["kind"],
                r["status"],
                round(r["seconds"], 1),
            )
            for r in sorted(results, key=lambda r: r["started"])
            if r["kind"] in S3_KINDS and r["started"] > down - 2
        ][:40],
        "orphans_named_in_outage_log": len(orphans & named),
        "worker_pids_before": sorted(pids_before),
        "worker_pids_after": sorted(pids_after),
    }
    if os.environ.get("KREO_FAULT_REPORT"):
        report_path = Path(os.environ["KREO_FAULT_REPORT"])
        report_path.with_name(f"{report_path.stem}-{fault}.json").write_text(
            json.dumps(report, indent=2)
        )

    assert 500 not in report["statuses_overall"], report
    assert 0 not in report["statuses_overall"], report  # no connection dropped
    for kind in S3_KINDS:
        assert by_kind[kind] == [503], report
    assert by_kind["project"] == [200], report
    assert by_kind["healthz"] == [200], report
    s3_during = [r for r in during if r["kind"] in S3_KINDS]
    assert all(r["message"] and r["retry_after"] for r in s3_during), report
    assert report["incomplete_bodies"] == 0, report
    assert recovered is not None, report
    assert report["recovery_s_after_s3_back"] < 10, report
    assert pids_after == pids_before, report  # no worker restarted
    assert report["integrity_events_during"] == 0, report
    assert report["requests_without_event"] == 0, (report, unaudited[:5])
    assert after["rows_without_object"] == 0, report
    # A PUT that timed out against a hung S3 may be carried out when S3
    # resumes, and one in flight when the relay is cut may have been stored
    # with its answer lost (seen once in 653 requests on a loaded machine):
    # each such object is one the app named in its outage line.
    assert orphans <= named, report
    assert after["objects_without_row"] == len(orphans), report
    assert before["rows_without_object"] == before["objects_without_row"] == 0
    assert stored <= names and not {r["name"] for r in refused} & names, report
    assert after["rows"] == before["rows"] + len(stored), report
    assert "Traceback" not in log.read_text(errors="replace")
