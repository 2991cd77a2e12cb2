"""Helpers shared by the whole-process fault tests (kreo/tests/test_faults_*.py,
projects/tests/test_faults_s3.py): a Redis of the test's own, production
settings for a gunicorn run against the test database, the gunicorn itself
(``serving``), an HTTP client behind a pretend TLS proxy, and the load the
tests keep up through a fault (``Load``, ``recovered_at``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - test helpers start local servers
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import requests
from django.db import connection

from scripts import services

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "app.kreo.example"
LOGIN = "/accounts/login/"


class OwnRedis:
    """A redis-server of this test's own, killed and restarted on one port."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, services.free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 # nosec B603 - fixed command
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        services.wait_for("127.0.0.1", self.port, 15, "the test's Redis")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def freeze(self) -> None:
        """Hang Redis: connections are accepted, nothing is answered."""
        if self.process is None:
            raise RuntimeError("the test's Redis was never started")
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is None:
            raise RuntimeError("the test's Redis was never started")
        self.process.send_signal(signal.SIGCONT)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def production_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """`.ci/production.env` over this environment, on the test database."""
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".ci" / "production.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    db = connection.settings_dict
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "KREO_"))
    }
    return {
        **clean,
        **values,
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}"
            f":{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": redis_url,
        "AWS_STORAGE_BUCKET_NAME": os.environ.get("AWS_STORAGE_BUCKET_NAME", "x"),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "DJANGO_TRUSTED_PROXY_COUNT": "1",  # the test plays the TLS proxy
        "KREO_VAR_DIR": str(tmp_path / "var"),
        "KREO_KEY_LEDGER_DIR": str(tmp_path / "ledger"),
        "KREO_CACHE_PREFIX": "fault",
        # Every attempt reaches the cache-backed checks, none is rate limited.
        "KREO_RATE_LOGIN_IP": "100000/15m",
        "KREO_RATE_LOGIN_ACCOUNT": "100000/15m",
        "KREO_CAPTCHA_AFTER_ACCOUNT": "100000",
        "KREO_CAPTCHA_AFTER_IP": "100000",
    }


class Client:
    """HTTP through a pretend TLS proxy, keeping its own (Secure) cookies."""

    def __init__(self, url: str):
        self.url, self.cookies = url, {}
        self.headers = {
            "Host": HOST,
            "X-Forwarded-Proto": "https",
            "Origin": f"https://{HOST}",
            "Referer": f"https://{HOST}{LOGIN}",
            "Connection": "close",
        }

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {**self.headers, "Cookie": cookie, **kwargs.pop("headers", {})}
        response = requests.request(
            method,
            self.url + path,
            headers=headers,
            timeout=kwargs.pop("timeout", 30),
            allow_redirects=False,
            **kwargs,
        )
        for header in response.raw.headers.getlist("Set-Cookie"):
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def sign_in(self, email: str, password: str) -> requests.Response:
        if "__Host-csrftoken" not in self.cookies:
            self.get(LOGIN)
        return self.request(
            "POST",
            LOGIN,
            data={
                "username": email,
                "password": password,
                "csrfmiddlewaretoken": self.cookies["__Host-csrftoken"],
            },
        )


@contextmanager
def serving(
    command: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    *,
    probe: Callable[[str], requests.Response] | None = None,
    wait: float = 120,
):
    """Run ``command`` (a gunicorn) until ``/healthz`` answers 200 (asked
    through ``Client``, or ``probe(url)``): yields ``(url, process)``, then
    stops it (SIGTERM, SIGKILL after 20 s)."""
    probe = probe or (lambda url: Client(url).get("/healthz"))
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603  # nosec B603 - the deployed command
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if process.poll() is not None:
                raise AssertionError(log.read_text(errors="replace"))
            try:
                if probe(url).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or slow
                pass
            if time.monotonic() > deadline:
                raise AssertionError(log.read_text(errors="replace"))
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Load:
    """Threads sending requests until ``stop`` is set, every answer recorded
    (kind, start, seconds, status, Retry-After, whether the body carries
    ``message``, and what ``_extra`` adds). Subclasses say what to send
    (``_one``) and which threads run (``start``)."""

    def __init__(self, message: str):
        self.message = message
        self.results: list[dict] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _one(self, kind: str, n: int, visitor: Client) -> requests.Response:
        raise NotImplementedError

    def _extra(self, kind: str, response: requests.Response | None) -> dict:
        return {}

    def _run(self, kinds: Callable[[int], str], visitor: Client) -> None:
        n = 0
        while not self.stop.is_set():
            kind = kinds(n)
            started = time.monotonic()
            try:
                response = self._one(kind, n, visitor)
                status, body = response.status_code, response.text
                retry_after = response.headers.get("Retry-After")
            except requests.RequestException as exc:
                response, status, body, retry_after = None, 0, repr(exc), None
            with self.lock:
                self.results.append(
                    {
                        "kind": kind,
                        "started": started,
                        "seconds": time.monotonic() - started,
                        "status": status,
                        "message": self.message in body,
                        "retry_after": retry_after,
                        **self._extra(kind, response),
                    }
                )
            n += 1
            time.sleep(0.05)

    def thread(self, kinds: Callable[[int], str], visitor: Client) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(kinds, visitor))
        thread.start()
        return thread


def recovered_at(
    results: list[dict], since: float, good: dict[str, int]
) -> float | None:
    """When the service answered again: the first start after ``since`` from
    which every request of a kind in ``good`` got its good status."""
    recovered = None
    for r in sorted(results, key=lambda r: r["started"]):
        if r["started"] < since or r["kind"] not in good:
            continue
        if r["status"] == good[r["kind"]]:
            recovered = recovered or r["started"]
        else:
            recovered = None
    return recovered
