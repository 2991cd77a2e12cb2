"""The audit store on PostgreSQL: write rate with concurrent writers, sealing,
audit_verify rate, and archival of N old events to a real S3 server (moto)
with the archiving process's peak memory.

Runs in a fresh PostgreSQL database created and dropped here, and a moto S3
server started here. BENCH_AUDIT_EVENTS sets N (default 100,000);
BENCH_AUDIT_WRITERS the writer processes (default 4), each writing for
BENCH_AUDIT_SECONDS (default 5). BENCH_AUDIT_OUTAGE=1 cuts the connection
to S3 after the second archive (of BENCH_AUDIT_ARCHIVE_EVENTS events each)
and runs the archival again. Worker processes are this module run as
``python -m bench.bench_audit_store <role>``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

from bench import servers as bench_servers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

TITLE = "audit store on PostgreSQL: writes, seals, verify, archive to S3"


def _env(database_url: str, s3_url: str, bucket: str, var_dir: str) -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KREO_", "AWS_", "AUDIT_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return {
        **keep,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
        "DATABASE_URL": database_url,
        "KREO_VAR_DIR": var_dir,
        "AUDIT_ARCHIVE_S3_BUCKET": bucket,
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL": s3_url,
        "AUDIT_SEAL_DELAY_SECONDS": "0",
        "AUDIT_ARCHIVE_MAX_EVENTS": os.environ.get(
            "BENCH_AUDIT_ARCHIVE_EVENTS", "250000"
        ),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105  # nosec B105
        "AWS_DEFAULT_REGION": "eu-west-2",
        "PYTHONPATH": str(ROOT),
    }


def _child(role: str, env: dict, *args: str) -> dict:
    return bench_servers.run_child("bench.bench_audit_store", role, env, *args)


def run(options=None) -> list[dict]:
    import services  # scripts/services.py

    events = int(os.environ.get("BENCH_AUDIT_EVENTS", "100000"))
    verify_workers = min(4, os.cpu_count() or 1)  # AUDIT_VERIFY_WORKERS' default
    floors: dict[str, float] = {}
    writers = int(os.environ.get("BENCH_AUDIT_WRITERS", "4"))
    seconds = float(os.environ.get("BENCH_AUDIT_SECONDS", "5"))
    admin_url = services.ensure_postgres()
    name = f"kreo_bench_audit_{uuid.uuid4().hex[:8]}"
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    moto, s3_url = services.start_moto()
    rows = []
    try:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kreo-bench-audit-") as var_dir:
            env = _env(database_url, s3_url, "kreo-bench-audit", var_dir)
            subprocess.run(  # noqa: S603
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env=env,
                check=True,
            )
            made = _child("fill", env, str(events))
            rows.append(
                {
                    "measure": "bulk insert of old events (setup)",
                    "events": events,
                    "seconds": round(made["seconds"], 2),
                    "events_per_s": round(events / made["seconds"]),
                    "of_floor": "",
                    "peak_rss_mib": "",
                }
            )
            for role, label in (
                ("write", "audit_record, one INSERT each (no request context)"),
                ("write-buffered", "audit_record, group commit (buffered())"),
                ("write-floor", "floor: raw psycopg INSERT, 200 rows a commit"),
            ):
                total, took = _writers(role, writers, seconds, env)
                rows.append(
                    {
                        "measure": f"{label}, {writers} writers",
                        "events": total,
                        "seconds": round(took, 2),
                        "events_per_s": round(total / took),
                        "of_floor": "",
                        "peak_rss_mib": "",
                    }
                )
            for role, label in (
                ("seal", "audit_seal (hash chain + Ed25519)"),
                ("fetch-columns", "floor: raw fetch of the event columns as stored"),
                ("fetch-floor", "floor: raw fetch with verify's own query"),
                ("verify-1", "audit_verify, hot store, one process"),
                ("verify", f"audit_verify, hot store, {verify_workers} processes"),
                ("archive", "audit_archive to S3 (gzip, sealed, read back, purge)"),
                ("verify", "audit_verify, archives + hot"),
            ):
                out = _child(role, env)
                if "hot_after_cut" in out:
                    label += (
                        f" [S3 cut after 2 archives: {out['hot_after_cut']} still"
                        f" hot; resumed: {out['purged_on_resume']} purged]"
                    )
                rate = out["events"] / out["seconds"]
                floors[role] = rate
                rows.append(
                    {
                        "measure": label,
                        "events": out["events"],
                        "seconds": round(out["seconds"], 2),
                        "events_per_s": round(rate),
                        # Issue #13's budget: verify >= 0.8 of the fetch floor:
                        # of the rows as stored, and of verify's own query.
                        "of_floor": (
                            f"{rate / floors['fetch-columns']:.2f} / "
                            f"{rate / floors['fetch-floor']:.2f}"
                            if role.startswith("verify")
                            else ""
                        ),
                        "peak_rss_mib": round(out["peak_rss_mib"], 1),
                    }
                )
    finally:
        moto.terminate()
        moto.wait(10)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return rows


def _writers(role: str, writers: int, seconds: float, env: dict) -> tuple:
    """Events written by ``writers`` processes in ``seconds``, and the longest
    time one took (until its last event was committed)."""
    procs = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "bench.bench_audit_store", role, str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(writers)
    ]
    written = [json.loads(p.communicate()[0].splitlines()[-1]) for p in procs]
    total = sum(w["events"] for w in written)
    return total, max(w.get("seconds", seconds) for w in written)


def _write_floor(seconds: float) -> dict:
    """Raw INSERTs of ready rows, 200 a commit: what the database takes."""
    from django.db import connection, transaction

    started = time.perf_counter()
    until = started + seconds
    count = 0
    sql = (
        "INSERT INTO bench_floor_event (occurred_at, event_type, outcome, "
        "actor_label, session_hash, user_agent, device_id, server_host, method, "
        "path, target_type, target_id, release, commit, error_code, "
        "error_description, correlation_id, details, content_hash, spooled, "
        "mac_key_id, mac) VALUES (now(), 'file.download', 'success', "
        "'bench@example.test', '', '', '', 'bench', '', '', '', '', '', '', '', "
        "'', '', %s, %s, false, '', '')"
    )
    while time.perf_counter() < until:
        with transaction.atomic(), connection.cursor() as cursor:
            # As the buffered path commits (AUDIT_ASYNC_COMMIT).
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            cursor.executemany(
                sql, [(f'{{"n": {count + i}}}', "0" * 64) for i in range(200)]
            )
        count += 200
    return {"events": count, "seconds": time.perf_counter() - started}


def _fetch_floor() -> dict:
    """Fetch every event as raw tuples with verification's own query
    (``audit.verify.hot_sql``) and server-side cursor, and do nothing else."""
    from django.db import connection, transaction

    from audit.verify import HOT_CHUNK, hot_sql

    count = 0
    connection.ensure_connection()
    with transaction.atomic(), connection.connection.cursor(name="floor") as cursor:
        cursor.itersize = HOT_CHUNK
        cursor.execute(hot_sql(), [0])
        for _ in cursor:
            count += 1
    return {"events": count}


def _fetch_columns() -> dict:
    """Fetch every event's columns as they are stored (the floor before
    verification read its values as text), raw tuples, server-side cursor."""
    from django.db import connection, transaction

    from audit import serialise

    count = 0
    columns = ", ".join(f'"{c}"' for c in serialise.COLUMNS)
    connection.ensure_connection()
    with transaction.atomic(), connection.connection.cursor(name="floor") as cursor:
        cursor.itersize = 20000
        cursor.execute(f"SELECT {columns} FROM audit_auditevent ORDER BY id")  # noqa: S608  # nosec B608 - fixed names
        for _ in cursor:
            count += 1
    return {"events": count}


def _worker(role: str, args: list[str]) -> dict:
    import django

    django.setup()
    from django.conf import settings

    from audit import archive, chain, keys
    from audit.buffer import buffered
    from audit.models import AuditEvent
    from audit.services import audit_record, audit_seal
    from audit.verify import audit_verify

    started = time.perf_counter()
    if role in ("write", "write-buffered"):
        until = started + float(args[0])
        count = 0
        with buffered() if role == "write-buffered" else nullcontext():
            while time.perf_counter() < until:
                audit_record(
                    event_type="file.download",
                    actor_label="bench@example.test",
                    details={"n": count},
                )
                count += 1
        # The block's end wrote the last batch: counted until committed.
        return {"events": count, "seconds": time.perf_counter() - started}
    if role == "write-floor":
        return _write_floor(float(args[0]))
    if role == "fill":
        import boto3

        # First: the seal anchors (audit/anchors.py) go to this bucket too.
        boto3.client(
            "s3",
            endpoint_url=settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL,
            region_name="eu-west-2",
        ).create_bucket(
            Bucket=settings.AUDIT_ARCHIVE_S3_BUCKET,
            CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        )
        from datetime import timedelta

        from django.db import connection
        from django.utils import timezone

        # The write floor's table (made once, here: writers race on CREATE),
        # like the events' (columns, defaults, indexes): its rows have no
        # valid hash and must not reach the trail being verified.
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE bench_floor_event (LIKE audit_auditevent INCLUDING ALL)"
            )
        total = int(args[0])
        start = timezone.now() - timedelta(days=60)
        batch = []
        for i in range(total):
            event = AuditEvent(
                occurred_at=start + timedelta(milliseconds=i),
                event_type="file.download",
                outcome="success",
                actor_label=f"user{i % 500}@example.test",
                source_ip="198.51.100.7",
                user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
                method="GET",
                path=f"/projects/{i % 997}/files/{i}/download/",
                server_host="bench",
                release="bench",
                details={"i": i, "size": 4096},
            )
            chain.sign_event(event, *keys.event_key_current())
            batch.append(event)
            if len(batch) == 5000:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
        return {"events": total, "seconds": time.perf_counter() - started}
    if role == "seal":
        n = audit_seal(max_batches=10**6)
        result = {"events": n}
    elif role == "fetch-floor":
        result = _fetch_floor()
    elif role == "fetch-columns":
        result = _fetch_columns()
    elif role in ("verify", "verify-1"):
        report = audit_verify(workers=1 if role == "verify-1" else None)
        if not report.ok:
            raise SystemExit(f"verify found problems: {report.problems[:3]}")
        result = {"events": report.events}
    elif role == "archive":
        if os.environ.get("BENCH_AUDIT_OUTAGE"):
            result = _archive_with_outage(archive, AuditEvent)
        else:
            summary = archive.run()
            result = {"events": summary["purged"]}
    else:
        raise SystemExit(f"unknown role {role}")
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _archive_with_outage(archive, event_model) -> dict:
    """Cut the S3 connection after the second archive, then run again."""
    from urllib.parse import urlparse

    from django.conf import settings

    from audit.tests.s3proxy import Relay

    target = urlparse(settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL)
    relay = Relay(target.hostname, target.port).start()
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = relay.url
    before = event_model.objects.count()
    done = []

    def cut(item):
        done.append(item.pk)
        if len(done) == 2:
            relay.stop()

    try:
        archive.run(progress=cut)
    except Exception as exc:  # noqa: BLE001 - the outage is the point
        failure = type(exc).__name__
    else:
        raise SystemExit("the outage did not stop the archival")
    after_cut = event_model.objects.count()
    relay.start()
    summary = archive.run()
    relay.stop()
    sys.stderr.write(
        f"outage: {before} hot before, {after_cut} hot after the cut "
        f"({failure}), {summary['purged']} purged on resume, "
        f"{event_model.objects.count()} hot at the end\n"
    )
    return {
        "events": before - event_model.objects.count(),
        "hot_after_cut": after_cut,
        "purged_on_resume": summary["purged"],
    }


def _print_table(rows: list[dict]) -> None:
    from bench.run import table

    sys.stdout.write(table(rows) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.stdout.write(json.dumps(_worker(sys.argv[1], sys.argv[2:])) + "\n")
    else:
        _print_table(run())
