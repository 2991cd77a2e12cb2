"""/metrics under ``make run``'s gunicorn: every worker's requests counted,
whichever worker answers the scrape.

The embedded default on a fresh ``KREO_VAR_DIR``, started with the very web
command of ``make run`` (``scripts/run.py``, deploy/gunicorn/gunicorn.conf.py:
two gthread workers), asked over HTTP with a new connection per request; the
access log names the worker (``pid=``) that answered each one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kreo.testing.faults import serving
from scripts import run as make_run
from scripts import services

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "g" * 40
REQUESTS = 40
PID = re.compile(r'"GET /accounts/login/ HTTP/1\.1" 200 .* pid=<?(\d+)')


def _embedded_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_", "PROMETHEUS_")
        )
    }
    env.update(KREO_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="kreo.settings.local")
    env.update(extra)
    return env


def _login_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "kreo_http_request_duration_seconds_count"
                and sample.labels.get("view") == "accounts:login"
            ):
                return sample.value
    return 0.0


@pytest.mark.timeout(600)
def test_every_workers_requests_are_in_every_scrape(tmp_path):
    """Requests spread over two workers are all counted, and a stale counter
    file left by an earlier server is not added in (the folder is emptied at
    start)."""
    var_dir = tmp_path / "var"
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_99999.db").write_bytes(b"left over from an earlier run")
    env = _embedded_env(
        var_dir,
        MONITORING_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="4",
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    port = services.free_port()
    command = make_run.process_commands("127.0.0.1", str(port))["web"]
    log = tmp_path / "gunicorn.log"
    with serving(
        command,
        env,
        port,
        log,
        probe=lambda url: requests.get(f"{url}/healthz", timeout=30),
        wait=180,
    ) as (url, _):
        for _ in range(REQUESTS):
            with requests.Session() as fresh:
                assert fresh.get(f"{url}/accounts/login/", timeout=30).ok
        scrapes = []
        for _ in range(6):
            with requests.Session() as fresh:
                response = fresh.get(
                    f"{url}/metrics",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=30,
                )
            assert response.status_code == 200, response.text
            scrapes.append(_login_count(response.text))
        refused = requests.get(f"{url}/metrics", timeout=30)
    workers = set(PID.findall(log.read_text(errors="replace")))
    assert len(workers) == 2, f"one worker answered every request: {workers}"
    assert scrapes == [REQUESTS] * len(scrapes)
    assert refused.status_code == 401
    assert not (folder / "counter_99999.db").exists()
