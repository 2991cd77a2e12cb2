"""The database side of a backup: a consistent snapshot, per-table checksums,
the native dump and its restore, for PostgreSQL and SQLite.

Everything reads through a second connection alias holding one snapshot, so
the native dump, the logical export, and the manifest's checksums describe the
same state of the database, whatever writes happen meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import fcntl
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess  # nosec B404
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import environ
from django.apps import apps
from django.db import connection, connections
from django.db.utils import load_backend
from django.utils.duration import duration_iso_string

CATALOGUE_APP = "backups"
ENGINE_MISMATCH = (
    "Copy {copy} of this set is a native {engine} dump; it restores only into "
    "{engine}. Use the logical copy (--copy 2) to change engines."
)
PG_DUMP_FAILED = "pg_dump failed: {error}"
PG_RESTORE_FAILED = "pg_restore failed: {error}"
PG_TOOLS_MISSING = (
    "pg_dump/pg_restore are not installed: install postgresql-client "
    "matching the server's major version."
)
BAD_TARGET = "--target-db must be a postgres:// or sqlite:/// URL."
UNWRITABLE = (
    "The logical export cannot write {label}.{field} ({kind}): its value, a "
    "{value_type}, has no JSON spelling. Give the field a get_prep_value that "
    "returns one."
)


BLANK = {
    "ATOMIC_REQUESTS": False,
    "AUTOCOMMIT": True,
    "CONN_MAX_AGE": 0,
    "CONN_HEALTH_CHECKS": False,
    "OPTIONS": {},
    "TIME_ZONE": None,
    **dict.fromkeys(("USER", "PASSWORD", "HOST", "PORT"), ""),
}


@dataclass
class Snapshot:
    alias: str
    vendor: str
    pg_snapshot: str = ""
    sqlite_path: Path | None = None
    # Connection settings, for pg_dump in a thread without a Django connection.
    settings: dict = field(default_factory=dict)


def register_alias(settings_dict: dict, prefix: str = "backup") -> str:
    """Open a connection alias for ``settings_dict``; close it with ``drop_alias``.

    The wrapper is set on ``connections`` without entering
    ``settings.DATABASES``: a private, dynamic connection.
    """
    alias = f"{prefix}_{uuid.uuid4().hex[:8]}"
    same_engine = (
        settings_dict.get("ENGINE", connection.settings_dict["ENGINE"])
        == (connection.settings_dict["ENGINE"])
    )
    config = dict(connection.settings_dict) if same_engine else {**BLANK}
    config.update(settings_dict)
    config["TEST"] = {}
    backend = load_backend(config["ENGINE"])
    connections[alias] = backend.DatabaseWrapper(config, alias)
    return alias


def drop_alias(alias: str) -> None:
    try:
        connections[alias].close()
    finally:
        del connections[alias]


def alias_for_url(url: str) -> str:
    """A connection alias for a ``--target-db`` URL."""
    if not url.startswith(("postgres://", "postgresql://", "sqlite:")):
        raise ValueError(BAD_TARGET)
    config = environ.Env.db_url_config(url)
    config.setdefault("OPTIONS", {})
    return register_alias(config, prefix="restore")


def backed_up_models(using: str) -> list:
    """Every model whose table exists, except the backup catalogue itself."""
    existing = set(connections[using].introspection.table_names())
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed
        and not model._meta.proxy
        and model._meta.app_label != CATALOGUE_APP
        and model._meta.db_table in existing
    ]


def catalogue_tables() -> list[str]:
    return [
        model._meta.db_table
        for model in apps.get_app_config(CATALOGUE_APP).get_models(
            include_auto_created=True
        )
    ]


@contextmanager
def snapshot() -> Iterator[Snapshot]:
    """Hold one consistent view of the default database while a set is written."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        alias = register_alias({}, prefix="snapshot")
        conn = connections[alias]
        conn.ensure_connection()
        conn.set_autocommit(False)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                )
                cursor.execute("SELECT pg_export_snapshot()")
                exported = cursor.fetchone()[0]
            yield Snapshot(
                alias=alias,
                vendor="postgresql",
                pg_snapshot=exported,
                settings=dict(conn.settings_dict),
            )
        finally:
            try:
                conn.rollback()
                conn.set_autocommit(True)
            finally:
                drop_alias(alias)
    elif connection.vendor == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="kreo-snapshot-"))
        path = folder / "snapshot.sqlite3"
        target = sqlite3.connect(path)
        try:
            connection.connection.backup(target)
            for table in catalogue_tables():
                target.execute(f'DELETE FROM "{table}"')  # noqa: S608  # nosec B608
            target.commit()
        finally:
            target.close()
        alias = register_alias({"NAME": str(path)}, prefix="snapshot")
        try:
            yield Snapshot(alias=alias, vendor="sqlite", sqlite_path=path)
        finally:
            drop_alias(alias)
            shutil.rmtree(folder, ignore_errors=True)
    else:
        raise RuntimeError(f"backups do not support {connection.vendor}")


class CanonicalEncoder(json.JSONEncoder):
    """One spelling per value, whichever engine it was read from."""

    def default(self, value):
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC)
            return value.isoformat()
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, dt.timedelta):
            return duration_iso_string(value)
        if isinstance(value, decimal.Decimal | uuid.UUID):
            return str(value)
        if isinstance(value, bytes | memoryview | bytearray):
            return base64.b64encode(bytes(value)).decode()
        return super().default(value)


def encode_row(values) -> bytes:
    return json.dumps(
        values, cls=CanonicalEncoder, separators=(",", ":"), sort_keys=True
    ).encode()


def _attnames(model) -> list[str]:
    return [f.attname for f in model._meta.local_concrete_fields]


# Values of these types are spelled by ``CanonicalEncoder`` as they are. Any
# other value (a ZoneInfo from django-timezone-field, an IP address object, a
# third-party field's object) is first turned into its database
# representation by its field's ``get_prep_value``, which each field defines
# and its ``to_python`` reads back (logical.decode_value).
NATIVE = frozenset(
    (
        str,
        int,
        float,
        bool,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
        decimal.Decimal,
        uuid.UUID,
        bytes,
        memoryview,
    )
)


def prep_value(field, value):
    """``value`` as read by the ORM for ``field``, ready for ``encode_row``."""
    if value is None or type(value) in NATIVE:
        return value
    base = getattr(field, "base_field", None)
    if base is not None and isinstance(value, list):
        # ArrayField prepares its items only for a connection; item by item
        # here, as the restore reads them (logical.decode_value).
        return [prep_value(base, item) for item in value]
    return field.get_prep_value(value)


def model_rows(model, using: str) -> Iterator[tuple]:
    """Every row of ``model``, one value per local concrete field, as the ORM
    reads them; ``encode_model_row`` spells them."""
    return (
        model._base_manager.using(using)
        .values_list(*_attnames(model))
        .order_by()
        .iterator(chunk_size=2000)
    )


def encode_model_row(model, row) -> bytes:
    """The canonical JSON of one row of ``model`` from ``model_rows``.

    A row of plain values is spelled as it is (measured: preparing every
    value first costs 40-55% more per audit row); a row holding any other
    value is spelled through each field's ``prep_value``. A value that still
    has no spelling is refused, naming its model and field.
    """
    try:
        return encode_row(row)
    except TypeError:
        pass
    fields = model._meta.local_concrete_fields
    prepared = tuple(map(prep_value, fields, row))
    try:
        return encode_row(prepared)
    except (TypeError, ValueError) as exc:
        for field, value in zip(fields, prepared, strict=True):
            try:
                encode_row([value])
            except (TypeError, ValueError):
                raise ValueError(
                    UNWRITABLE.format(
                        label=model._meta.label,
                        field=field.name,
                        kind=type(field).__name__,
                        value_type=type(value).__name__,
                    )
                ) from exc
        raise


class TableTally:
    """A table's row count and checksum: the sum, modulo 2**256, of each
    row's SHA-256 over its canonical JSON. The same rows give the same value
    on PostgreSQL and SQLite, whatever order each engine returns them in."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, encoded_row: bytes) -> None:
        self.rows += 1
        self.total += int.from_bytes(hashlib.sha256(encoded_row).digest(), "big")

    def as_dict(self) -> dict:
        return {"rows": self.rows, "checksum": format(self.total % (1 << 256), "064x")}


def table_stats(using: str) -> dict[str, dict]:
    """Row count and order-independent checksum of every backed-up table."""
    stats = {}
    for model in backed_up_models(using):
        tally = TableTally()
        for row in model_rows(model, using):
            tally.add(encode_model_row(model, row))
        stats[model._meta.db_table] = tally.as_dict()
    return stats


def _pg_env(settings_dict: dict) -> dict:
    env = {**os.environ}
    for key, name in (
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
    ):
        if settings_dict.get(key):
            env[name] = str(settings_dict[key])
    return env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(PG_TOOLS_MISSING)
    return path


def native_dump(snap: Snapshot) -> Iterator[bytes]:
    """Yield the native dump of the snapshot: ``pg_dump -Fc`` or a SQLite file."""
    if snap.vendor == "sqlite":
        with open(snap.sqlite_path, "rb") as source:
            while piece := source.read(1024 * 1024):
                yield piece
        return
    settings_dict = snap.settings
    command = [
        _pg_tool("pg_dump"),
        "--format=custom",
        "--no-owner",
        "--no-acl",
        f"--snapshot={snap.pg_snapshot}",
        *[f"--exclude-table-data={table}" for table in catalogue_tables()],
        f"--dbname={settings_dict['NAME']}",
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_pg_env(settings_dict),
        )
        try:
            yield from _read_ahead(process.stdout, abort=process.kill)
        finally:
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            raise RuntimeError(
                PG_DUMP_FAILED.format(error=errors.read().decode()[-2000:])
            )


def _read_ahead(stream, abort, depth: int = 8) -> Iterator[bytes]:
    """Yield 1 MiB pieces of ``stream`` read by a thread up to ``depth`` ahead.

    pg_dump then never waits on a full pipe while a piece is encrypted and
    hashed: the two overlap, and memory stays bounded by ``depth`` pieces.
    A consumer that stops early calls ``abort`` (kill the producer).
    """
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1024 * 1024)
    pieces: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            while not stop.is_set():
                piece = stream.read(1024 * 1024)
                pieces.put(piece)
                if not piece:
                    return
        except (OSError, ValueError):
            pieces.put(b"")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    finished = False
    try:
        while piece := pieces.get():
            yield piece
        finished = True
    finally:
        stop.set()
        if not finished:
            abort()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                pieces.get(timeout=0.1)


def native_restore(chunks: Iterable[bytes], vendor: str, using: str) -> None:
    """Restore a native dump into the database of connection ``using``.

    PostgreSQL restores in one transaction (``--single-transaction``), so a
    dump that fails half-way leaves the target as it was.
    """
    target = connections[using]
    if target.vendor != vendor:
        raise ValueError(ENGINE_MISMATCH.format(copy=1, engine=vendor))
    if vendor == "sqlite":
        with tempfile.TemporaryDirectory(prefix="kreo-restore-") as folder:
            path = Path(folder) / "restore.sqlite3"
            with open(path, "wb") as out:
                for piece in chunks:
                    out.write(piece)
            source = sqlite3.connect(path)
            try:
                target.ensure_connection()
                source.backup(target.connection)
            finally:
                source.close()
        return
    settings_dict = target.settings_dict
    target.close()
    command = [
        _pg_tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-acl",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={settings_dict['NAME']}",
    ]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=_pg_env(settings_dict),
        )
        # A 1 MiB pipe: the next piece is decrypted and hashed while
        # pg_restore still reads the last one, instead of in turns.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(process.stdin.fileno(), fcntl.F_SETPIPE_SZ, 1024 * 1024)
        try:
            for piece in chunks:
                process.stdin.write(piece)
        except BrokenPipeError:
            pass  # pg_restore stopped on an error: reported below
        except BaseException:
            # A bad chunk: end pg_restore before it sees a clean end of input,
            # so its transaction rolls back.
            process.kill()
            process.wait()
            raise
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        if process.wait() != 0:
            errors.seek(0)
            raise RuntimeError(
                PG_RESTORE_FAILED.format(error=errors.read().decode()[-2000:])
            )
