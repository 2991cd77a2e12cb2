"""Threaded web workers share a bounded PostgreSQL pool.

gunicorn runs up to 256 threads a worker (deploy/gunicorn/gunicorn.conf.py);
with a connection per thread a busy site would exhaust PostgreSQL's
max_connections. Under production settings, a gunicorn worker (the config
sets KREO_DB_POOL) holds at most KREO_DB_POOL_SIZE connections however many
threads query at once, and every query still completes.
"""

import json
import os
import uuid

import pytest

from kreo.tests.test_settings import PRODUCTION_ENV, manage

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the pool is PostgreSQL's (the postgres leg runs this)",
)

THREADS = 30
POOL_SIZE = 4
SCRIPT = """
import json, threading, time
import psycopg
from django.conf import settings
from django.db import connection

db = settings.DATABASES["default"]
name = db["OPTIONS"]["application_name"]
dsn = dict(host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=db["USER"],
           password=db["PASSWORD"], application_name="pool-watcher", autocommit=True)
done, peak = [], [0]

def query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.3)")
    connection.close()  # what request_finished does: back to the pool
    done.append(1)

def watch(stop):
    with psycopg.connect(**dsn) as watcher:
        while not stop.is_set():
            count = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (name,),
            ).fetchone()[0]
            peak[0] = max(peak[0], count)
            time.sleep(0.02)

stop = threading.Event()
watcher = threading.Thread(target=watch, args=(stop,))
watcher.start()
threads = [threading.Thread(target=query) for _ in range(THREADS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
stop.set()
watcher.join()
print(json.dumps({"done": len(done), "peak": peak[0], "pool": "pool" in db["OPTIONS"]}))
"""


def _run(pool: bool) -> dict:
    name = f"kreo-pool-{uuid.uuid4().hex[:8]}"
    url = os.environ["DATABASE_URL"]
    url += ("&" if "?" in url else "?") + f"application_name={name}"
    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": url,
        "KREO_DB_POOL_SIZE": str(POOL_SIZE),
    }
    if pool:
        env["KREO_DB_POOL"] = "1"
    done = manage(
        "shell", "--no-imports", "-c", SCRIPT.replace("THREADS", str(THREADS)), env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_thirty_threads_share_at_most_the_pool_size_of_connections():
    """With the pool (gunicorn workers), 30 threads querying at once use at
    most KREO_DB_POOL_SIZE connections, and all 30 queries complete."""
    result = _run(pool=True)
    assert result == {"done": THREADS, "peak": result["peak"], "pool": True}
    assert 1 <= result["peak"] <= POOL_SIZE, result


def test_without_the_pool_each_thread_opens_its_own_connection():
    """The contrast (Celery's processes, no KREO_DB_POOL): one connection a
    thread, which is what the pool is there to bound."""
    result = _run(pool=False)
    assert result["done"] == THREADS
    assert result["pool"] is False
    assert result["peak"] > POOL_SIZE, result
