"""A row in every table: one per concrete model of every installed app, with a
value other than the field's default in every field, chosen by field class.

A field class with no entry in ``VALUES`` raises ``UncoveredField``: a model
added later with a new kind of field fails the round-trip tests until its
values are spelled here, instead of being skipped silently.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
import zoneinfo

from django.apps import apps
from django.db import models
from django.db.models.fields.files import FieldFile
from timezone_field import TimeZoneField

from backups import databases

UNCOVERED = (
    "No test value for {label}.{field} ({kind}): add its field class to "
    "backups/tests/allmodels.py VALUES so the backup round trip covers it."
)
TEXT = 'Ünïcödé ✓ "quoted" \\ back\u2028slash 🏗 '
KATHMANDU = zoneinfo.ZoneInfo("Asia/Kathmandu")  # +05:45: no whole-hour offset


class UncoveredField(LookupError):
    pass


def _text(field, n: int) -> str:
    text = f"{n}-{field.name}-{TEXT}"
    return text[: field.max_length] if field.max_length else text


def _decimal(field, n: int) -> decimal.Decimal:
    whole = "987654321987654321"[: field.max_digits - field.decimal_places] or "0"
    fraction = "123456789123456789"[: field.decimal_places]
    return decimal.Decimal(f"-{whole}.{fraction}" if fraction else f"-{whole}")


def _bool(field, n: int) -> bool:
    default = field.get_default()
    return not default if default is not None else True


VALUES = {
    models.AutoField: lambda f, n: 2_100_000_000 + n,
    models.BigAutoField: lambda f, n: 2**53 + 1 + n,  # not exact as a float
    models.SmallAutoField: lambda f, n: 32_000 + n,
    models.SmallIntegerField: lambda f, n: -32_000 - n,
    models.PositiveSmallIntegerField: lambda f, n: 32_000 + n,
    models.IntegerField: lambda f, n: -2_000_000_000 - n,
    models.PositiveIntegerField: lambda f, n: 2_147_483_000 + n,
    models.BigIntegerField: lambda f, n: -(2**62) - n,
    models.PositiveBigIntegerField: lambda f, n: 2**62 + n,
    models.FloatField: lambda f, n: -12345.678901 - n,
    models.DecimalField: _decimal,
    models.BooleanField: _bool,
    models.CharField: _text,
    models.SlugField: lambda f, n: f"slug-{n}"[: f.max_length],
    models.EmailField: lambda f, n: f"field.{n}@exämple.test"[: f.max_length],
    models.URLField: lambda f, n: f"https://example.test/ü/{n}?q=1&r=2",
    models.TextField: lambda f, n: f"{n}\nline two\r\n\t{TEXT * 3}",
    models.GenericIPAddressField: lambda f, n: f"2001:db8::8a2e:370:{n:x}",
    models.UUIDField: lambda f, n: uuid.uuid4(),
    models.BinaryField: lambda f, n: bytes(range(256)) + n.to_bytes(4, "big"),
    models.JSONField: lambda f, n: {
        "ünï": ["x", n, 2.5, None, True, False, {"deep": [2**60, -1]}],
        "when": "2031-02-03T04:05:06Z",
        "empty": {},
    },
    # Later fields get later times, as constraints such as "ends after it
    # starts" expect (status.Maintenance).
    models.DateTimeField: lambda f, n: (
        dt.datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=KATHMANDU)
        + dt.timedelta(minutes=n, seconds=_position(f))
    ),
    models.DateField: lambda f, n: dt.date(1999, 12, 31) - dt.timedelta(days=n),
    models.TimeField: lambda f, n: dt.time(23, 59, 58, 123456),
    models.DurationField: lambda f, n: dt.timedelta(
        days=-3 if n % 2 else 3, seconds=7 + n, microseconds=11
    ),
    models.FileField: lambda f, n: f"projects/{n}/dräwing ü.pdf",
    TimeZoneField: lambda f, n: KATHMANDU,
}

try:  # ArrayField exists on PostgreSQL only, but its class imports anywhere.
    from django.contrib.postgres.fields import ArrayField

    VALUES[ArrayField] = lambda f, n: [
        value_for(f.base_field, n),
        value_for(f.base_field, n + 1),
    ]
except ImportError:  # pragma: no cover
    pass


def _position(field) -> int:
    model = getattr(field, "model", None)
    if model is None:
        return 0
    return model._meta.local_concrete_fields.index(field)


def value_for(field, n: int, label: str = "?"):
    """A value of ``field`` other than its default."""
    kind = type(field)
    if kind not in VALUES:
        raise UncoveredField(
            UNCOVERED.format(label=label, field=field.name, kind=kind.__name__)
        )
    if field.choices and kind is not TimeZoneField:
        default = field.get_default()
        value = [v for v, _ in field.flatchoices if v != default and v != ""][-1]
    else:
        value = VALUES[kind](field, n)
    if field.has_default() and not callable(field.default):
        assert value != field.get_default(), (label, field.name)
    assert value is not None, (label, field.name)
    return value


def backed_up() -> list:
    """Every concrete model the backup must carry: all of them, catalogue aside."""
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if not model._meta.proxy
        and model._meta.managed
        and model._meta.app_label != databases.CATALOGUE_APP
    ]


def fill_every_model(using: str = "default") -> dict:
    """Insert one row per backed-up model; return ``{model: object}``.

    Rows go in as ``loaddata`` writes them (raw: no ``save()``, no signals,
    ``auto_now`` kept), so each field holds exactly the chosen value. A
    foreign key points at the row made for its target model.
    """
    made: dict = {}

    def make(model, stack: tuple):
        if model in made:
            return made[model]
        if model in stack:
            raise RuntimeError(f"foreign key cycle through {model._meta.label}")
        label = model._meta.label
        n = len(made) + 1
        values = {}
        fields = model._meta.local_concrete_fields
        for field in fields:
            if field.is_relation and field.related_model is not model:
                target = make(field.related_model, (*stack, model))
                values[field.attname] = getattr(target, field.target_field.attname)
            elif not field.is_relation:
                values[field.attname] = value_for(field, n, label)
        for field in fields:
            if field.is_relation and field.related_model is model:
                values[field.attname] = values[field.target_field.attname]
        obj = model(**values)
        model._base_manager.using(using)._insert(
            [obj], fields=fields, using=using, raw=True
        )
        made[model] = obj
        return obj

    for model in backed_up():
        make(model, ())
    return made


def _plain(value):
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, FieldFile):
        return value.name
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def table_rows(using: str) -> dict[str, list[tuple]]:
    """Every row of every backed-up model, as the ORM reads it, in pk order."""
    out = {}
    for model in backed_up():
        fields = model._meta.local_concrete_fields
        rows = [
            tuple(_plain(f.value_from_object(obj)) for f in fields)
            for obj in model._base_manager.using(using).order_by("pk")
        ]
        out[model._meta.label] = rows
    return out


def differences(expected: dict, got: dict) -> list[str]:
    """Field-by-field differences between two ``table_rows`` results."""
    lines = []
    by_label = {model._meta.label: model for model in backed_up()}
    for label, rows in expected.items():
        other = got.get(label)
        if other is None:
            lines.append(f"{label}: missing")
            continue
        if len(rows) != len(other):
            lines.append(f"{label}: {len(rows)} rows, restored {len(other)}")
            continue
        fields = by_label[label]._meta.local_concrete_fields
        for row, back in zip(rows, other, strict=True):
            for field, a, b in zip(fields, row, back, strict=True):
                if a != b or type(a) is not type(b):
                    lines.append(f"{label}.{field.name}: {a!r} != {b!r}")
    return lines
