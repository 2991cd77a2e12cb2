"""The rows of a PostgreSQL table as ``COPY ... TO STDOUT`` text, spelled as
the logical export spells them, without the ORM.

Loading every value into a Python object (a datetime, a UUID) through the
ORM, only to spell it back as text, made copy 2 as slow as ``pg_dump``
itself, and the two run side by side on the same cores. Here each column's
COPY text is turned straight into the JSON value ``databases.encode_row``
writes for what the ORM would have read: the same bytes, so the same
per-table checksums (``databases.table_stats`` still reads through the ORM,
and the tests compare the two for every field class).

Only models whose every column is of a plain field class listed in
``SPELLERS`` (exactly that class: a subclass may read or write its values
differently) take this path; any other model is read through the ORM.
"""

from __future__ import annotations

import base64
import decimal
import json
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext

from django.conf import settings
from django.db import connections, models, transaction

UNSPELLABLE = "The logical export cannot spell the timestamp {value!r}."

_ESCAPES = {
    "\\\\": "\\",
    "\\b": "\b",
    "\\f": "\f",
    "\\n": "\n",
    "\\r": "\r",
    "\\t": "\t",
    "\\v": "\v",
}
_ESCAPED = re.compile(r"\\.")
# COPY's text format escapes only these (src/backend/commands/copyto.c).
_UNESCAPE = _ESCAPED.sub


_quoted = json.encoder.encode_basestring_ascii  # C, as json.dumps spells a str


def _text(value: str) -> str:
    if "\\" in value:
        value = _UNESCAPE(lambda m: _ESCAPES[m.group(0)], value)
    return _quoted(value)


def _fraction(clock: str) -> str:
    """``HH:MM:SS[.f]`` with the fraction as Python's isoformat writes it:
    six digits, or none when it is zero (PostgreSQL drops trailing zeros)."""
    if len(clock) == 8:
        return clock
    return clock[:9] + clock[9:].ljust(6, "0")


def _time(value: str) -> str:
    return f'"{_fraction(value)}"'


def _timestamptz(value: str) -> str:
    # "2031-02-03 04:05:06.7+00" (TimeZone UTC) -> "2031-02-03T04:05:06.700000+00:00"
    if value[-3:] != "+00" or len(value) < 22 or value[10] != " ":
        # BC, infinity, a year past 9999: the ORM cannot read them either.
        raise ValueError(UNSPELLABLE.format(value=value))
    return f'"{value[:10]}T{_fraction(value[11:-3])}+00:00"'


def _bytea(value: str) -> str:
    # Hex output, its backslash escaped by COPY: "\\x00ff".
    return f'"{base64.b64encode(bytes.fromhex(value[3:])).decode()}"'


def _bool(value: str) -> str:
    return "true" if value == "t" else "false"


def _decimal(value: str) -> str:
    return _quoted(str(decimal.Decimal(value)))


def _float(value: str) -> str:
    return _ENCODER.encode(float(value))


def _json(value: str) -> str:
    return _ENCODER.encode(json.loads(value))


def _plain(value: str) -> str:
    return f'"{value}"'


def _integer(value: str) -> str:
    return value  # PostgreSQL's integer text is Python's: no sign, no zeros


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_TEXT = (
    models.CharField,
    models.TextField,
    models.SlugField,
    models.EmailField,
    models.URLField,
    models.FileField,
    models.ImageField,
)
_INTEGER = (
    models.AutoField,
    models.BigAutoField,
    models.SmallAutoField,
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)
# Each turns a column's COPY text into the JSON text encode_row writes for the
# value the ORM reads from it.
SPELLERS: dict[type, Callable[[str], str]] = {
    **dict.fromkeys(_TEXT, _text),
    **dict.fromkeys(_INTEGER, _integer),
    models.UUIDField: _plain,  # canonical 8-4-4-4-12 lower case, as str(UUID)
    models.BooleanField: _bool,
    models.DateField: _plain,  # DateStyle ISO
    models.TimeField: _time,
    models.DateTimeField: _timestamptz,
    models.DecimalField: _decimal,
    models.FloatField: _float,
    models.BinaryField: _bytea,
}


def _speller(field) -> Callable[[str], object] | None:
    while type(field) in (models.ForeignKey, models.OneToOneField):
        field = field.target_field
    if type(field) is models.JSONField:
        return _json if field.decoder is None else None
    if type(field) is models.DateTimeField and not settings.USE_TZ:
        return None
    return SPELLERS.get(type(field))


def spellers(model) -> list | None:
    """One speller per local concrete field of ``model``, or ``None`` when any
    field is of a class this module does not spell."""
    found = [_speller(field) for field in model._meta.local_concrete_fields]
    return None if any(s is None for s in found) else found


def encoded_rows(model, using: str, spell: list) -> Iterator[bytes]:
    """Each row of ``model`` in its canonical JSON (``databases.encode_row``),
    read in the transaction of connection ``using`` (the backup's snapshot).

    Raises ``ValueError`` on a timestamp Python's datetime cannot hold, as
    the ORM would.
    """
    conn = connections[using]
    columns = ", ".join(
        conn.ops.quote_name(f.column) for f in model._meta.local_concrete_fields
    )
    table = conn.ops.quote_name(model._meta.db_table)
    conn.ensure_connection()
    # In the snapshot's transaction (else one of its own): SET LOCAL lasts
    # as long as it, and the spellings assume these settings.
    own = transaction.atomic(using=using) if conn.get_autocommit() else nullcontext()
    with own, conn.connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; "
            "SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'"
        )
        sql = f"COPY (SELECT {columns} FROM {table}) TO STDOUT"  # noqa: S608  # nosec B608
        with cursor.copy(sql) as copy:
            for block in copy:
                values = bytes(block).decode()[:-1].split("\t")
                yield (
                    "["
                    + ",".join(
                        [
                            "null" if value == "\\N" else speller(value)
                            for speller, value in zip(spell, values, strict=True)
                        ]
                    )
                    + "]"
                ).encode()
