"""Slow clients do not stop the site.

200 connections that send an upload's headers (Content-Length: 204800) and
then one byte every few seconds, against the real gunicorn as `make run`
starts it (threaded workers, deploy/gunicorn/gunicorn.conf.py): /healthz and
the sign-in page are answered within 1 s throughout. Then the shipped nginx
config (deploy/nginx) in front of the weakest gunicorn there is (one sync
worker): the attack never reaches gunicorn, over-limit connections are
refused per address, an oversized upload gets 413, stalled headers are cut
off, and the app records the client's address, not a forged one.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kreo.middleware import ENVELOPE
from kreo.testing.slowclients import Probe, SlowUploads
from scripts.run import web_command

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
PROBE_SOURCE = "127.0.0.2"  # not the attacker's address
TLS_PROXY = "127.0.0.4"  # NGINX_REAL_IP_FROM in the nginx tests
PATHS = ("/healthz", "/accounts/login/")
ATTACKERS = 200
ATTACK_SECONDS = 20
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "templates" / "kreo.conf.template"
# The embedded default's environment only, as `make run` has it.
SCRUB = ("DJANGO_", "KREO_", "AWS_", "DATABASE_URL", "REDIS_URL", "BACKUP_")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"not listening on {port}:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def site_env(tmp_path_factory):
    """The embedded default in a folder of its own, migrated."""
    var_dir = tmp_path_factory.mktemp("slow-clients")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUB)}
    env.update(
        DJANGO_SETTINGS_MODULE="kreo.settings.local",
        KREO_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
    )
    subprocess.run(  # noqa: S603 - manage.py, fixed arguments
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return env, var_dir


def _gunicorn(site_env, name: str, *extra: str, env_extra: dict | None = None):
    env, var_dir = site_env
    env = {**env, **(env_extra or {})}
    port = _free_port()
    log = var_dir / f"{name}.log"
    command = [*web_command(HOST, str(port)), *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - gunicorn, fixed arguments
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    _wait_listening(port, process, log)
    return process, port, log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def make_run_gunicorn(site_env):
    process, port, log = _gunicorn(site_env, "make-run")
    yield port, log
    _stop(process)


def test_make_run_answers_within_a_second_under_200_slow_uploads(make_run_gunicorn):
    """gunicorn as `make run` starts it keeps answering /healthz and the
    sign-in page within 1 s while 200 connections trickle upload bodies."""
    port, log = make_run_gunicorn
    assert "Using worker: gthread" in log.read_text()
    _warm_up(port)
    attack = SlowUploads(
        HOST, port, ATTACKERS, path="/accounts/login/", interval=3.0
    ).start()
    try:
        time.sleep(2)  # every connection has sent its headers to a worker
        assert attack.opened == ATTACKERS
        probe = Probe(HOST, port, PATHS, timeout=5.0).run_for(ATTACK_SECONDS)
        # The attack was still on: gunicorn held every connection throughout.
        assert attack.closed_by_server == 0
    finally:
        attack.stop()
    slow = [sample for sample in probe.samples if sample[1] >= 1.0]
    assert probe.failures == [], probe.summary()
    assert slow == [], (slow, probe.samples.index(slow[0]), probe.summary())


def _warm_up(port: int, source: str = HOST) -> None:
    """Each worker has served each page once (templates compiled), as a site
    that has been up for a minute has."""
    warm = Probe(HOST, port, PATHS, timeout=30.0, source=source)
    for _ in range(10):
        for path in PATHS:
            warm.get(path)


def _render(listen: str, upstream: str, real_ip_from: str, max_body: str) -> str:
    text = NGINX_TEMPLATE.read_text()
    values = {
        "NGINX_LISTEN": listen,
        "KREO_UPSTREAM": upstream,
        "NGINX_REAL_IP_FROM": real_ip_from,
        "NGINX_CLIENT_MAX_BODY_SIZE": max_body,
    }
    # The names envsubst replaces are exactly these: no other ${...} left.
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(values)
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def _max_body() -> str:
    """What Compose passes: KREO_MAX_UPLOAD_BYTES (default) + the envelope."""
    from kreo.settings import base

    default = base.env.int("KREO_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
    return f"{(default + ENVELOPE) // (1024 * 1024)}m"


def test_compose_passes_the_upload_limit_to_nginx():
    """nginx's body limit is the app's upload limit plus the multipart
    envelope, so nginx refuses nothing the app would accept."""
    compose = (ROOT / "docker-compose.yml").read_text()
    default = re.search(r"NGINX_CLIENT_MAX_BODY_SIZE:-(\w+)\}", compose).group(1)
    assert default == "101m" == _max_body()


@pytest.fixture
def nginx_in_front(site_env, tmp_path):
    """nginx with the shipped config in front of ONE sync gunicorn worker."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" * os.path.exists("/usr/sbin/nginx")
    )
    if not nginx:
        pytest.skip("nginx is not installed (scripts/services.py ensure_nginx)")
    process, gunicorn_port, gunicorn_log = _gunicorn(
        site_env,
        "behind-nginx",
        "--worker-class=sync",
        "--workers=1",
        "--threads=1",
        "--timeout=120",
        # As in Compose: nginx is the one proxy the app trusts.
        env_extra={"DJANGO_TRUSTED_PROXY_COUNT": "1"},
    )
    port = _free_port()
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / folder).mkdir()
    (tmp_path / "kreo.conf").write_text(
        _render(
            f"{HOST}:{port}",
            f"{HOST}:{gunicorn_port}",
            TLS_PROXY,  # the address the "TLS proxy" connects from
            _max_body(),
        )
    )
    user = "user root;" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/kreo.conf;
}}
"""
    )
    log = tmp_path / "nginx.out"
    with log.open("wb") as out:
        proxy = subprocess.Popen(  # noqa: S603 - nginx, fixed arguments
            [
                nginx,
                "-p",
                str(tmp_path),
                "-e",
                str(tmp_path / "error.log"),
                "-c",
                str(tmp_path / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_listening(port, proxy, log)
    yield port, gunicorn_log, tmp_path, site_env[1]
    _stop(proxy)
    _stop(process)


def _raw(port: int, data: bytes, source: str = PROBE_SOURCE, wait: float = 5) -> bytes:
    with socket.create_connection((HOST, port), wait, source_address=(source, 0)) as s:
        s.sendall(data)
        try:
            return s.recv(200)
        except TimeoutError:
            return b"(no answer)"


def test_nginx_holds_slow_uploads_and_limits_each_address(nginx_in_front):
    """Through nginx, 200 slow uploads from one address never reach the single
    sync worker: other clients are answered within 1 s, the attacker's
    connections past 20 are refused (429), stalled headers are cut off after
    client_header_timeout and an oversized upload gets 413 from nginx."""
    port, gunicorn_log, folder, _ = nginx_in_front
    _warm_up(port, source=PROBE_SOURCE)
    stalled = socket.create_connection((HOST, port), 5, source_address=("127.0.0.3", 0))
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
    attack = SlowUploads(
        HOST, port, ATTACKERS, path="/accounts/login/", interval=3.0
    ).start()
    try:
        time.sleep(2)
        probe = Probe(HOST, port, PATHS, timeout=5.0, source=PROBE_SOURCE)
        probe.run_for(ATTACK_SECONDS)
    finally:
        attack.stop()
    slow = [sample for sample in probe.samples if sample[1] >= 1.0]
    assert probe.failures == [], probe.summary()
    assert slow == [], (slow, probe.samples.index(slow[0]), probe.summary())

    # No slow body ever reached gunicorn: it saw only the probes' GETs.
    requests_seen = gunicorn_log.read_text()
    assert '"GET /healthz' in requests_seen
    assert '"POST /accounts/login/' not in requests_seen
    # One address: at most 20 connections and 20 requests a second (burst
    # 40); the rest of the attack was refused before it could queue.
    errors = (folder / "error.log").read_text()
    refused = errors.count("limiting connections by zone") + errors.count(
        "limiting requests, excess"
    )
    assert refused >= ATTACKERS - 40, errors[-2000:]

    # Headers that never end: cut off after client_header_timeout (10 s).
    stalled.settimeout(5)
    try:
        answer = stalled.recv(100)
    except ConnectionResetError:
        answer = b""
    finally:
        stalled.close()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer

    too_big = (
        b"POST /accounts/login/ HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n" % (200 * 1024 * 1024)
    )
    assert _raw(port, too_big).startswith(b"HTTP/1.1 413")


def _source_ip_seen_by_the_app(port, var_dir, source, forwarded_for) -> str:
    """The address the app recorded for a request (a 404 is audited with
    the address kreo.net.client_ip resolved)."""
    connection = http.client.HTTPConnection(
        HOST, port, timeout=10, source_address=(source, 0)
    )
    connection.request(
        "GET", "/no-such-page/", headers={"X-Forwarded-For": forwarded_for}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 404
    correlation = response.getheader("X-Correlation-ID")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(var_dir / "db.sqlite3") as db:
            row = db.execute(
                "SELECT source_ip FROM audit_auditevent WHERE correlation_id = ?",
                (correlation,),
            ).fetchone()
        if row:
            return row[0]
        time.sleep(0.2)
    pytest.fail(f"no audit event for {correlation}")


def test_nginx_hands_the_app_the_client_address(nginx_in_front):
    """A client's forged X-Forwarded-For is replaced by its own address; the
    address the TLS proxy in front reports is believed. The app (one trusted
    proxy, as in Compose) records exactly that address."""
    port, _, _, var_dir = nginx_in_front
    forged = _source_ip_seen_by_the_app(port, var_dir, PROBE_SOURCE, "203.0.113.9")
    assert forged == PROBE_SOURCE
    relayed = _source_ip_seen_by_the_app(
        port, var_dir, TLS_PROXY, "203.0.113.9, 198.51.100.7"
    )
    assert relayed == "198.51.100.7"
