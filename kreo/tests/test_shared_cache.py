"""The embedded default's shared cache (kreo/cache.py) and the check that
refuses a per-process one (kreo/checks.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from diskcache import Cache

from kreo.cache import CacheValueRefused, SharedCache
from kreo.checks import shared_cache_check

ROOT = Path(__file__).resolve().parents[2]

RACER = """
import sys, time
from kreo.cache import SharedCache
folder, me, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
cache = SharedCache(folder, {"KEY_PREFIX": "race"})
time.sleep(max(0.0, go - time.time()))
for _ in range(200):
    cache.add("counter", 0, 600)
    cache.incr("counter")
won = sum(bool(cache.add(f"marker:{i}", me, 600)) for i in range(100))
print(won)
"""


def test_add_and_incr_are_atomic_across_processes(tmp_path):
    """Four processes each count 200 failures on one key and race to add the
    same 100 single-use markers: no increment is lost, each marker has one
    winner."""
    go = time.time() + 2
    racers = [
        subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", RACER, str(tmp_path), str(me), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for me in range(4)
    ]
    won = [int(p.communicate(timeout=120)[0]) for p in racers]
    assert all(p.returncode == 0 for p in racers)
    cache = SharedCache(str(tmp_path), {"KEY_PREFIX": "race"})
    assert cache.get("counter") == 800
    assert sum(won) == 100


def test_expired_counter_starts_again(tmp_path):
    """A counter past its window is gone: add() starts it again from zero."""
    cache = SharedCache(str(tmp_path), {})
    assert cache.add("fails", 0, 1)
    assert cache.incr("fails") == 1
    assert not cache.add("fails", 0, 1)
    time.sleep(1.1)
    assert cache.get("fails") is None
    assert cache.add("fails", 0, 1)
    assert cache.incr("fails") == 1


def test_a_planted_pickle_does_not_run(tmp_path):
    """Someone who can write the cache folder plants a pickle that would run
    code when read (CVE-2025-69872): reading it is refused, nothing runs."""
    proof = tmp_path / "ran"
    folder = tmp_path / "cache"
    cache = SharedCache(str(folder), {"KEY_PREFIX": "k"})

    class Payload:
        def __reduce__(self):
            return (Path.touch, (proof,))

    # Written with diskcache's own (pickling) Disk into the same SQLite file.
    raw = Cache(str(folder / "000"))
    raw.set(cache.make_key("counter"), Payload())
    raw.close()
    try:
        cache.get("counter")
    except CacheValueRefused as refused:
        assert "pathlib" in str(refused)
    else:
        raise AssertionError("the planted pickle was read")
    assert not proof.exists()
    # Plain data still round-trips.
    cache.set("plain", {"when": [1, 2.5, "x", None, True]}, 60)
    assert cache.get("plain") == {"when": [1, 2.5, "x", None, True]}


def test_check_refuses_a_per_process_cache(settings):
    """kreo.E010 names every counter cache that processes would not share."""
    assert shared_cache_check() == []
    settings.CACHES = {
        **settings.CACHES,
        "ratelimit": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache"},
    }
    errors = shared_cache_check()
    assert [e.id for e in errors] == ["kreo.E010", "kreo.E010"]
    assert "'default'" in errors[0].msg and "DatabaseCache" in errors[0].msg
    assert "'ratelimit'" in errors[1].msg and "LocMemCache" in errors[1].msg
