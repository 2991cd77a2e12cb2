"""Backups on PostgreSQL: throughput against plain ``pg_dump -Fc > /dev/null``
in the same run, peak memory at two database sizes, and restore times
against plain ``pg_restore --single-transaction`` of the same dump.

Each size gets a fresh PostgreSQL database (created and dropped here), filled
with project rows of about 1 KiB of incompressible-ish text each until
``pg_database_size`` reaches the target. Sizes in MiB come from
BENCH_BACKUP_SIZES (default "50,500"). The backup and restores run in child
processes (``python -m bench.bench_backup <role>``) so that each reports its
own peak RSS; copy 3 (S3) is left out: its cost is the network's.
BENCH_BACKUP_ROUNDS (default 2) times, the baseline and the backup run in
turns (restores likewise, each into a fresh empty database) and the fastest
of each side counts (restores: BENCH_BACKUP_RESTORE_ROUNDS, default 3,
they are short); BENCH_BACKUP_COPY2=0 leaves out the (slow, unbudgeted)
restore of the logical copy.
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
# Issue #12 / DESIGN.md: a backup (copies 1 + 2) within 1.25x the time of
# pg_dump -Fc alone, a restore of copy 1 within 1.25x of pg_restore alone.
TIME_BUDGET = 1.25


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


def _plain_dump_file(database_url: str, dump: Path) -> None:
    """``pg_dump -Fc`` with the flags the backup's own dump uses, to a file."""
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


def _plain_pg_restore(dump: Path, target_url: str) -> float:
    """A restore of ``pg_dump -Fc`` with the flags the backup's own restore
    uses (backups.databases.native_restore)."""
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


def _verdict(ratio: float) -> str:
    verdict = "ok" if ratio <= TIME_BUDGET else "OVER"
    return f"time {ratio:.2f}x ({verdict} <= {TIME_BUDGET})"


def _one_size(
    admin_url: str, target_mib: int, rounds: int, restore_rounds: int
) -> list[dict]:
    """Baseline and backup in turns, ``rounds`` times each (the fastest of
    each side counts: the least disturbed by whatever else the machine
    runs); restores likewise, each into a fresh empty database."""
    import psycopg

    name = f"kreo_bench_backup_{uuid.uuid4().hex[:8]}"
    scratch: list[str] = []

    def fresh() -> str:
        db = f"{name}_r{len(scratch)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        scratch.append(db)
        return f"{base}/{db}"

    def drop(url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'
            )

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    database_url = f"{base}/{name}"
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kreo-bench-backup-") as var_dir,
            tempfile.TemporaryDirectory(prefix="kreo-bench-dump-") as dump_dir,
        ):
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
            dumps, copy1s, fulls = [], [], []
            for _ in range(rounds):
                dumps.append(_plain_pg_dump(database_url))
                copy1s.append(_child("copy1", env))
                fulls.append(_child("backup", env))
            plain, copy1 = min(dumps), min(copy1s, key=lambda r: r["seconds"])
            full = min(fulls, key=lambda r: r["seconds"])
            rows = [
                _row(
                    size, f"pg_dump -Fc > /dev/null (best of {rounds})", plain, "", ""
                ),
                _row(
                    size,
                    "copy 1: pg_dump -Fc + KREOSEAL + SHA-256 to disk",
                    copy1["seconds"],
                    max(r["peak_rss_mib"] for r in copy1s),
                    f"time {copy1['seconds'] / plain:.2f}x pg_dump's",
                ),
                _row(
                    size,
                    "backup_create: copies 1+2, checksums, manifest",
                    full["seconds"],
                    max(r["peak_rss_mib"] for r in fulls),
                    _verdict(full["seconds"] / plain) + " of pg_dump's",
                ),
            ]
            dump = Path(dump_dir) / "plain.pgdump"
            _plain_dump_file(database_url, dump)
            plain_restores, restores = [], []
            for _ in range(restore_rounds):
                target = fresh()
                plain_restores.append(_plain_pg_restore(dump, target))
                drop(target)
                target = fresh()
                restores.append(
                    _child("restore", env, str(full["set_id"]), "1", target)
                )
                drop(target)
            plain_restore = min(plain_restores)
            restore = min(restores, key=lambda r: r["seconds"])
            rows += [
                _row(
                    size,
                    "pg_restore --single-transaction of pg_dump -Fc "
                    f"(empty db, best of {restore_rounds})",
                    plain_restore,
                    "",
                    "",
                ),
                _row(
                    size,
                    "restore copy 1 into an empty database (pg_restore)",
                    restore["seconds"],
                    max(r["peak_rss_mib"] for r in restores),
                    (
                        "checksums equal"
                        if all(r["equal"] for r in restores)
                        else "CHECKSUMS DIFFER"
                    )
                    + "; "
                    + _verdict(restore["seconds"] / plain_restore)
                    + " of pg_restore's",
                ),
            ]
            if os.environ.get("BENCH_BACKUP_COPY2", "1") == "1":
                out = _child("restore", env, str(full["set_id"]), "2", fresh())
                rows.append(
                    _row(
                        size,
                        "restore copy 2 into an empty database (logical JSONL)",
                        out["seconds"],
                        out["peak_rss_mib"],
                        "checksums equal" if out["equal"] else "CHECKSUMS DIFFER",
                    )
                )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for db in [name, *scratch]:
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
    rounds = int(os.environ.get("BENCH_BACKUP_ROUNDS", "2"))
    restore_rounds = int(os.environ.get("BENCH_BACKUP_RESTORE_ROUNDS", "3"))
    admin_url = services.ensure_postgres()
    rows = []
    for size in sizes:
        rows += _one_size(admin_url, size, rounds, restore_rounds)
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
