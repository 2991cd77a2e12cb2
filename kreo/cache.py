"""The embedded default's cache: shared by every process, atomic add and incr.

``make run`` starts several gunicorn workers and a Celery worker. Rate limits,
sign-in failure counts, the lockout counter, the CAPTCHA-needed state and the
single-use markers (``cache.add``) must be the same whichever process answers,
so the embedded default cannot use Django's per-process LocMemCache.
Django's FileBasedCache and DatabaseCache are shared but their ``incr`` is a
read-then-write (django-ratelimit's check calls them "not atomic", and
``bench/bench_cache.py`` counts the increments they lose).

``SharedCache`` is diskcache's ``DjangoCache``: SQLite files under
``var/cache/`` in WAL mode, every write in a ``BEGIN IMMEDIATE`` transaction,
so ``add()`` (set only if absent or expired), ``incr()`` and ``set()`` are
atomic across processes, and reads do not wait for writers. Two additions:

- Values are plain data. diskcache stores ints, floats, short strings and
  bytes natively and pickles anything else; reading a pickle here refuses
  every global (classes, functions) except a few plain value types, so a file
  planted in the cache folder cannot run code (CVE-2025-69872, unfixed in
  diskcache 5.6.3).
- The folder is created with its parents, owner-only (0700).
- Every operation fails fast. diskcache retries a write that cannot start
  without end (a locked, read-only or full ``var/cache`` hangs the request)
  and its sharded front swallows errors (a counter read answers 0, so a
  lockout would silently lapse). Here a write is retried for ``FAIL_AFTER``
  seconds (default 1), then, like any SQLite or OS error, raises
  ``CacheUnavailable``.

Production's Redis backends (``RedisCache``, ``RedisCounterCache``) are the
Django and django-redis ones with the same translation: a refused, reset or
timed-out connection raises ``CacheUnavailable``; after a timeout the process
does not ask a hung Redis again for ``HUNG_PAUSE_SECONDS``. ``accounts.middleware.
CacheOutageMiddleware`` turns it into one 503 for every view that needs the
counters; the next request tries the cache again, so service comes back by
itself when the cache does.
"""

from __future__ import annotations

import functools
import io
import os
import pickle  # nosec B403 - restricted unpickler below refuses globals
import sqlite3
import time

import redis.exceptions
from diskcache import Disk, DjangoCache, Timeout
from diskcache.core import MODE_PICKLE
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django_redis.cache import RedisCache as DjangoRedisCounterCache
from django_redis.exceptions import ConnectionInterrupted

# The only globals a cached value may name: plain value types.
ALLOWED_GLOBALS = frozenset(
    {
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("uuid", "UUID"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)


class CacheUnavailable(Exception):
    """The shared cache did not answer: counters cannot be read or written."""


class CacheValueRefused(pickle.UnpicklingError):
    """A cached pickle named a global outside ``ALLOWED_GLOBALS``."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise CacheValueRefused(f"cache value refers to {module}.{name}: refused")


def _plain_load(data: bytes):
    return _PlainUnpickler(io.BytesIO(data)).load()  # nosec B301 - no globals


class PlainDataDisk(Disk):
    """diskcache's Disk, reading pickles with the restricted unpickler."""

    def get(self, key, raw):
        if raw:
            return super().get(key, raw)
        return _plain_load(bytes(key))

    def fetch(self, mode, filename, value, read):
        if mode != MODE_PICKLE:
            return super().fetch(mode, filename, value, read)
        if value is None:
            with open(os.path.join(self._directory, filename), "rb") as reader:
                return _plain_load(reader.read())
        return _plain_load(bytes(value) if isinstance(value, sqlite3.Binary) else value)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLite's "database is locked" / "busy": another process holds the file."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SharedCache(DjangoCache):
    """Django cache backend for the embedded default (see the module docstring).

    Settings: ``LOCATION`` (a folder), ``KEY_PREFIX``, ``FAIL_AFTER`` (seconds
    a write waits for the files before ``CacheUnavailable``; default 1), and
    diskcache's ``SHARDS`` (SQLite files; default 1) and ``DATABASE_TIMEOUT``.
    """

    def __init__(self, directory, params):
        self._fail_after = float(params.get("FAIL_AFTER", 1.0))
        params = {
            "SHARDS": 1,
            **params,
            "OPTIONS": {**params.get("OPTIONS", {}), "disk": PlainDataDisk},
        }
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            super().__init__(directory, params)
        except (OSError, sqlite3.Error, Timeout) as exc:
            raise CacheUnavailable(f"cache folder {directory}: {exc}") from exc

    def close(self, **kwargs):
        """Keep this process's SQLite connections from request to request.

        Django closes every cache when a request finishes. For diskcache that
        closes the SQLite file, and the last close of a WAL database
        checkpoints it (an fsync); the next request opens it again. Measured
        by bench/bench_limits.py, which counts every page on this cache:
        ~20 ms a request on a busy disk. Connections are per thread, and
        diskcache opens new ones after a fork (it checks the pid), as
        django-redis keeps its pool open.
        """

    def _shard(self, key):
        # diskcache 5.6's FanoutCache catches Timeout and answers a default;
        # its shards (plain diskcache Cache objects) raise it.
        fanout = self._cache
        return fanout._shards[fanout._hash(key) % fanout._count]

    def _run(self, operation, *args):
        """Call ``operation`` without diskcache's endless retry, within budget."""
        deadline = time.monotonic() + self._fail_after
        while True:
            try:
                return operation(*args, retry=False)
            except (Timeout, sqlite3.OperationalError) as exc:
                # A busy file (another process's write) is waited for, as
                # diskcache's Timeout is; any other SQLite error is an outage.
                busy = isinstance(exc, Timeout) or _busy(exc)
                if not busy:
                    raise CacheUnavailable(f"cache {self.directory}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise CacheUnavailable(
                        f"cache {self.directory} not writable within "
                        f"{self._fail_after:g} s"
                    ) from None
                time.sleep(0.01)
            except (OSError, sqlite3.Error) as exc:
                raise CacheUnavailable(f"cache {self.directory}: {exc}") from exc

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, **kwargs):
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._run(self._shard(key).add, key, value, timeout)

    def get(self, key, default=None, version=None, **kwargs):
        key = self.make_key(key, version=version)
        return self._run(self._shard(key).get, key, default)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None, **kwargs):
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._run(self._shard(key).set, key, value, timeout)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None, **kwargs):
        key = self.make_key(key, version=version)
        timeout = self.get_backend_timeout(timeout=timeout)
        return self._run(self._shard(key).touch, key, timeout)

    def delete(self, key, version=None, **kwargs):
        key = self.make_key(key, version=version)
        return self._run(self._shard(key).delete, key)

    def incr(self, key, delta=1, version=None, default=None, **kwargs):
        key = self.make_key(key, version=version)
        try:
            return self._run(self._shard(key).incr, key, delta, default)
        except KeyError:
            raise ValueError(f"Key {key!r} not found") from None

    def decr(self, key, delta=1, version=None, default=None, **kwargs):
        return self.incr(key, -delta, version, default)

    def has_key(self, key, version=None):
        key = self.make_key(key, version=version)
        shard = self._shard(key)
        return self._run(lambda retry: key in shard)


# Errors that mean "Redis did not answer" (refused, reset, timed out, still
# loading its data); django-redis wraps them in ConnectionInterrupted.
REDIS_OUTAGE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionInterrupted,
)
GUARDED_METHODS = (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "set_many",
    "delete_many",
    "has_key",
    "incr",
    "decr",
    "get_or_set",
    "clear",
    "ttl",
    "expire",
    "lock",
)


# After a call that timed out (a hung Redis, not a refused connection), the
# process does not ask again for this long: each sign-in attempt would
# otherwise hold a gunicorn worker for the whole timeout, and a burst of them
# would leave none for the pages that do not need Redis.
HUNG_PAUSE_SECONDS = 2.0


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, redis.exceptions.TimeoutError) or isinstance(
        exc.__cause__, redis.exceptions.TimeoutError
    )


def _translated(method):
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if time.monotonic() < getattr(self, "_kreo_paused_until", 0.0):
            raise CacheUnavailable("redis: timed out just now; not asked again yet")
        try:
            return method(self, *args, **kwargs)
        except REDIS_OUTAGE as exc:
            if _timed_out(exc):
                self._kreo_paused_until = time.monotonic() + HUNG_PAUSE_SECONDS
            raise CacheUnavailable(f"redis: {exc}") from exc

    return guarded


def _translating(cls):
    """Make every public cache method of ``cls`` raise ``CacheUnavailable``."""
    for name in GUARDED_METHODS:
        if hasattr(cls, name):
            setattr(cls, name, _translated(getattr(cls, name)))
    return cls


@_translating
class RedisCache(DjangoRedisCache):
    """Django's Redis backend (``default`` in production), outages translated."""


@_translating
class RedisCounterCache(DjangoRedisCounterCache):
    """django-redis (``ratelimit`` in production), outages translated."""
