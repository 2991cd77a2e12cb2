"""Load test: 50 simulated members against two web instances, and against
one, in the same run (issue #15, Performance).

Locust (bench/locustfile.py, headless, run as a child process) signs in,
lists projects, uploads and downloads. The instances are gunicorn with the
production process layout (deploy/gunicorn/gunicorn.conf.py: gthread
workers, the bounded PostgreSQL pool) on one PostgreSQL database, one Redis
database and one S3 bucket (moto's server, over HTTP), each with its own
KREO_INSTANCE_ID and its own scratch folder (KREO_VAR_DIR) standing in for a
pod's disk: every key comes from the environment, the erasure ledger is a
bucket, so nothing one instance needs lives on the other's disk. With two
instances each member sends its requests to them in turn, as a round-robin
load balancer would: a session made on one is used on the other.

Rows: per configuration (one instance, two) and request type, throughput,
p50/p95 latency and failures, with the total's two/one throughput ratio and
how many requests each instance answered in that configuration (from its
access log, warm-up included: the one-instance figures must come from one).
The request limits are raised (bench/servers.py HIGH_RATES): this prices
throughput, not 429s. A failed request is a FAIL row and the benchmark
exits non-zero. On a 2-core machine that also runs locust, PostgreSQL,
Redis and moto, two instances share the same cores as one: the ratio shows
what a second instance costs or gains there, not what a second machine
would add.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import servers as bench

TITLE = "load test: 50 members (locust) on two web instances vs one (PG, Redis, S3)"
USERS = 50
# Members join five a second (all 50 signed in within the warm-up), then
# the statistics start from zero.
SPAWN_RATE = 5
WARMUP_SECONDS = 14
MEASURE_SECONDS = 30
# The gunicorn config's defaults, stated so a developer's shell cannot move
# them: one pod's layout.
GUNICORN = {
    "GUNICORN_WORKERS": "2",
    "GUNICORN_THREADS": "256",
    "GUNICORN_TIMEOUT": "30",
}
ACCESS_LINE = re.compile(r'"[A-Z]+ \S+ HTTP/1\.[01]" \d{3} ')
PROBLEM_LINE = re.compile(
    r"WORKER TIMEOUT|\[CRITICAL\]|\[ERROR\]|kreo\.outage|Traceback"
)
PROJECTS = 3  # the members' project, and two more each member sees
FILES = 3
FILE_BYTES = 256 * 1024
SETTINGS = "bench.settings_instances"
GUNICORN_CONFIG = bench.ROOT / "deploy" / "gunicorn" / "gunicorn.conf.py"
FILES_BUCKET = "kreo-bench-files"
LEDGER_BUCKET = "kreo-bench-ledger"
REGION = "eu-west-2"
# Redis databases this benchmark may take (the tests use 14 and 15): the
# first empty one is marked as taken, and flushed at the end.
REDIS_DBS = range(8, 13)
REDIS_MARK = "kreo-bench-instances"
ORDER = (
    "sign-in form",
    "sign-in",
    "project list",
    "download",
    "project page",
    "upload",
)

sys.path.insert(0, str(bench.ROOT / "scripts"))


def _services():
    import services  # scripts/services.py: the servers the tests use

    return services


@contextmanager
def postgres_database():
    """A database of this run's own on the local PostgreSQL; its URL."""
    import psycopg

    admin = _services().ensure_postgres()
    name = f"kreo_bench_{os.getpid()}_{secrets.token_hex(3)}"
    parts = urlsplit(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_database():
    """An empty Redis database, marked as this run's; flushed afterwards."""
    import redis

    base = _services().ensure_redis()
    for number in REDIS_DBS:
        client = redis.Redis.from_url(f"{base}/{number}")
        if not client.set(REDIS_MARK, str(os.getpid()), nx=True):
            continue
        if client.dbsize() != 1:  # someone else's data: leave it alone
            client.delete(REDIS_MARK)
            continue
        try:
            yield f"{base}/{number}"
        finally:
            client.flushdb()
            client.close()
        return
    raise bench.BenchError(f"no empty Redis database among {list(REDIS_DBS)}")


@contextmanager
def s3_server():
    """moto's S3 server on a free loopback port, with the files and ledger
    buckets; its URL."""
    import boto3

    process, url = _services().start_moto()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's  # nosec B106
        )
        where = {"LocationConstraint": REGION}
        client.create_bucket(Bucket=FILES_BUCKET, CreateBucketConfiguration=where)
        client.create_bucket(
            Bucket=LEDGER_BUCKET,
            CreateBucketConfiguration=where,
            ObjectLockEnabledForBucket=True,
        )
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def shared_environment(database_url: str, redis_url: str, s3_url: str) -> dict:
    """What every instance gets alike: the servers and every key (a key
    generated into one instance's folder would be unknown to the other)."""

    def key(nbytes: int = 48) -> str:
        return secrets.token_urlsafe(nbytes)

    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "KREO_CACHE_PREFIX": f"kreo-bench-{os.getpid()}",
        "AWS_STORAGE_BUCKET_NAME": FILES_BUCKET,
        "AWS_S3_ENDPOINT_URL": s3_url,
        "AWS_S3_REGION_NAME": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's  # nosec B105
        "KREO_KEY_LEDGER_S3_BUCKET": LEDGER_BUCKET,
        "KREO_KEY_LEDGER_S3_PREFIX": "kreo/",
        "DJANGO_SECRET_KEY": key(),
        "KREO_KEYRING": f"bench1:{key(32)}",
        "KREO_ALTCHA_HMAC_KEY": key(),
        "AUDIT_SIGNING_KEY": key(),
        "AUDIT_ARCHIVE_KEY": key(),
        "AUDIT_EVENT_KEY": f"bench:{key()}",
        "BACKUP_ENCRYPTION_KEY": key(32),
        "BACKUP_MANIFEST_KEY": key(32),
        **GUNICORN,
        # Each access log line written as it happens: the lines are counted.
        "PYTHONUNBUFFERED": "1",
    }


def seed(var_dir: Path, shared: dict, users: int) -> dict:
    """Migrate, then seed the members, their projects and files (a child)."""
    env = bench.environment(var_dir, SETTINGS, **shared)
    bench.run_command(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env
    )
    password = secrets.token_urlsafe(18)
    made = bench.run_command(
        [sys.executable, "-m", "bench.bench_instances", "seed", str(users)],
        {**env, "BENCH_PASSWORD": password},
    )
    return {**json.loads(made.strip().splitlines()[-1]), "password": password}


def start_instances(folder: Path, shared: dict, count: int) -> list[bench.Server]:
    started: list[bench.Server] = []
    try:
        for letter in "ab"[:count]:
            var_dir = folder / f"web-{letter}"
            var_dir.mkdir()
            started.append(
                bench.start_server(
                    f"web-{letter}",
                    var_dir,
                    SETTINGS,
                    config=GUNICORN_CONFIG,
                    KREO_INSTANCE_ID=f"bench-web-{letter}",
                    PROMETHEUS_MULTIPROC_DIR=str(var_dir / "metrics"),
                    **shared,
                )
            )
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def load(
    hosts: list[str],
    site: dict,
    users: int,
    warmup: float,
    seconds: float,
    require: tuple[tuple[str, str], ...] = (),
):
    """Run locust (bench/locustfile.py) in a child; its figures.

    With ``require`` ((name, method) pairs), the run goes on for up to a
    minute more until each has been answered once (a smoke run's guarantee).
    """
    config = {
        "require": require,
        "require_within": 60 if require else 0,
        "hosts": hosts,
        "users": users,
        "warmup": warmup,
        "seconds": seconds,
        "spawn_rate": min(SPAWN_RATE, users),
        **{k: site[k] for k in ("emails", "password", "project", "project_name")},
        "files": site["files"],
    }
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(bench.SCRUB_PREFIXES) and name not in bench.SCRUB_NAMES
    }
    env.update(PYTHONPATH=str(bench.ROOT), PYTHONDONTWRITEBYTECODE="1")
    return bench.run_child("bench.locustfile", json.dumps(config), env)


def measure(
    users: int = USERS,
    warmup: float = WARMUP_SECONDS,
    seconds: float = MEASURE_SECONDS,
    instances: tuple[int, ...] = (1, 2),
    require: tuple[tuple[str, str], ...] = (),
) -> dict[int, dict]:
    """Start the servers, seed, and load ``n`` instances for each n in
    ``instances``; locust's figures by number of instances."""
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        shared = shared_environment(
            stack.enter_context(postgres_database()),
            stack.enter_context(redis_database()),
            stack.enter_context(s3_server()),
        )
        site = seed(folder, shared, users)
        running = start_instances(folder, shared, max(instances))
        stack.callback(lambda: [server.stop() for server in running])
        figures = {}
        for count in instances:
            before = {server.name: answered(server) for server in running}
            figures[count] = load(
                [server.url for server in running[:count]],
                site,
                users,
                warmup,
                seconds,
                require,
            )
            figures[count]["served"] = {
                server.name: answered(server) - before[server.name]
                for server in running
            }
        figures_problems = {server.name: problems(server) for server in running}
        for result in figures.values():
            result["server_problems"] = figures_problems
        return figures


def answered(server: bench.Server) -> int:
    """Requests the server has answered so far (its access log's lines)."""
    return len(ACCESS_LINE.findall(server.log.read_text(errors="replace")))


def problems(server: bench.Server, keep: int = 6) -> list[str]:
    """How many worker timeouts, outages and errors the server logged, by
    kind, and the last few of them."""
    lines = server.log.read_text(errors="replace").splitlines()
    found = [line[:300] for line in lines if PROBLEM_LINE.search(line)]
    kinds: dict[str, int] = {}
    for line in found:
        kind = PROBLEM_LINE.search(line).group(0)
        kinds[kind] = kinds.get(kind, 0) + 1
    counted = [f"{count} x {kind}" for kind, count in sorted(kinds.items())]
    return counted + found[-keep:]


def rows(figures: dict[int, dict]) -> list[dict]:
    """Table rows: per configuration the total, then each request type."""
    base = figures.get(1, {}).get("total", {}).get("rps")
    made = []
    for count, result in sorted(figures.items()):
        label = f"{count} instance{'s' if count > 1 else ''}"
        types = sorted(
            result["types"].items(),
            key=lambda item: (
                ORDER.index(item[0]) if item[0] in ORDER else len(ORDER),
                item[0],
            ),
        )
        for name, entry in [("total", result["total"]), *types]:
            ratio, spread = "", ""
            if name == "total":
                spread = " / ".join(
                    f"{server.removeprefix('web-')} {answered}"
                    for server, answered in sorted(result["served"].items())
                )
                if count > 1 and base:
                    ratio = round(entry["rps"] / base, 3)
            rate = entry["failures"] / entry["requests"] if entry["requests"] else 0
            made.append(
                {
                    "instances": label,
                    "request": name,
                    "users": result["users"],
                    "seconds": result["seconds"],
                    "requests": entry["requests"],
                    "failures": entry["failures"],
                    "error_%": round(100 * rate, 3),
                    "req_per_s": entry["rps"],
                    "p50_ms": entry["p50_ms"],
                    "p95_ms": entry["p95_ms"],
                    "rps_vs_one": ratio,
                    "answered_by": spread,
                    "verdict": "PASS" if entry["failures"] == 0 else "FAIL",
                }
            )
    return made


def errors(figures: dict[int, dict]) -> list[str]:
    """Every failed request or task exception, by configuration."""
    return [
        f"{count} instance(s): {e['count']} x {e['request']}: {e['error']}"
        for count, result in sorted(figures.items())
        for e in result["errors"]
    ]


def run(options) -> list[dict]:
    figures = measure()
    made = rows(figures)
    failed = errors(figures)
    empty = [row for row in made if row["request"] == "total" and not row["requests"]]
    if failed or empty:
        from bench.run import table

        print(table(made))
        logs = [
            f"{name}: {line}"
            for name, lines in next(iter(figures.values()))["server_problems"].items()
            for line in lines
        ]
        raise bench.BenchError(
            "requests failed under load:\n"
            + "\n".join(failed or ["no requests"])
            + "\nthe servers' logs:\n"
            + "\n".join(logs or ["(nothing logged)"])
        )
    return made


def seed_main(users: int) -> int:
    """Seed (as a child, Django set up from the environment): ``users``
    verified members (editors) of one project with FILES files, and the
    owner's other projects; print what was made as one JSON object."""
    import django

    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from accounts.models import User
    from bench.seed_stack import pdf_of_size
    from projects import services
    from projects.models import Membership, Role

    password = os.environ["BENCH_PASSWORD"]
    owner = User.objects.create_user(
        email="owner@bench.example.test", password=secrets.token_urlsafe(18)
    )
    projects = [
        services.project_create(actor=owner, name=f"Load estimate {n}")
        for n in range(1, PROJECTS + 1)
    ]
    files = {}
    for n in range(1, FILES + 1):
        upload = SimpleUploadedFile(
            f"drawing-{n}.pdf", pdf_of_size(FILE_BYTES), content_type="application/pdf"
        )
        item = services.project_file_upload(
            actor=owner, project=projects[0], upload=upload
        )
        files[f"/projects/{projects[0].pk}/files/{item.pk}/download/"] = item.size
    emails = []
    for n in range(1, users + 1):
        member = User.objects.create_user(
            email=f"member{n:03d}@bench.example.test", password=password
        )
        member.email_verified_at = timezone.now()
        member.save(update_fields=["email_verified_at"])
        # Invitations go by mail through a worker; the bench seeds the
        # memberships an accepted invitation would leave.
        for project in projects:
            Membership.objects.create(project=project, user=member, role=Role.EDITOR)
        emails.append(member.email)
    json.dump(
        {
            "emails": emails,
            "project": f"/projects/{projects[0].pk}/",
            "project_name": projects[0].name,
            "files": files,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        sys.exit(seed_main(int(sys.argv[2])))
    sys.exit(f"usage: python -m {__spec__.name} seed USERS")
