"""Fault injection: PostgreSQL stopped under load, then started again.

The test starts its own PostgreSQL cluster (initdb into a temporary folder,
a free loopback port; as the ``postgres`` OS user when run as root), never
the machine's shared one, and a real gunicorn with three sync workers on it
(persistent connections on, ``DJANGO_CONN_MAX_AGE=60``, as in production).
Three client threads load it: the sign-in page, a project page with a
session cookie, and the API with a token. PostgreSQL is then stopped for
``KREO_FAULT_PG_SECONDS`` (10 by default; the issue's figure is 30) and
started again, with no restart of gunicorn.

Recorded and asserted: the status codes during the fault (503 with the
message and Retry-After, never 500), the recovery time of each kind of
request after the database is back, and the audit events: every request
that should leave one (each failure, each page and API request) has it on
the trail after recovery, those of the outage with ``spooled=True`` and the
time they happened, and ``audit_verify`` passes. A one-line summary is
written to the terminal.
"""

import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import requests

from kreo.outage import DATABASE_UNAVAILABLE

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        os.environ.get("KREO_TEST_LEG") != "postgres",
        reason="starts its own PostgreSQL cluster: the PostgreSQL leg's fault test",
    ),
]

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
OUTAGE_SECONDS = float(os.environ.get("KREO_FAULT_PG_SECONDS", "10"))
EMAIL = "fault@example.test"
PASSWORD = "a long fault test password"  # noqa: S105 - a throwaway local account
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
AREAS = ("/projects/", "/api/")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Cluster:
    """A PostgreSQL cluster of this test's own, in a temporary folder."""

    def __init__(self, root: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.log = root / "postgres.log"
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_owner:
            shutil.chown(root, "postgres", "postgres")
        self.url = f"postgres://kreo:kreo@{HOST}:{self.port}/kreo"

    def _run(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - PostgreSQL's own tools, fixed arguments
            [*self.as_owner, *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        with psycopg.connect(
            host=HOST, port=self.port, user="postgres", dbname="postgres"
        ) as conn:
            conn.autocommit = True
            conn.execute("CREATE ROLE kreo LOGIN PASSWORD 'kreo'")
            conn.execute("CREATE DATABASE kreo OWNER kreo")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} "
            f"-c unix_socket_directories={self.root} -c fsync=off"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.log),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    def sql(self, query: str, args=None) -> list:
        with psycopg.connect(self.url) as conn:
            return conn.execute(query, args).fetchall()


@dataclass
class Answer:
    kind: str
    path: str
    started: float
    ended: float
    started_at: datetime
    ended_at: datetime
    status: int
    cid: str
    retry_after: str
    body: str = field(repr=False)


def _env(root: Path, cluster: Cluster) -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_"))
    }
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
        "DATABASE_URL": cluster.url,
        "DJANGO_CONN_MAX_AGE": "60",
        "KREO_VAR_DIR": str(root / "var"),
        "KREO_AUDIT_SPOOL_DIR": str(root / "spool"),
        # Sealed at once, and a back-dated event counts after one second, so
        # that verify would catch a spooled event it did not account for.
        "AUDIT_SEAL_DELAY_SECONDS": "0",
        "AUDIT_CLOCK_SKEW_SECONDS": "1",
    }


SETUP = """
import json
from django.utils import timezone
from knox.models import AuthToken
from accounts.models import User
from projects.models import Membership, Project, Role
user = User.objects.create_user(email=EMAIL, password=PASSWORD,
                                email_verified_at=timezone.now())
project = Project.objects.create(name="Fault test", created_by=user)
Membership.objects.create(project=project, user=user, role=Role.OWNER)
_, token = AuthToken.objects.create(user=user)
print(json.dumps({"project": str(project.pk), "token": token}))
"""


def _manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
    )


@pytest.fixture(scope="module")
def stack():
    """Its own PostgreSQL, migrated and seeded, and gunicorn with 3 workers."""
    root = Path(tempfile.mkdtemp(prefix="kreo-pgfault-"))
    root.chmod(0o755)
    cluster = Cluster(root)
    cluster.init()
    env = _env(root, cluster)
    _manage(env, "migrate", "-v", "0")
    setup = SETUP.replace("EMAIL", repr(EMAIL)).replace("PASSWORD", repr(PASSWORD))
    seed = json.loads(
        _manage(env, "shell", "-c", setup).stdout.strip().splitlines()[-1]
    )
    port = _free_port()
    log = (root / "gunicorn.log").open("wb")
    server = subprocess.Popen(  # noqa: S603 - gunicorn, fixed arguments
        [
            str(BIN / "gunicorn"),
            "kreo.wsgi",
            f"--bind={HOST}:{port}",
            "--workers=3",
            "--worker-class=sync",
            "--timeout=30",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=5).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise AssertionError((root / "gunicorn.log").read_text()[-3000:])
            time.sleep(0.2)
        yield {
            "url": url,
            "cluster": cluster,
            "env": env,
            "seed": seed,
            "root": root,
            "master": server.pid,
        }
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(root, ignore_errors=True)


def _sign_in(url: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/accounts/login/", timeout=10)
    token = CSRF_INPUT.search(page.text)
    assert page.status_code == 200 and token, page.text[:500]
    response = session.post(
        f"{url}/accounts/login/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": EMAIL,
            "password": PASSWORD,
        },
        headers={"Referer": f"{url}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def _worker_pids(master: int) -> set[int]:
    """gunicorn's workers: the processes whose parent is its master."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == master:
            pids.add(int(stat.parent.name))
    return pids


def _load(url, kind, path, session, headers, answers, stop):
    while not stop.is_set():
        started, started_at = time.monotonic(), datetime.now(UTC)
        try:
            response = session.get(
                url + path, headers=headers, timeout=30, allow_redirects=False
            )
            status, body = response.status_code, response.text
            cid = response.headers.get("X-Correlation-ID", "")
            retry = response.headers.get("Retry-After", "")
        except requests.RequestException as exc:
            status, body, cid, retry = 0, f"{type(exc).__name__}: {exc}", "", ""
        answers.append(
            Answer(
                kind,
                path,
                started,
                time.monotonic(),
                started_at,
                datetime.now(UTC),
                status,
                cid,
                retry,
                body[:2000],
            )
        )
        time.sleep(0.05)


def test_postgres_outage_answers_503_recovers_and_loses_no_audit_event(stack, capsys):
    """Stop PostgreSQL under load: pages and the API answer 503 with the
    message and Retry-After (never 500, never a bare error page), every kind
    of request answers 200 again within seconds of its return without a
    gunicorn restart, and every request that should leave an audit event
    has it on the trail afterwards (0 lost), the outage's spooled with their
    original time, and audit_verify passes."""
    url, cluster, seed = stack["url"], stack["cluster"], stack["seed"]
    signed_in = _sign_in(url)
    kinds = {
        "sign-in page": ("/accounts/login/", requests.Session(), {}),
        "project page": (f"/projects/{seed['project']}/", signed_in, {}),
        "api": (
            "/api/projects/",
            requests.Session(),
            {"Authorization": f"Token {seed['token']}"},
        ),
    }
    for name, (path, session, headers) in kinds.items():
        first = session.get(url + path, headers=headers, timeout=10)
        assert first.status_code == 200, (name, first.status_code)
    master = stack["master"]
    workers = _worker_pids(master)
    assert len(workers) == 3

    answers: list[Answer] = []
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_load,
            args=(url, name, path, session, headers, answers, stop),
            daemon=True,
        )
        for name, (path, session, headers) in kinds.items()
    ]
    for thread in threads:
        thread.start()
    time.sleep(3)
    stopped = time.monotonic()
    cluster.stop()
    time.sleep(OUTAGE_SECONDS)
    restarting = time.monotonic()  # it may accept before pg_ctl returns
    cluster.start()
    started = time.monotonic()
    recovered: dict[str, float] = {}
    deadline = started + 60
    while len(recovered) < len(kinds) and time.monotonic() < deadline:
        for answer in list(answers):
            if (
                answer.started >= started
                and answer.status == 200
                and answer.kind not in recovered
            ):
                recovered[answer.kind] = answer.ended - started
        time.sleep(0.1)
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(60)

    during = [a for a in answers if a.started > stopped + 0.5 and a.ended < restarting]
    codes: dict[str, dict[int, int]] = {}
    for answer in during:
        per = codes.setdefault(answer.kind, {})
        per[answer.status] = per.get(answer.status, 0) + 1

    # Never a 500, a dropped connection or a bare error page, at any time.
    assert not [
        a for a in answers if a.status == 0 or a.status >= 500 and a.status != 503
    ]
    assert not [a for a in answers if "Internal Server Error" in a.body]
    # The pages and the API that need the database answered 503 with the
    # message and Retry-After for the whole outage.
    for kind in ("project page", "api"):
        seen = [a for a in during if a.kind == kind]
        assert seen, f"no {kind} request during the outage"
        assert {a.status for a in seen} == {503}, (kind, codes)
        assert all(a.retry_after == "30" for a in seen)
        assert all(DATABASE_UNAVAILABLE in a.body for a in seen if kind != "api")
        assert all(
            json.loads(a.body) == {"detail": DATABASE_UNAVAILABLE}
            for a in seen
            if kind == "api"
        )
    # The sign-in page needs no database for a visitor with no session.
    assert {a.status for a in during if a.kind == "sign-in page"} <= {200, 503}

    assert set(recovered) == set(kinds), f"not recovered: {recovered}"
    assert max(recovered.values()) < 10
    assert _worker_pids(master) == workers, "gunicorn restarted a worker"

    # Every request that should leave an audit event left it.
    expected = [a for a in answers if a.status >= 400 or a.path.startswith(AREAS)]
    spool = stack["root"] / "spool"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        p.stat().st_size for p in spool.glob("*.jsonl") if p.name != "rejected.jsonl"
    ):
        requests.get(url + kinds["api"][0], headers=kinds["api"][2], timeout=10)
        time.sleep(0.5)
    rows = cluster.sql(
        "SELECT correlation_id, spooled, occurred_at, status_code "
        "FROM audit_auditevent WHERE correlation_id = ANY(%s)",
        [[a.cid for a in expected]],
    )
    found = {row[0]: row for row in rows}
    lost = [a for a in expected if a.cid not in found]
    assert not lost, f"{len(lost)} audit events lost: {lost[:3]}"
    # Those answered well inside the outage were written late, from the
    # spool, with the time they happened (a 503 at either edge may have been
    # written directly: the database was already back when it closed).
    outage_503 = [a for a in during if a.status == 503 and a.ended < restarting - 0.5]
    assert outage_503
    for answer in outage_503:
        _, spooled, occurred_at, status_code = found[answer.cid]
        assert spooled and status_code == 503, answer
        # Recorded when the response closes, just after the client has it.
        late = (occurred_at - answer.ended_at).total_seconds()
        assert answer.started_at <= occurred_at and late < 2, answer
    spooled_total = cluster.sql("SELECT count(*) FROM audit_auditevent WHERE spooled")[
        0
    ][0]
    assert spooled_total >= len(outage_503)

    _manage(stack["env"], "audit_seal")
    verified = _manage(stack["env"], "audit_verify", "--hot-only", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{spooled_total} written late from the outage spool" in verified.stdout

    summary = (
        f"PostgreSQL stopped {OUTAGE_SECONDS:.0f} s under load: codes during the "
        f"fault {codes}; recovery after restart "
        f"{ {k: round(v, 2) for k, v in recovered.items()} } s; "
        f"{len(answers)} requests, {len(expected)} audit events expected, "
        f"{len(expected) - len(lost)} on the trail, {len(lost)} lost, "
        f"{spooled_total} written late from the spool; audit_verify: "
        f"{verified.stdout.strip().splitlines()[-1]}"
    )
    with capsys.disabled():
        sys.stdout.write(f"\n{summary}\n")
