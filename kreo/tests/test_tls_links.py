"""TLS inside: every link to a server is TLS with the server's identity checked.

`check --deploy` on production settings reports each plaintext link by its
id (kreo.E130-E134) unless KREO_PLAINTEXT_LINKS_OK lists it. Then the
settings are taken at their word: a Redis and a PostgreSQL of the test's own
speak TLS only, with certificates from a throwaway CA, and production
settings reach them (cache, rate-limit cache, Celery broker; the database
with and without the connection pool) with the right CA, and are refused with
another CA, no CA, or a certificate for another host.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess  # nosec B404 - the test starts its own servers
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kreo.checks import PLAINTEXT_LINK_IDS
from kreo.testing.tls import Authority
from kreo.tests.test_settings import PRODUCTION_ENV, manage
from scripts import services

NOWHERE = "127.0.0.1:9"  # nothing listens; `check --deploy` connects to none
TLS_ENV = {
    **PRODUCTION_ENV,
    "DATABASE_URL": f"postgres://kreo:kreo@{NOWHERE}/kreo"
    "?sslmode=verify-full&sslrootcert=/etc/kreo/tls/ca.crt",
    "REDIS_URL": f"rediss://{NOWHERE}/0",
    "AWS_S3_ENDPOINT_URL": f"https://{NOWHERE}",
    "KREO_OIDC_ISSUER": f"https://{NOWHERE}/realms/kreo",
    "KREO_OIDC_CLIENT_SECRET": "ci-oidc-client-secret",  # noqa: S105  # nosec B105
    "EMAIL_HOST": "127.0.0.1",
    "EMAIL_PORT": "9",
    "EMAIL_USE_TLS": "true",
}
# (link name, what an operator might write): each is plaintext, or TLS that
# does not check whom it talks to.
PLAINTEXT = [
    ("database", {"DATABASE_URL": f"postgres://kreo:kreo@{NOWHERE}/kreo"}),
    (
        "database",
        {"DATABASE_URL": f"postgres://kreo:kreo@{NOWHERE}/kreo?sslmode=require"},
    ),
    (
        "database",
        {"DATABASE_URL": f"postgres://kreo:kreo@{NOWHERE}/kreo?sslmode=verify-ca"},
    ),
    ("redis", {"REDIS_URL": f"redis://{NOWHERE}/0"}),
    ("redis", {"REDIS_URL": f"rediss://{NOWHERE}/0?ssl_cert_reqs=none"}),
    ("s3", {"AWS_S3_ENDPOINT_URL": f"http://{NOWHERE}"}),
    ("s3", {"BACKUP_S3_ENDPOINT_URL": f"http://{NOWHERE}"}),
    ("s3", {"AUDIT_ARCHIVE_S3_ENDPOINT_URL": f"http://{NOWHERE}"}),
    ("oidc", {"KREO_OIDC_ISSUER": f"http://{NOWHERE}/realms/kreo"}),
    ("oidc", {"KREO_OIDC_TOKEN_ENDPOINT": f"http://{NOWHERE}/token"}),
    ("smtp", {"EMAIL_USE_TLS": "false"}),
]
IDS = re.compile(r"\((kreo\.E13\d)\)")


def deploy_errors(env: dict) -> tuple[set[str], str]:
    """The kreo.E13x ids `check --deploy` reports, and its output."""
    done = manage("check", "--deploy", env=env)
    return set(IDS.findall(done.stderr)), done.stderr


def test_tls_everywhere_reports_no_link():
    found, output = deploy_errors(TLS_ENV)
    assert found == set(), output


@pytest.mark.parametrize(("name", "change"), PLAINTEXT)
def test_each_plaintext_link_is_an_error_unless_listed(name, change):
    # Listing the other links does not let this one through; listing it does.
    others = ",".join(n for n in PLAINTEXT_LINK_IDS if n != name)
    envs = [
        {**TLS_ENV, **change},
        {**TLS_ENV, **change, "KREO_PLAINTEXT_LINKS_OK": others},
        {**TLS_ENV, **change, "KREO_PLAINTEXT_LINKS_OK": name},
    ]
    with ThreadPoolExecutor(len(envs)) as pool:
        alone, with_others, listed = pool.map(deploy_errors, envs)
    assert alone[0] == {PLAINTEXT_LINK_IDS[name]}, alone[1]
    assert "KREO_PLAINTEXT_LINKS_OK" in alone[1]  # the hint names the way out
    assert with_others[0] == {PLAINTEXT_LINK_IDS[name]}, with_others[1]
    assert listed[0] == set(), listed[1]


def test_every_plaintext_link_at_once_is_one_error_each_and_a_typo_exempts_none():
    everything = {**TLS_ENV}
    for _, change in PLAINTEXT:
        everything.update(change)
    found, output = deploy_errors(everything)
    assert found == set(PLAINTEXT_LINK_IDS.values()), output
    # "postgres" is not a link name: reported, and the database stays reported.
    found, output = deploy_errors(
        {**everything, "KREO_PLAINTEXT_LINKS_OK": "postgres, redis,S3,oidc,smtp"}
    )
    assert found == {"kreo.E130", "kreo.E135"}, output
    assert "postgres" in output


# A real TLS Redis ------------------------------------------------------------------

REDIS_PROBE = """
import json
from django.core.cache import caches
from kreo.celery import app

out = {}
for alias in ("default", "ratelimit"):
    try:
        caches[alias].set("kreo-tls-probe", alias, 30)
        out[alias] = caches[alias].get("kreo-tls-probe")
    except Exception as exc:
        out[alias] = f"refused: {exc}"
try:
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue("kreo-tls-probe")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
        out["broker"] = message.payload
except Exception as exc:
    out["broker"] = f"refused: {exc}"
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def authorities(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    return Authority(folder, "kreo-test"), Authority(folder, "impostor")


@pytest.fixture(scope="module")
def tls_redis(authorities, tmp_path_factory):
    """A redis-server that speaks TLS only (no plaintext port)."""
    good, _ = authorities
    cert, key = good.issue("redis", ips=("127.0.0.1",))
    folder = tmp_path_factory.mktemp("redis")
    port = services.free_port()
    server = subprocess.Popen(  # noqa: S603 # nosec B603 - fixed command
        [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(good.cert_file),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        services.wait_for("127.0.0.1", port, 15, "the test's TLS Redis")
        yield port
    finally:
        server.kill()
        server.wait(10)


def redis_probe(url: str, ca: Path | None) -> dict:
    env = {**PRODUCTION_ENV, "REDIS_URL": url, "KREO_CACHE_TIMEOUT_SECONDS": "5"}
    if ca is not None:
        env["REDIS_CA_FILE"] = str(ca)
    done = manage("shell", "--no-imports", "-c", REDIS_PROBE, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_rediss_reaches_cache_ratelimit_and_broker_verifying_the_ca(
    tls_redis, authorities
):
    good, _ = authorities
    found = redis_probe(f"rediss://127.0.0.1:{tls_redis}/0", good.cert_file)
    assert found == {"default": "default", "ratelimit": "ratelimit", "broker": {"n": 1}}


@pytest.mark.parametrize("attack", ["impostor CA", "no CA", "other host"])
def test_rediss_refuses_a_server_it_cannot_verify(tls_redis, authorities, attack):
    """Another CA (a man in the middle with his own CA), no CA file (the
    system's CAs do not know ours), or the right CA's certificate for another
    host: cache, rate-limit cache and broker all refuse to talk."""
    good, impostor = authorities
    host, ca = {
        "impostor CA": ("127.0.0.1", impostor.cert_file),
        "no CA": ("127.0.0.1", None),
        "other host": ("localhost", good.cert_file),  # the cert names 127.0.0.1
    }[attack]
    found = redis_probe(f"rediss://{host}:{tls_redis}/0", ca)
    assert set(found) == {"default", "ratelimit", "broker"}
    for what, result in found.items():
        assert str(result).startswith("refused: "), (what, result)
        assert "CERTIFICATE_VERIFY_FAILED" in result, (what, result)
    if attack == "other host":
        assert "Hostname mismatch" in found["default"]


# A real TLS PostgreSQL -------------------------------------------------------------

DB_PROBE = """
import json
from django.conf import settings
from django.db import connection

out = {"pool": "pool" in settings.DATABASES["default"]["OPTIONS"]}
try:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        out["ssl"], out["version"] = cursor.fetchone()
except Exception as exc:
    out["refused"] = str(exc)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tls_postgres(authorities):
    """A PostgreSQL cluster of the test's own with ssl=on (test_faults_postgres's)."""
    from kreo.tests.test_faults_postgres import Cluster

    good, _ = authorities
    # Not under pytest's folder: the postgres OS user must reach it.
    root = Path(tempfile.mkdtemp(prefix="kreo-pgtls-"))
    cluster = Cluster(root)
    cert, key = good.issue("postgres", ips=("127.0.0.1",))
    for source in (cert, key):
        target = root / source.name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        if cluster.as_owner:
            shutil.chown(target, "postgres", "postgres")
    start = cluster.start

    def start_with_tls() -> None:
        cluster._run(
            str(cluster.bin / "pg_ctl"),
            "-D",
            str(cluster.data),
            "-o",
            f"-p {cluster.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={root} -c fsync=off -c ssl=on "
            f"-c ssl_cert_file={root / cert.name} -c ssl_key_file={root / key.name}",
            "-l",
            str(cluster.log),
            "-w",
            "start",
        )

    cluster.start = start_with_tls
    try:
        cluster.init()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        cluster.start = start
        shutil.rmtree(root, ignore_errors=True)


def db_probe(cluster, host: str, query: str, *, pool: bool) -> dict:
    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": f"postgres://kreo:kreo@{host}:{cluster.port}/kreo?{query}",
    }
    if pool:
        env["KREO_DB_POOL"] = "1"
        env["KREO_DB_POOL_TIMEOUT"] = "5"
    done = manage("shell", "--no-imports", "-c", DB_PROBE, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # The pool connects in the background and logs why it could not
    # (production logs JSON lines: their messages are what a person reads).
    return {
        **json.loads(done.stdout.strip().splitlines()[-1]),
        "log": _messages(done.stderr),
    }


def _messages(stderr: str) -> str:
    lines = []
    for line in stderr.splitlines():
        try:
            lines.append(json.loads(line)["message"])
        except (ValueError, KeyError, TypeError):
            lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("pool", [False, True], ids=["connections", "pool"])
def test_verify_full_reaches_postgresql_over_tls(tls_postgres, authorities, pool):
    """sslmode and sslrootcert from DATABASE_URL reach libpq, through the
    pool too: the server reports the session as TLS."""
    good, _ = authorities
    query = f"sslmode=verify-full&sslrootcert={good.cert_file}"
    found = db_probe(tls_postgres, "127.0.0.1", query, pool=pool)
    assert found["pool"] is pool
    assert found.get("ssl") is True, found
    assert found["version"].startswith("TLSv1."), found


@pytest.mark.parametrize("attack", ["impostor CA", "other host"])
@pytest.mark.parametrize("pool", [False, True], ids=["connections", "pool"])
def test_verify_full_refuses_a_server_it_cannot_verify(
    tls_postgres, authorities, attack, pool
):
    good, impostor = authorities
    host, ca = {
        "impostor CA": ("127.0.0.1", impostor.cert_file),
        "other host": ("localhost", good.cert_file),  # the cert names 127.0.0.1
    }[attack]
    found = db_probe(
        tls_postgres, host, f"sslmode=verify-full&sslrootcert={ca}", pool=pool
    )
    assert "ssl" not in found, found
    expected = {
        "impostor CA": "certificate verify failed",
        "other host": 'does not match host name "localhost"',
    }[attack]
    # Without the pool the error says why; the pool's request times out
    # and its log says why.
    assert expected in (found["log"] if pool else found["refused"]), found
