"""Shared by the benchmarks: a seeded database, real gunicorn servers on the
loopback, a signed-in HTTP session on each, and timing statistics.

Every server runs the embedded default (SQLite, local files) on one database
in a temporary folder; settings modules under bench/ choose its middleware.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
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


def across_processes(
    var_dir: Path,
    seed: dict,
    stacks: dict[str, tuple[str, dict[str, str]]],
    processes: int,
    requests: int,
) -> dict[str, dict[str, list[float]]]:
    """Per case and stack, the median latency of each of ``processes`` fresh
    servers: in each round one server per stack, started in a rotated order
    after an unmeasured decoy, signed in, and timed turn about with
    ``interleaved``. List index i is round i for every stack, for
    ``paired_ratio_row``.

    Why many servers and not many requests to one: a process's speed
    depends on where its memory landed (address-space randomisation, its
    hash seed) and that stays with it for its life. Two identical servers
    differ by up to 5%, more than a 3% budget, while cachegrind counts the
    same instructions and simulated cache misses per request for both to
    within 0.5%. Requests to one server only sample its one layout; each
    round draws new ones, each server with its own random hash seed (as in
    Mytkowicz et al., "Producing wrong data without doing anything obviously
    wrong!", ASPLOS 2009).
    """
    medians: dict[str, dict[str, list[float]]] = {}
    names = list(stacks)
    decoy_module, decoy_env = stacks[names[0]]
    for number in range(processes):
        shift = number % len(names)
        running: dict[str, Server] = {}
        # The first server a round starts answered slower than the rest in
        # an A/A run: a decoy takes that place and is not measured.
        decoy = start_server(
            f"decoy-{number}", var_dir, decoy_module, **_layout(), **decoy_env
        )
        try:
            for name in names[shift:] + names[:shift]:
                settings_module, env = stacks[name]
                running[name] = start_server(
                    f"{name}-{number}", var_dir, settings_module, **_layout(), **env
                )
            for server in running.values():
                login(server, seed)
            measured = interleaved(running, cases(seed), requests)
        finally:
            for server in [decoy, *running.values()]:
                server.stop()
        for case, by_stack in measured.items():
            for name, values in by_stack.items():
                medians.setdefault(case, {}).setdefault(name, []).append(
                    statistics.median(values)
                )
    return medians


def _layout() -> dict[str, str]:
    """A random hash seed for one server (its addresses are randomised by
    the kernel already)."""
    return {"PYTHONHASHSEED": str(secrets.randbelow(2**32))}


def paired_ratio_row(
    case: str,
    medians: dict[str, list[float]],
    test: str,
    base: str,
    budget: float,
) -> dict:
    """One table row from ``across_processes``: the geometric mean over
    rounds of ``test``'s median over ``base``'s in the same round, with a 95%
    bootstrap interval over the rounds (a fixed generator, so a run's figures
    can be recomputed from its JSON).

    Ratios are taken within a round because the machine drifts between
    rounds (every server of one round 15% slower than the last), while the
    servers of one round, timed turn about, share its state.
    """
    a, b = medians[test], medians[base]
    logs = [math.log(x / y) for x, y in zip(a, b, strict=True)]
    ratio = math.exp(statistics.fmean(logs))
    draw = random.Random(f"{case}/{test}/{base}")  # noqa: S311  # nosec B311 - resampling for statistics, not a secret
    means = sorted(
        statistics.fmean(draw.choices(logs, k=len(logs))) for _ in range(BOOTSTRAP)
    )
    low = math.exp(means[math.floor(0.025 * BOOTSTRAP)])
    high = math.exp(means[math.ceil(0.975 * BOOTSTRAP) - 1])
    return {
        "case": case,
        "rounds": len(logs),
        f"{test}_median_ms": ms(statistics.median(a)),
        f"{base}_median_ms": ms(statistics.median(b)),
        f"{test}/{base}": round(ratio, 3),
        "95% interval": f"{low:.3f}-{high:.3f}",
        "round sd": round(statistics.stdev(logs), 3) if len(logs) > 1 else 0.0,
        "budget": f"<= {budget:.2f}",
        "verdict": "PASS" if ratio <= budget else "OVER",
    }


BOOTSTRAP = 2000


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
