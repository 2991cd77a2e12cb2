"""The logical, engine-independent export of copy 2: JSON Lines per model.

The stream is a sequence of blocks, one per table: a header line
``{"model": "app_label.model_name", "table": ..., "fields": [attnames]}``
followed by one JSON array per row, and a closing ``{"end": n_models}`` line
so that a cut stream is never mistaken for a whole one. Values are spelled
canonically (``databases.CanonicalEncoder``) and read back with each field's
``to_python``, so a PostgreSQL export loads into SQLite and back.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator

from django.apps import apps
from django.core.management.color import no_style
from django.db import connections, transaction

from backups import pgrows
from backups.databases import (
    TableTally,
    _attnames,
    backed_up_models,
    encode_model_row,
    model_rows,
)
from kreo.streams import IterReader

BATCH = 500
INCOMPLETE = "The logical export is incomplete: its closing line is missing."
COLUMNS = (
    "The export's columns for {label} differ from this code's model: restore "
    "with the release that wrote it."
)
UNKNOWN_MODEL = "The logical export names a model this code does not have: {label}."


def export_lines(using: str, stats: dict | None = None) -> Iterator[bytes]:
    """Yield the logical export of the database behind alias ``using``.

    With ``stats``, also fill it with each table's row count and checksum
    (as ``databases.table_stats`` computes them) in the same pass.
    """
    models = backed_up_models(using)
    native = connections[using].vendor == "postgresql"
    buffer = bytearray()
    for model in models:
        header = {
            "model": model._meta.label_lower,
            "table": model._meta.db_table,
            "fields": _attnames(model),
        }
        buffer += json.dumps(header).encode() + b"\n"
        tally = TableTally()
        for line in _encoded(model, using, native):
            tally.add(line)
            buffer += line + b"\n"
            if len(buffer) >= 1024 * 1024:
                yield bytes(buffer)
                buffer.clear()
        if stats is not None:
            stats[model._meta.db_table] = tally.as_dict()
    buffer += json.dumps({"end": len(models)}).encode() + b"\n"
    yield bytes(buffer)


def _encoded(model, using: str, native: bool) -> Iterator[bytes]:
    """The canonical JSON of each row: from COPY text on PostgreSQL when every
    field is of a plain class (``pgrows``), else through the ORM."""
    spell = pgrows.spellers(model) if native else None
    if spell is not None:
        return pgrows.encoded_rows(model, using, spell)
    return (encode_model_row(model, row) for row in model_rows(model, using))


def decode_value(field, value):
    """The Python value of ``field`` spelled ``value`` in the export.

    ``to_python`` reads each field's own spelling back; an array's items are
    read by its base field's, since ArrayField's ``to_python`` leaves a list's
    items as they are (a BinaryField's base64 text would be stored as bytes).
    """
    if value is None:
        return None
    base = getattr(field, "base_field", None)
    if base is not None and isinstance(value, list):
        return [decode_value(base, item) for item in value]
    return field.to_python(value)


def _flush(model, fields, rows: list[list], using: str) -> None:
    objs = []
    for values in rows:
        obj = model()
        for field, value in zip(fields, values, strict=True):
            setattr(obj, field.attname, decode_value(field, value))
        objs.append(obj)
    if objs:
        # raw=True: auto_now fields keep the exported values, as loaddata does.
        model._base_manager.using(using)._insert(
            objs, fields=fields, using=using, raw=True
        )


def import_lines(chunks: Iterable[bytes], using: str) -> dict[str, int]:
    """Replace every backed-up table of ``using`` with the export's rows.

    One transaction: a stream that turns out bad half-way leaves the target
    as it was. Returns rows loaded per table.
    """
    reader = io.TextIOWrapper(
        io.BufferedReader(IterReader(chunks), 1024 * 1024), encoding="utf-8"
    )
    conn = connections[using]
    loaded: dict[str, int] = {}
    with transaction.atomic(using=using):
        tables = [
            conn.ops.quote_name(m._meta.db_table) for m in backed_up_models(using)
        ]
        guarded = _guarded_tables(conn) if conn.vendor == "postgresql" else []
        with conn.cursor() as cursor:
            for table in guarded:
                # Guards such as the audit trail's append-only triggers refuse
                # DELETE; a restore replaces whole tables, in this transaction,
                # and is itself audited.
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608  # nosec B608
        model, fields, rows, ended, touched = None, [], [], False, []
        for line in reader:
            item = json.loads(line)
            if isinstance(item, list):
                rows.append(item)
                if len(rows) >= BATCH:
                    _flush(model, fields, rows, using)
                    loaded[model._meta.db_table] += len(rows)
                    rows = []
                continue
            if model is not None:
                _flush(model, fields, rows, using)
                loaded[model._meta.db_table] += len(rows)
                rows = []
            if "end" in item:
                ended = True
                break
            try:
                model = apps.get_model(item["model"])
            except LookupError as exc:
                raise ValueError(UNKNOWN_MODEL.format(label=item["model"])) from exc
            fields = model._meta.local_concrete_fields
            if [f.attname for f in fields] != item["fields"]:
                raise ValueError(COLUMNS.format(label=item["model"]))
            loaded[model._meta.db_table] = 0
            touched.append(model)
        if not ended:
            raise ValueError(INCOMPLETE)
        if guarded:
            with conn.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                for table in guarded:
                    cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        sql = conn.ops.sequence_reset_sql(no_style(), touched)
        if sql:
            with conn.cursor() as cursor:
                for statement in sql:
                    cursor.execute(statement)
    return loaded


def _guarded_tables(conn) -> list[str]:
    """Tables carrying user (non-constraint) triggers."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
        )
        return [conn.ops.quote_name(row[0]) for row in cursor.fetchall()]
