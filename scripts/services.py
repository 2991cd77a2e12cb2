"""Find or start the real servers the tests and local runs talk to.

PostgreSQL and Redis are used where they already listen; otherwise they are
started, and installed with apt-get first where missing. The S3 server is
moto's standalone server, started on a free loopback port for each run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ROLE = PG_PASSWORD = "kreo"  # noqa: S105 - a local test role, loopback only  # nosec B105
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def log(message: str) -> None:
    sys.stderr.write(f"[services] {message}\n")
    sys.stderr.flush()


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(host: str, port: int, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        time.sleep(0.2)
    raise SystemExit(f"[services] {what} did not start on {host}:{port}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def apt_install(*packages: str) -> None:
    if shutil.which("apt-get") is None:
        raise SystemExit(f"[services] install {' '.join(packages)}: no apt-get here")
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True,
        env=env,
    )


def _psql(sql: str) -> bool:
    """Run ``sql`` as a PostgreSQL superuser, by whichever way this host allows."""
    attempts = [
        ["psql", "-h", PG_HOST, "-U", "postgres", "-d", "postgres"],
        ["runuser", "-u", "postgres", "--", "psql", "-d", "postgres"],
    ]
    for cmd in attempts:
        if shutil.which(cmd[0]) is None:
            continue
        done = subprocess.run(
            [*cmd, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            capture_output=True,
            text=True,
            env={**os.environ, "PGCONNECT_TIMEOUT": "3"},
        )
        if done.returncode == 0:
            return True
    return False


def ensure_postgres() -> str:
    """Return a DATABASE_URL for a role that may create test databases."""
    if not listening(PG_HOST, PG_PORT):
        if shutil.which("pg_ctlcluster") is None:
            apt_install("postgresql")
        versions = (
            sorted(os.listdir("/etc/postgresql"))
            if Path("/etc/postgresql").exists()
            else []
        )
        if not versions:
            raise SystemExit("[services] PostgreSQL is installed but has no cluster")
        log(f"starting PostgreSQL {versions[-1]}")
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                versions[-1],
                "main",
                "start",
            ],
            check=False,
        )
        wait_for(PG_HOST, PG_PORT, 30, "PostgreSQL")
    # Constants only: nothing from outside reaches this SQL.
    exists = _psql(
        "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='kreo') THEN "  # nosec B608
        f"CREATE ROLE {PG_ROLE} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'; END IF; END$$;"
    )
    if not exists:
        log("could not reach PostgreSQL as a superuser; assuming role kreo exists")
    # Fails harmlessly when the database is already there.
    _psql(f"CREATE DATABASE {PG_ROLE} OWNER {PG_ROLE}")
    ensure_pg_tools()
    return f"postgres://{PG_ROLE}:{PG_PASSWORD}@{PG_HOST}:{PG_PORT}/{PG_ROLE}"


def _major(text: str) -> str:
    digits = "".join(ch if ch.isdigit() or ch == "." else " " for ch in text).split()
    return digits[0].split(".")[0] if digits else ""


def ensure_pg_tools() -> None:
    """pg_dump and pg_restore of the server's major version (backups need them)."""
    server = ""
    if shutil.which("psql"):
        done = subprocess.run(
            [
                "psql",
                "-h",
                PG_HOST,
                "-U",
                PG_ROLE,
                "-d",
                PG_ROLE,
                "-qAtc",
                "SHOW server_version",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": PG_PASSWORD, "PGCONNECT_TIMEOUT": "3"},
        )
        server = _major(done.stdout) if done.returncode == 0 else ""
    client = ""
    if shutil.which("pg_dump") and shutil.which("pg_restore"):
        done = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True)
        client = _major(done.stdout)
    if client and (not server or client == server):
        return
    package = f"postgresql-client-{server}" if server else "postgresql-client"
    apt_install(package)


def ensure_redis() -> str:
    if not listening(REDIS_HOST, REDIS_PORT):
        if shutil.which("redis-server") is None:
            apt_install("redis-server")
        log("starting Redis")
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                REDIS_HOST,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
        wait_for(REDIS_HOST, REDIS_PORT, 15, "Redis")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"


CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's chromium for the Playwright tests (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        apt_install("chromium")
    return CHROMIUM


NGINX = "/usr/sbin/nginx"


def ensure_nginx() -> str:
    """Debian's nginx, for the test that runs deploy/nginx in front of
    gunicorn (kreo/tests/test_slow_clients.py). Not started here: the test
    starts its own. Where it cannot be installed the test skips, saying so."""
    if not Path(NGINX).exists() and shutil.which("nginx") is None:
        try:
            apt_install("nginx-light")
        except (SystemExit, subprocess.CalledProcessError) as exc:
            log(f"nginx not installed ({exc}): the nginx tests will skip")
            return ""
    return shutil.which("nginx") or NGINX


def start_moto() -> tuple[subprocess.Popen, str]:
    """Start moto's S3 server on a free port; return the process and its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for("127.0.0.1", port, 30, "moto S3 server")
    return process, f"http://127.0.0.1:{port}"
