"""Which cache can hold counters shared by several processes on the embedded default.

Each candidate Django cache backend, in fresh child processes configured with
only that cache:

- latency (one process, median and p99 in microseconds) of the operations the
  counters use: ``add`` of a new key, ``incr`` of an existing one, ``get``,
  and ``get`` right after ``close()`` (Django closes every cache at the end of
  each request, so the first access of a request reconnects);
- lost increments: BENCH_CACHE_PROCS processes (default 4) each run
  BENCH_CACHE_INCRS (default 500) times what the lockout counter does
  (``add(key, 0)`` then ``incr(key)``) on one shared key; the final count
  should be procs x incrs;
- double adds: the same processes each ``add`` the same BENCH_CACHE_ADDS
  (default 300) new keys, as a single-use marker does; every key should have
  exactly one winner.

Candidates: Django's LocMemCache (per process: not shared), FileBasedCache and
DatabaseCache (on SQLite; shared, incr not atomic), diskcache's DjangoCache
through ``kreo.cache.SharedCache`` with 1 and 8 SQLite shards, and
django-redis on a local Redis (production's backend) when one is reachable.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TITLE = "shared counters: cache backends' latency, lost increments, double adds"
REDIS = os.environ.get("BENCH_CACHE_REDIS", "redis://127.0.0.1:6379/13")
SAMPLES = 2000


def _backends(folder: Path, run: str) -> dict[str, dict]:
    # Django's own backends cull a third of their entries past 300 by default:
    # the counter would vanish rather than be miscounted.
    roomy = {"OPTIONS": {"MAX_ENTRIES": 1_000_000}}
    found = {
        "locmem (per process)": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            **roomy,
        },
        "filebased (Django)": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(folder / "filebased"),
            **roomy,
        },
        "database on SQLite (Django)": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "bench_cache_table",
            **roomy,
        },
        "diskcache, 1 shard (kreo)": {
            "BACKEND": "kreo.cache.SharedCache",
            "LOCATION": str(folder / "disk1"),
            "SHARDS": 1,
        },
        "diskcache, 8 shards (kreo)": {
            "BACKEND": "kreo.cache.SharedCache",
            "LOCATION": str(folder / "disk8"),
            "SHARDS": 8,
        },
    }
    host, port = REDIS.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        return found
    found["django-redis (production)"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS,
        "KEY_PREFIX": f"bench-cache-{run}",
    }
    return found


def _child(role: str, cache: dict, database: str, **extra) -> subprocess.Popen:
    env = {**os.environ, "BENCH_CACHE_ROLE": role}
    env["BENCH_CACHE_CONFIG"] = json.dumps({"cache": cache, "db": database, **extra})
    return subprocess.Popen(  # noqa: S603 - this file, fixed arguments
        [sys.executable, __file__],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=900)
    if process.returncode != 0:
        raise RuntimeError(f"cache benchmark child failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def run(options) -> list[dict]:
    procs = int(os.environ.get("BENCH_CACHE_PROCS", "4"))
    incrs = int(os.environ.get("BENCH_CACHE_INCRS", "500"))
    adds = int(os.environ.get("BENCH_CACHE_ADDS", "300"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="kreo-bench-cache-") as tmp:
        folder = Path(tmp)
        database = str(folder / "db.sqlite3")
        for name, cache in _backends(folder, str(os.getpid())).items():
            latency = _result(_child("latency", cache, database))
            go = time.time() + 3  # every racer set up before the first write
            racers = [
                _child("race", cache, database, incrs=incrs, adds=adds, me=i, go=go)
                for i in range(procs)
            ]
            raced = [_result(p) for p in racers]
            final = _result(_child("final", cache, database, adds=adds))
            won = sum(r["won"] for r in raced)
            rows.append(
                {
                    "backend": name,
                    **latency,
                    "incr final/expected": f"{final['count']}/{procs * incrs}",
                    "lost incr": procs * incrs - final["count"],
                    "incr errors": sum(r["errors"] for r in raced),
                    "adds won/keys": f"{won}/{adds}",
                    "race s": round(max(r["seconds"] for r in raced), 2),
                }
            )
    return rows


# Child process ---------------------------------------------------------------


def _setup(config: dict):
    import django
    from django.conf import settings

    settings.configure(
        CACHES={"default": config["cache"]},
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": config["db"],
                "OPTIONS": {"timeout": 20},
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
    from django.core.cache import cache

    if config["cache"]["BACKEND"].endswith("DatabaseCache"):
        from django.core.management import call_command

        call_command("createcachetable", verbosity=0)
    return cache


def _micro(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return (
        round(statistics.median(samples) * 1e6, 1),
        round(samples[int(len(samples) * 0.99) - 1] * 1e6, 1),
    )


def _latency(cache) -> dict:
    clock = time.perf_counter
    timings: dict[str, list[float]] = {"add": [], "incr": [], "get": [], "reopen": []}
    cache.add("lat:counter", 0, 600)
    for i in range(SAMPLES):
        started = clock()
        cache.add(f"lat:new:{i}", 0, 600)
        timings["add"].append(clock() - started)
        started = clock()
        cache.incr("lat:counter")
        timings["incr"].append(clock() - started)
        started = clock()
        cache.get("lat:counter")
        timings["get"].append(clock() - started)
    for _ in range(SAMPLES // 10):
        cache.close()
        started = clock()
        cache.get("lat:counter")
        timings["reopen"].append(clock() - started)
    row = {}
    for op, samples in timings.items():
        median, p99 = _micro(samples)
        row[f"{op} µs med/p99"] = f"{median}/{p99}"
    return row


def _race(cache, config: dict) -> dict:
    errors = won = 0
    time.sleep(max(0.0, config["go"] - time.time()))
    started = time.perf_counter()
    for _ in range(config["incrs"]):
        try:
            cache.add("race:counter", 0, 600)
            cache.incr("race:counter")
        except Exception:  # noqa: BLE001 - counted: "database is locked" and the like
            errors += 1
    for i in range(config["adds"]):
        try:
            won += bool(cache.add(f"race:marker:{i}", config["me"], 600))
        except Exception:  # noqa: BLE001 - counted like a lost add
            errors += 1
    return {"errors": errors, "won": won, "seconds": time.perf_counter() - started}


def _child_main() -> None:
    role = os.environ["BENCH_CACHE_ROLE"]
    config = json.loads(os.environ["BENCH_CACHE_CONFIG"])
    sys.path.insert(0, str(ROOT))
    cache = _setup(config)
    if role == "latency":
        result = _latency(cache)
    elif role == "race":
        result = _race(cache, config)
    else:
        result = {"count": cache.get("race:counter", 0)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    _child_main()
