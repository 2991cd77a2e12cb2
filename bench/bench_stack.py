"""What the middleware stack costs: the same pages through the full stack and
through a bare one, over real HTTP against two real gunicorn servers.

Budget (DESIGN.md): the security stack adds at most 10% to the median latency
of a typical page. Each row reports full/bare medians and PASS or OVER.

Both servers run the embedded default (SQLite, local files) on one database
in a temporary folder, seeded through the project's own services: one user
with 20 projects and a 1 MB file. Each server has one sync worker. Requests
alternate between the stacks in rounds (the order flips every round) so that
noise from other processes on the machine hits both alike.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

TITLE = "full middleware stack vs bare stack (median latency, loopback HTTP)"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUDGET = 1.10
HOST = "127.0.0.1"
STACKS = {"full": "bench.settings_full", "bare": "bench.settings_bare"}
# The environment of the servers is the embedded default's: nothing from the
# developer's shell may move them onto other servers.
SCRUB_PREFIXES = ("DJANGO_", "KREO_", "AWS_", "EMAIL_", "OIDC_")
SCRUB_NAMES = {"DATABASE_URL", "REDIS_URL", "BACKUP_S3_BUCKET"}
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


def _environment(var_dir: Path, settings_module: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(SCRUB_PREFIXES) and name not in SCRUB_NAMES
    }
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        KREO_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own fixed commands
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _start(name: str, var_dir: Path) -> Server:
    port = _free_port()
    log = var_dir / f"gunicorn-{name}.log"
    command = [
        str(BIN / "gunicorn"),
        "kreo.wsgi",
        f"--bind={HOST}:{port}",
        "--workers=1",
        "--log-level=warning",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - gunicorn, fixed arguments
            command,
            cwd=ROOT,
            env=_environment(var_dir, STACKS[name]),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, f"http://{HOST}:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} server exited:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{name} server did not answer /healthz:\n{server.log_tail()}")


def _login(server: Server, email: str, password: str) -> None:
    """Sign in through the real login form, CSRF token included."""
    page = server.session.get(f"{server.url}/accounts/login/", timeout=10)
    token = CSRF_INPUT.search(page.text)
    if page.status_code != 200 or token is None:
        raise BenchError(f"{server.name}: no login form ({page.status_code})")
    response = server.session.post(
        f"{server.url}/accounts/login/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": email,
            "password": password,
        },
        headers={"Referer": f"{server.url}/accounts/login/"},
        allow_redirects=False,
        timeout=10,
    )
    if response.status_code != 302 or "/accounts/login/" in response.headers.get(
        "Location", ""
    ):
        raise BenchError(
            f"{server.name}: login refused ({response.status_code}): "
            f"{response.text[:500]}"
        )


def _get(server: Server, path: str, check: Callable[[requests.Response], None]):
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


def _cases(seed: dict) -> dict[str, tuple[str, Callable]]:
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


def _check_stacks_differ(servers: dict[str, Server]) -> None:
    """The comparison is only meaningful if the stacks really differ."""
    headers = {
        name: requests.get(f"{server.url}/healthz", timeout=5).headers
        for name, server in servers.items()
    }
    if "X-Frame-Options" not in headers["full"]:
        raise BenchError("the full stack sends no X-Frame-Options: not the full stack")
    if "X-Frame-Options" in headers["bare"]:
        raise BenchError("the bare stack sends X-Frame-Options: not the bare stack")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _row(case: str, timings: dict[str, list[float]]) -> dict:
    stats = {}
    for name, values in timings.items():
        stats[name] = (
            statistics.median(values),
            statistics.quantiles(values, n=10, method="inclusive")[8],
        )
    ratio = stats["full"][0] / stats["bare"][0]
    return {
        "case": case,
        "requests": len(timings["full"]),
        "full_median_ms": _ms(stats["full"][0]),
        "full_p90_ms": _ms(stats["full"][1]),
        "bare_median_ms": _ms(stats["bare"][0]),
        "bare_p90_ms": _ms(stats["bare"][1]),
        "full/bare": round(ratio, 3),
        "budget": f"<= {BUDGET:.2f}",
        "verdict": "PASS" if ratio <= BUDGET else "OVER",
    }


def run(options) -> list[dict]:
    count = options.requests
    with tempfile.TemporaryDirectory(prefix="kreo-bench-") as folder:
        var_dir = Path(folder)
        env = _environment(var_dir, STACKS["full"])
        _run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env)
        email = "bench@example.test"
        password = secrets.token_urlsafe(18)
        seed = json.loads(
            _run(
                [sys.executable, "-m", "bench.seed_stack"],
                {**env, "BENCH_EMAIL": email, "BENCH_PASSWORD": password},
            )
        )
        servers: dict[str, Server] = {}
        try:
            for name in STACKS:
                servers[name] = _start(name, var_dir)
            _check_stacks_differ(servers)
            for server in servers.values():
                _login(server, email, password)
            cases = _cases(seed)
            timings = {case: {name: [] for name in STACKS} for case in cases}
            warmup = max(5, count // 10)
            for round_number in range(-warmup, count):
                order = list(STACKS) if round_number % 2 == 0 else list(STACKS)[::-1]
                for case, (path, check) in cases.items():
                    for name in order:
                        elapsed = _get(servers[name], path, check)
                        if round_number >= 0:
                            timings[case][name].append(elapsed)
        finally:
            for server in servers.values():
                server.session.close()
                server.process.terminate()
            for server in servers.values():
                try:
                    server.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()
    return [_row(case, timings[case]) for case in timings]
