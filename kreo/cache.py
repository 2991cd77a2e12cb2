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
"""

from __future__ import annotations

import io
import os
import pickle  # nosec B403 - restricted unpickler below refuses globals
import sqlite3

from diskcache import Disk, DjangoCache
from diskcache.core import MODE_PICKLE

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


class SharedCache(DjangoCache):
    """Django cache backend for the embedded default (see the module docstring).

    Settings: ``LOCATION`` (a folder), ``KEY_PREFIX``, and diskcache's
    ``SHARDS`` (SQLite files; default 1) and ``DATABASE_TIMEOUT``.
    """

    def __init__(self, directory, params):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        params = {
            "SHARDS": 1,
            **params,
            "OPTIONS": {**params.get("OPTIONS", {}), "disk": PlainDataDisk},
        }
        super().__init__(directory, params)
