"""Detection rules (monitoring/rules.py) over a recorded audit stream.

Budget (issue #14): the rules process at least 5,000 audit events/s. A child
process on a fresh database (the embedded SQLite default, and a new
database on the local PostgreSQL; BENCH_RULES_DATABASES chooses) is filled with
BENCH_RULES_EVENTS events (default 60,000) of ordinary traffic over a few
minutes (page views, downloads by 300 users, sign-ins, typos from 500 IPs)
with two attacks in it (credential stuffing, a mass download). Measured:

- fetch: reading the events in the rules' batches and nothing else (the
  floor any reader pays, for the ratio);
- rules: the rule functions alone over the events in memory;
- rules_run: the whole beat task (read after the cursor, read the window
  before the first batch, run the rules, write the alerts and the cursor).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import servers as bench_servers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
TITLE = "detection rules over the audit stream: events per second"
FLOOR = 5000


def _env(var_dir: str, database_url: str = "") -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KREO_", "MONITORING_", "AUDIT_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env = {
        **keep,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
        "KREO_VAR_DIR": var_dir,
        "MONITORING_RULES_SETTLE_SECONDS": "0",
        "PYTHONPATH": str(ROOT),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def _measure_on(database: str, total: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-rules-") as folder:
        if database == "sqlite":
            return bench_servers.run_child(
                "bench.bench_rules", "measure", _env(folder), str(total)
            )
        import psycopg
        import services  # scripts/services.py

        admin_url = services.ensure_postgres()
        name = f"kreo_bench_rules_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = admin_url.rsplit("/", 1)[0] + f"/{name}"
            return bench_servers.run_child(
                "bench.bench_rules", "measure", _env(folder, url), str(total)
            )
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(options) -> list[dict]:
    total = int(os.environ.get("BENCH_RULES_EVENTS", "60000"))
    databases = os.environ.get("BENCH_RULES_DATABASES", "sqlite,postgres")
    rows = []
    for database in databases.split(","):
        rows += _rows(_measure_on(database.strip(), total))
    return rows


def _rows(out: dict) -> list[dict]:
    fetch_rate = out["events"] / out["fetch_s"]
    rows = []
    for case in ("fetch", "rules", "rules_run"):
        rate = out["events"] / out[f"{case}_s"]
        rows.append(
            {
                "case": case,
                "database": out["database"],
                "events": out["events"],
                "seconds": round(out[f"{case}_s"], 3),
                "events_per_s": round(rate),
                "vs_fetch": round(rate / fetch_rate, 3),
                "verdict": "" if case == "fetch" else "ok" if rate >= FLOOR else "OVER",
            }
        )
    rows[-1]["alerts"] = out["alerts"]
    for row in rows[:-1]:
        row["alerts"] = ""
    return rows


def _fill(total: int) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEvent

    start = timezone.now() - timedelta(minutes=10)
    step = timedelta(seconds=300) / total
    rows = []
    for i in range(total):
        at = start + step * i
        kind = i % 20
        user = i % 300
        ip = f"10.{(i // 7) % 250}.{i % 2}.{i % 200 + 1}"
        event = {
            "occurred_at": at,
            "event_type": "page.view",
            "outcome": "success",
            "actor_id": user + 1,
            "actor_label": f"user{user}@example.test",
            "source_ip": ip,
            "path": f"/projects/{user}/",
        }
        if kind < 5:
            event.update(event_type="file.download", target_id=str(i))
        elif kind < 9:
            event.update(event_type="auth.login.success")
        elif kind == 9:
            event.update(
                event_type="auth.login.failure",
                outcome="failure",
                actor_id=None,
                details={"email": f"user{(i * 7) % 1000}@example.test"},
            )
        rows.append(AuditEvent(**event))
    # Two attacks in the middle: stuffing from one IP, a mass download.
    middle = start + timedelta(seconds=150)
    for n in range(40):
        rows.append(
            AuditEvent(
                occurred_at=middle + timedelta(seconds=n),
                event_type="auth.login.failure",
                outcome="failure",
                source_ip="203.0.113.66",
                details={"email": f"leaked{n % 8}@example.test"},
            )
        )
    for n in range(60):
        rows.append(
            AuditEvent(
                occurred_at=middle + timedelta(milliseconds=500 * n),
                event_type="file.download",
                outcome="success",
                actor_id=9999,
                actor_label="thief@example.test",
                target_id=str(n),
            )
        )
    AuditEvent.objects.bulk_create(rows, batch_size=5000)


def _measure(total: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from audit import selectors as audit_selectors
    from monitoring import rules, services
    from monitoring.models import Alert, RuleCursor

    call_command("migrate", verbosity=0)
    _fill(total)
    batch = settings.MONITORING_RULES_BATCH

    started = time.perf_counter()
    after, fetched = 0, []
    while True:
        rows = audit_selectors.events_after(after_id=after, limit=batch)
        if not rows:
            break
        fetched += rows
        after = rows[-1][0]
    fetch_s = time.perf_counter() - started

    events = [rules.Event.from_row(row) for row in fetched]
    limits = rules.Limits.from_settings()
    started = time.perf_counter()
    hits = rules.evaluate(events, limits)
    rules_s = time.perf_counter() - started

    # From the first event: the events are older than a first run's look-back.
    RuleCursor.objects.create(name="rules", last_event_id=0)
    started = time.perf_counter()
    summary = services.rules_run(max_batches=10**6)
    run_s = time.perf_counter() - started
    if summary["events"] != len(fetched):
        raise SystemExit(f"rules_run read {summary['events']} of {len(fetched)}")
    return {
        "database": connection.vendor,
        "events": len(fetched),
        "fetch_s": fetch_s,
        "rules_s": rules_s,
        "rules_run_s": run_s,
        "hits": len(hits),
        "read": summary["events"],
        "alerts": ", ".join(sorted(Alert.objects.values_list("rule", flat=True))),
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        sys.stdout.write(json.dumps(_measure(int(sys.argv[2]))) + "\n")
