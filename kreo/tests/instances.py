"""Several instances on one machine: two web pods, two workers and one beat.

The harness of kreo/tests/test_instances.py (issue #15, "Several instances
on one machine"). Every process is a real one, started with the command that
production and ``make run`` use:

- web A and web B: ``make run``'s gunicorn (``scripts.run.web_command``,
  deploy/gunicorn/gunicorn.conf.py, one gthread worker each here), on ports
  of their own;
- worker 1 and worker 2: ``celery -A kreo worker`` (prefork, concurrency 1
  as the backups Deployment has it), each consuming the default queue and
  the ``backups`` queue, so either can take any task the other dropped, and
  a queue of its own (``own_queue``) through which a test hands the same
  task to both at once;
- beat: ``celery -A kreo beat`` with the DatabaseScheduler.

They share only what pods share: the test database on the one PostgreSQL,
Redis (broker, cache, rate limits and lockout counters), the S3 server
(files, the audit archive and its anchors, backup copy 3, the erasure
ledger) and the secrets, passed as environment as the sealed secrets pass
them (without ``DJANGO_SECRET_KEY`` and the keyring in the environment each
pod would make its own under its ``KREO_VAR_DIR``). Each process has its own
``KREO_INSTANCE_ID`` (written into every audit event it records) and its own
``KREO_VAR_DIR``, standing in for a pod's disk. The two local backup copies
are the backups worker's two volumes: both workers mount them, as the one
backups pod that replaces a dead one mounts the same claims.

Which process answered: each web request carries ``req=<n>`` in its User-Agent
and the harness reads the instance's access log; each task's worker is read
from the workers' logs (``Task <name>[<id>] received``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess  # nosec B404 - the harness starts the app's own processes
import sys
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

import requests
from django.conf import settings

from kreo.testing.worker import _settings_env
from scripts import run as make_run
from scripts import services

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Short task timings for the harness's workers (production: 30 s heartbeat,
# 180 s stale window, 12 h visibility, a look for expired messages every
# 100 s): a killed task is seen dead within
# seconds and its unacknowledged message comes back to the other worker.
HEARTBEAT = 1
STALE = 4
VISIBILITY = 8
RESTORE = 2


def secrets_env() -> dict[str, str]:
    """The secrets every pod gets from the same sealed secret (here: this
    process's), so a session signed by one is read by the other."""
    return {
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "KREO_ALTCHA_HMAC_KEY": settings.KREO_ALTCHA_HMAC_KEY,
        "KREO_KEYRING": settings.KREO_KEYRING,
        "KREO_ACTIVE_KEY_ID": settings.KREO_ACTIVE_KEY_ID,
        "AUDIT_SIGNING_KEY": settings.AUDIT_SIGNING_KEY,
        "AUDIT_ARCHIVE_KEY": settings.AUDIT_ARCHIVE_KEY,
        "AUDIT_EVENT_KEY": settings.AUDIT_EVENT_KEY,
    }


def shared_env(prefix: str) -> dict[str, str]:
    """What every process of the harness shares: this run's servers, the test
    database, buckets and secrets (this process's settings)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KREO_VAR_DIR", "KREO_INSTANCE_ID", "PROMETHEUS_MULTIPROC_DIR")
    }
    return {
        **clean,
        **_settings_env(),
        **secrets_env(),
        "KREO_KEY_LEDGER_S3_BUCKET": settings.KREO_KEY_LEDGER_S3_BUCKET,
        "KREO_KEY_LEDGER_S3_PREFIX": settings.KREO_KEY_LEDGER_S3_PREFIX,
        "KREO_KEY_LEDGER_S3_ENDPOINT_URL": settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL,
        "KREO_CACHE_PREFIX": prefix,
        "KREO_TASK_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "KREO_TASK_STALE_SECONDS": str(STALE),
        "KREO_TASK_VISIBILITY_SECONDS": str(VISIBILITY),
        "KREO_TASK_RESTORE_SECONDS": str(RESTORE),
        # Every sign-in reaches the password check (no CAPTCHA, no IP limit):
        # the lockout is what the tests look at.
        "KREO_CAPTCHA_AFTER_ACCOUNT": "1000",
        "KREO_CAPTCHA_AFTER_IP": "1000",
        "KREO_RATE_LOGIN_IP": "100000/15m",
        "KREO_RATE_PAGE": "100000/h",
    }


@dataclass
class Process:
    """One pod's process: its name, command, scratch disk and log."""

    name: str
    command: list[str]
    disk: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    url: str = ""

    @property
    def log(self) -> Path:
        return self.disk / "out.log"

    def start(self) -> None:
        self.disk.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # nosec B603 - our command
                self.command,
                cwd=ROOT,
                env={
                    **self.env,
                    "KREO_INSTANCE_ID": self.name,
                    "KREO_VAR_DIR": str(self.disk / "var"),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL to the whole process group, as a node or the OOM killer
        ends a pod: no task is acknowledged, no lock released by the app."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(20)

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def own_queue(name: str) -> str:
    """A queue only worker ``name`` consumes (besides the production ones), so
    a test can hand the same task to both workers at the same moment."""
    return f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{name}"


def _worker_command(name: str) -> list[str]:
    queues = ",".join([*(q.name for q in settings.CELERY_TASK_QUEUES), own_queue(name)])
    return [
        str(BIN / "celery"),
        "-A",
        "kreo",
        "worker",
        "--loglevel=INFO",
        f"--queues={queues}",
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{name}@%h",
    ]


def _beat_command() -> list[str]:
    return [
        str(BIN / "celery"),
        "-A",
        "kreo",
        "beat",
        "--loglevel=INFO",
        "--scheduler",
        "django_celery_beat.schedulers:DatabaseScheduler",
    ]


@dataclass
class Instances:
    """web-a, web-b, worker-1, worker-2 and beat under ``root``."""

    root: Path
    prefix: str
    processes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = shared_env(self.prefix)
        for name in ("web-a", "web-b"):
            port = services.free_port()
            web = Process(
                name,
                make_run.web_command("127.0.0.1", str(port)),
                self.root / name,
                {**env, "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "16"},
            )
            web.url = f"http://127.0.0.1:{port}"
            self.processes[name] = web
        for name in ("worker-1", "worker-2"):
            self.processes[name] = Process(
                name, _worker_command(name), self.root / name, env
            )
        self.processes["beat"] = Process(
            "beat", _beat_command(), self.root / "beat", env
        )

    def __getitem__(self, name: str) -> Process:
        return self.processes[name]

    @property
    def workers(self) -> list[Process]:
        return [self["worker-1"], self["worker-2"]]

    def start(self, wait: float = 180) -> float:
        """Start everything; return the seconds until all were ready."""
        started = time.monotonic()
        for process in self.processes.values():
            process.start()
        deadline = started + wait
        for name, process in self.processes.items():
            while not self.ready(name):
                if not process.alive():
                    raise AssertionError(f"{name} exited:\n{process.output()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready:\n{process.output()}")
                time.sleep(0.2)
        return time.monotonic() - started

    def ready(self, name: str) -> bool:
        process = self[name]
        if name.startswith("web"):
            try:
                return requests.get(f"{process.url}/healthz", timeout=5).ok
            except requests.RequestException:
                return False
        marker = " ready." if name.startswith("worker") else "beat: Starting..."
        return marker in process.output()

    def restart(self, name: str, wait: float = 120) -> None:
        """Start ``name`` again after a kill, as the Deployment would."""
        process = self[name]
        process.start()
        mark = len(process.output())
        deadline = time.monotonic() + wait
        while " ready." not in process.output()[mark:] and not self.ready(name):
            assert process.alive(), process.output()
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.2)

    def stop(self) -> float:
        """SIGTERM to all at once, then wait (SIGKILL after 30 s); the seconds."""
        started = time.monotonic()
        for process in self.processes.values():
            if process.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop()
        return time.monotonic() - started

    # Which worker ran a task -------------------------------------------------

    def task_events(self, task_id: str) -> list[tuple[str, str, str]]:
        """(worker, what, rest of the line) for every log line naming the task:
        ``received``, ``succeeded``, ``raised``..., in the workers' order."""
        found = []
        pattern = re.compile(rf"\[{re.escape(task_id)}\] (\w+)(.*)")
        for worker in self.workers:
            for line in worker.output().splitlines():
                match = pattern.search(line)
                if match:
                    found.append((worker.name, match.group(1), match.group(2)))
        return found

    def finished(self, task_id: str) -> tuple[str, str, str] | None:
        for event in self.task_events(task_id):
            if event[1] in ("succeeded", "raised", "failed"):
                return event
        return None

    def wait_finished(self, task_ids: list[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            done = {t: self.finished(t) for t in task_ids}
            if all(done.values()):
                return done
            for worker in self.workers:
                assert worker.alive(), worker.output()
            assert time.monotonic() < deadline, (done, self.logs_tail())
            time.sleep(0.2)

    def logs_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name}\n" + "\n".join(p.output().splitlines()[-lines:])
            for name, p in self.processes.items()
        )


class Browser:
    """HTTP to one instance as a browser would (cookies kept, one new
    connection a request); every answer names the gunicorn pid that gave it
    (``req=<n>`` looked up in the instance's access log)."""

    sent = 0

    def __init__(self, instance: Process, cookies: dict[str, str] | None = None):
        self.instance = instance
        self.cookies: dict[str, str] = dict(cookies or {})

    def on(self, other: Process) -> Browser:
        """The same browser (same cookies) sent to another instance, as a
        load balancer would."""
        return Browser(other, self.cookies)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        Browser.sent += 1
        tag = f"req={Browser.sent}"
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        # The tag rides in the User-Agent, which the access log prints (a query
        # parameter would change what the admin's lists answer).
        headers = {
            "Connection": "close",
            "Cookie": cookie,
            "User-Agent": f"kreo-instances {tag}",
        }
        headers.update(kwargs.pop("headers", {}))
        response = requests.request(
            method,
            f"{self.instance.url}{path}",
            headers=headers,
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )
        for header in response.raw.headers.getlist("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        response.answered_by = f"{self.instance.name} pid {self._pid(tag)}"
        return response

    def _pid(self, tag: str) -> str:
        pattern = re.compile(re.escape(f" {tag}") + r'" pid=<?(\d+)')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = pattern.search(self.instance.output())
            if found:
                return found.group(1)
            time.sleep(0.05)
        return "?"

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        if "csrftoken" not in self.cookies:
            self.get("/accounts/login/")
        data = {**(data or {}), "csrfmiddlewaretoken": self.cookies["csrftoken"]}
        return self.request("POST", path, data=data, **kwargs)

    def sign_in(self, email: str, password: str) -> requests.Response:
        return self.post("/accounts/login/", {"username": email, "password": password})


def say(*parts) -> None:
    """A line of the module's output (``-s``), for the closing note."""
    sys.stdout.write("[instances] " + " ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()
