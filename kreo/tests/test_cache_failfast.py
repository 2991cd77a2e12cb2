"""The embedded default's cache fails fast instead of hanging or answering 0.

diskcache retries a write that cannot start without end, and its sharded
front answers a default when a shard times out (a failure counter would read
0). ``kreo.cache.SharedCache`` gives up after ``FAIL_AFTER`` seconds with
``CacheUnavailable``, for writes and for reads.
"""

import sqlite3
import threading
import time

import pytest

from kreo.cache import CacheUnavailable, SharedCache


def _cache(folder, fail_after=0.5):
    return SharedCache(str(folder), {"FAIL_AFTER": fail_after})


@pytest.fixture
def locked(tmp_path):
    """A cache whose SQLite file another process holds a write lock on."""
    cache = _cache(tmp_path / "c")
    cache.add("failures", 0, 60)
    cache.incr("failures")
    holder = sqlite3.connect(tmp_path / "c" / "000" / "cache.db", timeout=0)
    holder.isolation_level = None
    holder.execute("BEGIN IMMEDIATE")
    yield cache
    holder.execute("ROLLBACK")
    holder.close()


@pytest.mark.parametrize(
    "write",
    [
        lambda c: c.add("new", 0, 60),
        lambda c: c.incr("failures"),
        lambda c: c.set("marker", 1, 60),
        lambda c: c.delete("failures"),
        lambda c: c.touch("failures", 60),
    ],
    ids=["add", "incr", "set", "delete", "touch"],
)
def test_a_locked_file_fails_each_write_within_its_budget(locked, write):
    """Each write on a locked cache raises CacheUnavailable after about
    FAIL_AFTER seconds (diskcache itself would retry for ever)."""
    started = time.monotonic()
    with pytest.raises(CacheUnavailable):
        write(locked)
    assert 0.4 < time.monotonic() - started < 3


def test_reads_still_answer_and_writes_resume_after_the_lock(tmp_path):
    """While a writer holds the lock, a read still gives the true count (WAL);
    once it lets go, the next increment counts from where it was."""
    cache = _cache(tmp_path / "c", fail_after=5)
    cache.add("failures", 0, 60)
    cache.incr("failures")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holder = sqlite3.connect(tmp_path / "c" / "000" / "cache.db", timeout=0)
        holder.isolation_level = None
        holder.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(10)
        holder.execute("ROLLBACK")
        holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    assert cache.get("failures") == 1
    threading.Timer(0.5, release.set).start()
    assert cache.incr("failures") == 2  # waited for the lock, within budget
    thread.join(10)


def test_a_damaged_cache_file_is_unavailable_not_an_error(tmp_path):
    """A cache file that is not SQLite raises CacheUnavailable (a 503 for the
    views that need it), not a database error (a 500)."""
    folder = tmp_path / "c" / "000"
    folder.mkdir(parents=True)
    (folder / "cache.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheUnavailable):
        _cache(tmp_path / "c").get("failures")
