"""Shared by the benchmarks: a seeded database, real gunicorn servers on the
loopback, a signed-in HTTP session on each, and timing statistics.

Every server runs the embedded default (SQLite, local files) on one database
in a temporary folder; settings modules under bench/ choose its middleware.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# The CPUs this run may use, as it started (latency benches pin to them).
CPUS = sorted(os.sched_getaffinity(0))
EMAIL = "bench@example.test"
# The servers' environment is the embedded default's: nothing from the
# developer's shell may move them onto other servers.
SCRUB_PREFIXES = ("DJANGO_", "KREO_", "AWS_", "EMAIL_", "OIDC_", "BENCH_")
SCRUB_NAMES = {"DATABASE_URL", "REDIS_URL", "BACKUP_S3_BUCKET"}
# Benchmarks time pages, not refusals: the request limits count every
# request (their cost stays in each figure) but refuse none. bench_limits
# sets the same rates and switches the limits off on its other server.
HIGH_RATES = {
    "KREO_RATE_PAGE": "100000000/minute",
    "KREO_RATE_API_ANON": "100000000/minute",
    "KREO_RATE_DOWNLOAD": "100000000/hour",
    "KREO_RATE_DOWNLOAD_BYTES": f"{2**62}/hour",
    "KREO_RATE_UPLOAD": "100000000/hour",
    # One address signs in once per server started (bench middleware starts
    # one per middleware left out).
    "KREO_RATE_LOGIN_IP": "100000/15m",
    "KREO_RATE_LOGIN_ACCOUNT": "100000/15m",
}
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class BenchError(RuntimeError):
    pass


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    session: requests.Session = field(default_factory=requests.Session)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        self.session.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def environment(var_dir: Path, settings_module: str, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(SCRUB_PREFIXES) and name not in SCRUB_NAMES
    }
    env.update(HIGH_RATES)
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        KREO_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
        **extra,
    )
    return env


def run_command(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own fixed commands
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def seed_site(var_dir: Path) -> dict:
    """Migrate and seed the database in ``var_dir``; return what was made.

    The result holds the project names, the download path, the file size and
    the account's email and (random) password.
    """
    env = environment(var_dir, "bench.settings_full")
    run_command([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
    password = secrets.token_urlsafe(18)
    made = run_command(
        [sys.executable, "-m", "bench.seed_stack"],
        {**env, "BENCH_EMAIL": EMAIL, "BENCH_PASSWORD": password},
    )
    return {**json.loads(made), "email": EMAIL, "password": password}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    name: str,
    var_dir: Path,
    settings_module: str,
    config: Path | None = None,
    **extra_env: str,
) -> Server:
    """A gunicorn server answering /healthz on the loopback.

    One sync worker; or, with ``config`` (deploy/gunicorn/gunicorn.conf.py),
    the process layout production runs, bound through KREO_HOST/KREO_PORT.
    """
    port = _free_port()
    log = var_dir / f"gunicorn-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
    command = [
        str(BIN / "gunicorn"),
        "kreo.wsgi",
        f"--bind={HOST}:{port}",
        "--workers=1",
        "--log-level=warning",
    ]
    pin = None
    if config is not None:
        command = [str(BIN / "gunicorn"), "-c", str(config)]
        extra_env = {**extra_env, "KREO_HOST": HOST, "KREO_PORT": str(port)}
    elif len(CPUS) > 1:
        # A latency bench's servers share one CPU, the client has the rest:
        # where the scheduler happened to put each process otherwise moved
        # identical servers 3-5% apart, more than the budgets measured.
        cpu = CPUS[-1]
        pin = functools.partial(os.sched_setaffinity, 0, {cpu})
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - gunicorn, fixed arguments
            command,
            cwd=ROOT,
            env=environment(var_dir, settings_module, **extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,  # noqa: PLW1509 - one system call, no threads here
        )
    server = Server(name, f"http://{HOST}:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} server exited:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=5).ok:
                return server
        except requests.RequestException:
            pass  # not listening yet, or still loading on a busy machine
        time.sleep(0.2)
    server.stop()
    raise BenchError(f"{name} server did not answer /healthz:\n{server.log_tail()}")


def login(server: Server, seed: dict) -> None:
    """Sign in through the real login form, CSRF token included."""
    page = server.session.get(f"{server.url}/accounts/login/", timeout=10)
    token = CSRF_INPUT.search(page.text)
    if page.status_code != 200 or token is None:
        raise BenchError(f"{server.name}: no login form ({page.status_code})")
    response = server.session.post(
        f"{server.url}/accounts/login/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": seed["email"],
            "password": seed["password"],
        },
        headers={"Referer": f"{server.url}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    location = response.headers.get("Location", "")
    if response.status_code != 302 or "/accounts/" in location:
        raise BenchError(
            f"{server.name}: login refused ({response.status_code} {location}): "
            f"{response.text[:500]}"
        )


def timed_get(
    server: Server, path: str, check: Callable[[requests.Response], None]
) -> float:
    """Seconds for one GET, body read in full; the response must be right."""
    started = time.perf_counter()
    response = server.session.get(f"{server.url}{path}", timeout=30)
    body = response.content
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(
            f"{server.name} GET {path}: {response.status_code} {body[:300]!r}"
        )
    check(response)
    return elapsed


def cases(seed: dict) -> dict[str, tuple[str, Callable]]:
    """The measured requests: case name -> (path, check of the response)."""

    def project_list(response: requests.Response) -> None:
        missing = [name for name in seed["projects"] if name not in response.text]
        if missing:
            raise BenchError(f"project list lacks {len(missing)} projects")

    def download(response: requests.Response) -> None:
        if len(response.content) != seed["file_bytes"]:
            raise BenchError(f"download of {len(response.content)} bytes")

    return {
        f"project list ({len(seed['projects'])} projects)": (
            "/projects/",
            project_list,
        ),
        f"file download ({seed['file_bytes'] // 1024} KiB)": (
            seed["download"],
            download,
        ),
    }


def interleaved(
    servers: dict[str, Server],
    measured: dict[str, tuple[str, Callable]],
    rounds: int,
) -> dict[str, dict[str, list[float]]]:
    """Timings per case and server, requests alternating between the servers.

    Each round sends every case to every server; the server order rotates
    each round so no server always goes first. A tenth as many warm-up rounds
    (at least 5) go unrecorded.
    """
    timings = {case: {name: [] for name in servers} for case in measured}
    names = list(servers)
    with client_cpus():
        for number in range(-max(5, rounds // 10), rounds):
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            for case, (path, check) in measured.items():
                for name in order:
                    elapsed = timed_get(servers[name], path, check)
                    if number >= 0:
                        timings[case][name].append(elapsed)
    return timings


@contextlib.contextmanager
def client_cpus():
    """Keep the measuring client off the CPU the servers are pinned to."""
    if len(CPUS) < 2:
        yield
        return
    os.sched_setaffinity(0, set(CPUS[:-1]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(CPUS))


def median_p90(values: list[float]) -> tuple[float, float]:
    return (
        statistics.median(values),
        statistics.quantiles(values, n=10, method="inclusive")[8],
    )


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def ratio_row(
    case: str, timings: dict[str, list[float]], test: str, base: str, budget: float
) -> dict:
    """One table row: median and p90 of ``test`` against ``base``, and the verdict."""
    a, b = median_p90(timings[test]), median_p90(timings[base])
    ratio = a[0] / b[0]
    return {
        "case": case,
        "requests": len(timings[test]),
        f"{test}_median_ms": ms(a[0]),
        f"{test}_p90_ms": ms(a[1]),
        f"{base}_median_ms": ms(b[0]),
        f"{base}_p90_ms": ms(b[1]),
        f"{test}/{base}": round(ratio, 3),
        "budget": f"<= {budget:.2f}",
        "verdict": "PASS" if ratio <= budget else "OVER",
    }


def run_child(module: str, role: str, env: dict, *args: str) -> dict:
    """Run ``python -m module role args`` and return the JSON of its last line.

    Benchmarks run their measured work in a child so that its peak RSS is its
    own; ``wall_s`` is added here.
    """
    started = time.perf_counter()
    proc = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", module, role, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{role} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result
