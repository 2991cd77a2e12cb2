"""Helpers shared by the whole-process fault tests (kreo/tests/test_faults_*.py,
projects/tests/test_faults_s3.py): a Redis of the test's own, production
settings for a gunicorn run against the test database, and an HTTP client
behind a pretend TLS proxy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - test helpers start local servers
import sys
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
