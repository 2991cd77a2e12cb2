"""Slow clients: gunicorn's sync workers against threaded (gthread) workers.

Each configuration is a real gunicorn on the loopback, started with
deploy/gunicorn/gunicorn.conf.py and the worker options of its row, on the
embedded default. Two measurements per row:

- under attack: 3 and then 200 connections that send an upload's headers
  (Content-Length: 204800) and one byte every 2 s (kreo.testing.slowclients),
  while a probe GETs /healthz and the sign-in page one after another; the
  probe's median, p90 and worst latency and how many got no answer within 5 s;
- normal load: 8 clients GET the sign-in page as fast as they can; requests
  per second and p90, and the ratio to the sync row.

The chosen configuration (the config file's defaults) must answer every probe
within 1 s under 200 slow clients (budget), without losing more than a fifth
of the sync workers' throughput.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import servers
from kreo.testing.slowclients import Probe, SlowUploads

TITLE = "Slow clients: sync vs gthread workers (ratios to sync)"
CONFIG = str(servers.ROOT / "deploy" / "gunicorn" / "gunicorn.conf.py")
CONFIGURATIONS = {
    "sync, 3 workers (before)": ["--worker-class=sync", "--workers=3", "--threads=1"],
    "gthread, 2 workers x 32 threads": ["--workers=2", "--threads=32"],
    "gthread, 2 workers x 128 threads": ["--workers=2", "--threads=128"],
    "gthread, 2 workers x 256 threads (chosen)": ["--workers=2", "--threads=256"],
}
ATTACKS = (3, 200)
ATTACK_SECONDS = 15
PROBE_TIMEOUT = 5.0
LOAD_CLIENTS = 8
PATHS = ("/healthz", "/accounts/login/")


def _start(name: str, var_dir: Path, options: list[str]) -> servers.Server:
    port = servers._free_port()
    log = var_dir / f"gunicorn-{len(list(var_dir.glob('gunicorn-*')))}.log"
    env = servers.environment(
        var_dir, "kreo.settings.local", KREO_HOST=servers.HOST, KREO_PORT=str(port)
    )
    with log.open("wb") as out:
        process = servers.subprocess.Popen(  # noqa: S603 - gunicorn, fixed arguments
            [str(servers.BIN / "gunicorn"), "-c", CONFIG, *options],
            cwd=servers.ROOT,
            env=env,
            stdout=out,
            stderr=servers.subprocess.STDOUT,
        )
    server = servers.Server(name, f"http://{servers.HOST}:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise servers.BenchError(f"{name} exited:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/healthz", timeout=5).ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise servers.BenchError(f"{name} did not answer /healthz:\n{server.log_tail()}")


def _under_attack(server: servers.Server, count: int) -> dict:
    port = int(server.url.rsplit(":", 1)[1])
    attack = SlowUploads(
        servers.HOST, port, count, path="/accounts/login/", interval=2.0
    ).start()
    try:
        time.sleep(1.0)  # every connection has sent its headers
        probe = Probe(servers.HOST, port, PATHS, timeout=PROBE_TIMEOUT)
        probe.run_for(ATTACK_SECONDS)
    finally:
        attack.stop()
    return probe.summary()


def _normal_load(server: servers.Server, requests_total: int) -> dict:
    def one(_):
        started = time.perf_counter()
        response = requests.get(f"{server.url}/accounts/login/", timeout=30)
        if response.status_code != 200:
            raise servers.BenchError(f"sign-in page answered {response.status_code}")
        return time.perf_counter() - started

    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        list(pool.map(one, range(LOAD_CLIENTS * 2)))  # warm-up
        started = time.perf_counter()
        timings = list(pool.map(one, range(requests_total)))
        wall = time.perf_counter() - started
    return {
        "rps": requests_total / wall,
        "p90_ms": statistics.quantiles(timings, n=10)[8] * 1000,
    }


def run(options) -> list[dict]:
    rows = []
    base_rps = None
    with tempfile.TemporaryDirectory(prefix="kreo-bench-slow-") as tmp:
        var_dir = Path(tmp)
        env = servers.environment(var_dir, "kreo.settings.local")
        servers.run_command(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env
        )
        for name, worker_options in CONFIGURATIONS.items():
            server = _start(name, var_dir, worker_options)
            try:
                load = _normal_load(server, options.requests)
                attacked = {count: _under_attack(server, count) for count in ATTACKS}
            finally:
                server.stop()
            base_rps = base_rps or load["rps"]
            row = {"configuration": name}
            for count, summary in attacked.items():
                row[f"{count} slow: p90_ms"] = summary["p90_ms"]
                row[f"{count} slow: max_ms"] = summary["max_ms"]
                row[f"{count} slow: unanswered"] = (
                    f"{summary['failed']}/{summary['probes']}"
                )
            row["load rps"] = round(load["rps"], 1)
            row["load p90_ms"] = round(load["p90_ms"], 1)
            row["rps/sync"] = round(load["rps"] / base_rps, 3)
            worst = attacked[ATTACKS[-1]]
            row["verdict"] = (
                "PASS" if worst["failed"] == 0 and worst["max_ms"] <= 1000 else "OVER"
            )
            rows.append(row)
    return rows
