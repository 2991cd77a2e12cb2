"""Backups on PostgreSQL: throughput against plain ``pg_dump -Fc > /dev/null``
in the same run, peak memory at two database sizes, and restore times
against plain ``pg_restore --single-transaction`` of the same dump.

Each size gets a fresh PostgreSQL database (created and dropped here), filled
with project rows of about 1 KiB of incompressible-ish text each until
``pg_database_size`` reaches the target. Sizes in MiB come from
BENCH_BACKUP_SIZES (default "50,500"). The backup and restores run in child
processes (``python -m bench.bench_backup <role>``) so that each reports its
own peak RSS; copy 3 (S3) is left out: its cost is the network's.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import servers as bench_servers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

TITLE = "backups on PostgreSQL: throughput vs pg_dump, peak memory, restore"
BUDGET = 0.7


def _env(database_url: str, var_dir: str) -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KREO_", "AWS_", "BACKUP_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
        "DATABASE_URL": database_url,
        "KREO_VAR_DIR": var_dir,
        "PYTHONPATH": str(ROOT),
    }


def _child(role: str, env: dict, *args: str) -> dict:
    return bench_servers.run_child("bench.bench_backup", role, env, *args)


def _plain_pg_dump(database_url: str) -> float:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(  # noqa: S603 - the baseline, fixed arguments
            [shutil.which("pg_dump") or "pg_dump", "-Fc", f"--dbname={database_url}"],
            stdout=sink,
            check=True,
        )
    return time.perf_counter() - started


def _plain_pg_restore(database_url: str, target_url: str) -> float:
    """A restore of ``pg_dump -Fc`` (taken first, not timed) with the flags the
    backup's own restore uses (backups.databases.native_restore)."""
    with tempfile.TemporaryDirectory(prefix="kreo-bench-dump-") as folder:
        dump = Path(folder) / "plain.pgdump"
        with open(dump, "wb") as out:
            subprocess.run(  # noqa: S603 - the baseline, fixed arguments
                [
                    shutil.which("pg_dump") or "pg_dump",
                    "-Fc",
                    "--no-owner",
                    "--no-acl",
                    f"--dbname={database_url}",
                ],
                stdout=out,
                check=True,
            )
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - the baseline, fixed arguments
            [
                shutil.which("pg_restore") or "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-acl",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={target_url}",
                str(dump),
            ],
            check=True,
        )
        return time.perf_counter() - started


def _size_mib(conn, name: str) -> float:
    return conn.execute("SELECT pg_database_size(%s)", [name]).fetchone()[0] / 2**20


def _fill(database_url: str, target_mib: int) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        name = database_url.rsplit("/", 1)[1]
        batch = 20000
        while _size_mib(conn, name) < target_mib:
            conn.execute(
                "INSERT INTO projects_project "
                "(id, name, description, created_by_id, created_at, updated_at) "
                "SELECT gen_random_uuid(), 'Estimate ' || g, "
                "(SELECT string_agg(md5(random()::text || i::text || g::text), '') "
                "FROM generate_series(1, 30) AS i), "
                "NULL, now() - g * interval '1 second', now() "
                "FROM generate_series(1, %s) AS g",
                [batch],
            )


def _one_size(admin_url: str, target_mib: int) -> list[dict]:
    import psycopg

    name = f"kreo_bench_backup_{uuid.uuid4().hex[:8]}"
    restore_names = [f"{name}_r0", f"{name}_r1", f"{name}_r2"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for db in [name, *restore_names]:
            conn.execute(f'CREATE DATABASE "{db}"')
    base = admin_url.rsplit("/", 1)[0]
    database_url = f"{base}/{name}"
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="kreo-bench-backup-") as var_dir:
            env = _env(database_url, var_dir)
            subprocess.run(  # noqa: S603
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            _fill(database_url, target_mib)
            with psycopg.connect(admin_url, autocommit=True) as conn:
                size = _size_mib(conn, name)
            plain = _plain_pg_dump(database_url)
            copy1 = _child("copy1", env)
            plain_after = _plain_pg_dump(database_url)
            baseline = (plain + plain_after) / 2
            full = _child("backup", env)
            ratio = baseline / copy1["seconds"]
            plain_restore = _plain_pg_restore(
                database_url, f"{base}/{restore_names[0]}"
            )
            rows += [
                _row(size, "pg_dump -Fc > /dev/null (mean of 2)", baseline, "", ""),
                _row(
                    size,
                    "copy 1: pg_dump -Fc + KREOSEAL + SHA-256 to disk",
                    copy1["seconds"],
                    copy1["peak_rss_mib"],
                    f"{ratio:.2f} of pg_dump ({'ok' if ratio >= BUDGET else 'OVER'})",
                ),
                _row(
                    size,
                    "backup_create: copies 1+2, checksums, manifest",
                    full["seconds"],
                    full["peak_rss_mib"],
                    f"{baseline / full['seconds']:.2f} of pg_dump "
                    f"(time {full['seconds'] / baseline:.2f}x pg_dump's)",
                ),
                _row(
                    size,
                    "pg_restore --single-transaction of pg_dump -Fc (empty db)",
                    plain_restore,
                    "",
                    "",
                ),
            ]
            for copy, target in zip((1, 2), restore_names[1:], strict=True):
                out = _child(
                    "restore", env, str(full["set_id"]), str(copy), f"{base}/{target}"
                )
                rows.append(
                    _row(
                        size,
                        f"restore copy {copy} into an empty database "
                        f"({'pg_restore' if copy == 1 else 'logical JSONL'})",
                        out["seconds"],
                        out["peak_rss_mib"],
                        ("checksums equal" if out["equal"] else "CHECKSUMS DIFFER")
                        + (
                            f"; time {out['seconds'] / plain_restore:.2f}x pg_restore's"
                            if copy == 1
                            else ""
                        ),
                    )
                )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for db in [name, *restore_names]:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return rows


def _row(size, measure, seconds, rss, note) -> dict:
    row = {
        "db_mib": round(size),
        "measure": measure,
        "seconds": round(seconds, 2),
        "mib_per_s": round(size / seconds, 1),
        "peak_rss_mib": rss if rss == "" else round(rss, 1),
        "note": note,
    }
    # Shown as it comes: the 500 MiB run is long.
    sys.stderr.write(f"   {json.dumps(row)}\n")
    return row


def run(options=None) -> list[dict]:
    import services  # scripts/services.py

    sizes = [int(s) for s in os.environ.get("BENCH_BACKUP_SIZES", "50,500").split(",")]
    admin_url = services.ensure_postgres()
    rows = []
    for size in sizes:
        rows += _one_size(admin_url, size)
    return rows


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(role: str, args: list[str]) -> dict:
    import django

    django.setup()
    from backups import crypto, databases, services

    started = time.perf_counter()
    if role == "copy1":
        key = crypto.key_a()
        with tempfile.TemporaryDirectory() as folder, databases.snapshot() as snap:
            path = Path(folder) / "db.pgdump.enc"
            services._write(
                lambda chunks, out: crypto.seal_artifact(
                    chunks, out, key, set_id=0, name=path.name
                ),
                databases.native_dump(snap),
                path,
                None,
            )
        return {"seconds": time.perf_counter() - started}
    if role == "backup":
        backup_set = services.backup_create()
        # No bucket here (copy 3 is not measured): the set is incomplete.
        assert [backup_set.copy_state(n) for n in (1, 2)] == ["done", "done"], (
            backup_set.error
        )
        return {"seconds": time.perf_counter() - started, "set_id": backup_set.pk}
    if role == "restore":
        set_id, copy, target = int(args[0]), int(args[1]), args[2]
        manifest = services.backup_restore(
            set_id=set_id, copy=copy, target_db=target, restore_files=False
        )
        seconds = time.perf_counter() - started
        alias = databases.alias_for_url(target)
        try:
            stats = databases.table_stats(alias)
        finally:
            databases.drop_alias(alias)
        return {"seconds": seconds, "equal": stats == manifest["tables"]}
    raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    out = _worker(sys.argv[1], sys.argv[2:])
    out["peak_rss_mib"] = _peak_mib()
    print(json.dumps(out))
