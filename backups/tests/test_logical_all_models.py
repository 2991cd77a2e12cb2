"""The logical copy carries every field of every model of every installed app,
from PostgreSQL into SQLite and from SQLite into PostgreSQL."""

import contextlib
import datetime as dt
import decimal
import uuid

import psycopg
import pytest
from django.apps import apps
from django.db import connection, models
from timezone_field import TimeZoneField

from backups import databases, logical, services
from backups.models import SetState
from backups.tests import allmodels


@pytest.fixture
def other_engine(tmp_path, request):
    """An empty database on the engine this leg does not run on."""
    if connection.vendor == "postgresql":
        return f"sqlite:///{tmp_path / 'other-engine.sqlite3'}"
    return request.getfixturevalue("pg_scratch_url")


def test_every_model_is_covered_by_the_row_factory():
    """Every concrete model of every installed app is carried by the logical
    copy, except the backup catalogue, which is kept out of its own backups;
    every field of each has a test value (an unknown field class fails)."""
    concrete = {
        model
        for model in apps.get_models(include_auto_created=True)
        if not model._meta.proxy and model._meta.managed
    }
    covered = set(allmodels.backed_up())
    assert concrete - covered == set(
        apps.get_app_config("backups").get_models(include_auto_created=True)
    )
    for model in covered:
        for field in model._meta.local_concrete_fields:
            if not field.is_relation:
                allmodels.value_for(field, 1, model._meta.label)


def test_unknown_field_class_is_refused_by_the_row_factory():
    """A field class the factory has no value for raises, naming it."""
    from django.db import models

    class OddField(models.CharField):
        pass

    field = OddField(max_length=10)
    field.name = "odd"
    with pytest.raises(allmodels.UncoveredField, match="OddField"):
        allmodels.value_for(field, 1, "x.Y")


def test_logical_copy_round_trips_every_field_of_every_model(
    transactional_db, other_engine, offsite
):
    """A row with a non-default value in every field of every model (time zone,
    UUID, decimal, binary, JSON, big integers, date/time, file names, foreign
    keys, many-to-many rows...) is backed up, restored from copy 2 into an
    empty database on the other engine, and read back identical, field by
    field; every table's count and checksum equal the manifest's."""
    made = allmodels.fill_every_model()
    assert len(made) == len(allmodels.backed_up())
    before = allmodels.table_rows("default")

    backup_set = services.backup_create()
    assert backup_set.state == SetState.GOOD, backup_set.error
    services.backup_restore(
        set_id=backup_set.pk, copy=2, target_db=other_engine, restore_files=False
    )

    alias = databases.alias_for_url(other_engine)
    try:
        assert connection.vendor != databases.connections[alias].vendor
        after = allmodels.table_rows(alias)
        stats = databases.table_stats(alias)
    finally:
        databases.drop_alias(alias)
    assert allmodels.differences(before, after) == []
    for label, row in ((m._meta.label, o) for m, o in made.items()):
        assert any(r[0] == row.pk for r in after[label] if r), label
    assert stats == backup_set.manifest["tables"]


# Field classes no installed model uses yet: the export and restore handle them
# by field too. A model of their own lives for the test in a scratch database.


@contextlib.contextmanager
def _pg_database():
    name = f"kreo_fields_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 user=kreo password=kreo dbname=kreo"
    try:
        server = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 for role kreo")
    with server:
        server.execute(f'CREATE DATABASE "{name}"')
    alias = databases.alias_for_url(f"postgres://kreo:kreo@127.0.0.1:5432/{name}")
    try:
        yield alias
    finally:
        databases.drop_alias(alias)
        with psycopg.connect(dsn, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _sqlite_database(folder):
    alias = databases.alias_for_url(f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}")
    try:
        yield alias
    finally:
        databases.drop_alias(alias)


@contextlib.contextmanager
def _temporary_model(name: str, fields: dict):
    """A model registered under the ``kreo`` app for the test's duration."""
    meta = type("Meta", (), {"app_label": "kreo", "db_table": f"kreo_t_{name}"})
    model = type(
        name, (models.Model,), {**fields, "Meta": meta, "__module__": __name__}
    )
    try:
        yield model
    finally:
        del apps.all_models["kreo"][name.lower()]
        apps.clear_cache()


def _round_trip(model, source: str, target: str) -> tuple[list, list]:
    for alias in (source, target):
        with databases.connections[alias].schema_editor() as editor:
            editor.create_model(model)
    fields = model._meta.local_concrete_fields
    rows = [
        model(**{f.attname: allmodels.value_for(f, n, name) for f in fields})
        for n, name in ((1, "a"), (2, "b"))
    ]
    nulls = model(
        **{
            f.attname: None if f.null else allmodels.value_for(f, 3, "c")
            for f in fields
        }
    )
    model._base_manager.using(source).bulk_create([*rows, nulls])
    tallied: dict = {}
    export = b"".join(logical.export_lines(source, tallied))
    # Read from COPY text on PostgreSQL (backups.pgrows), the export spells
    # each row exactly as the ORM-read checksums of table_stats do.
    assert tallied == databases.table_stats(source)
    assert logical.import_lines([export], target) == {model._meta.db_table: 3}
    read = [
        [
            [allmodels._plain(f.value_from_object(o)) for f in fields]
            for o in model._base_manager.using(alias).order_by("pk")
        ]
        for alias in (source, target)
    ]
    spelled = [
        sorted(
            databases.encode_model_row(model, row)
            for row in databases.model_rows(model, alias)
        )
        for alias in (source, target)
    ]
    assert spelled[0] == spelled[1]
    assert databases.table_stats(source) == databases.table_stats(target)
    return read[0], read[1]


def _more_fields() -> dict:
    return {
        "id": models.SmallAutoField(primary_key=True),
        "duration": models.DurationField(null=True),
        "negative": models.DurationField(default=dt.timedelta(0)),
        "ratio": models.FloatField(null=True),
        "day": models.DateField(null=True),
        "moment": models.TimeField(null=True),
        "slug": models.SlugField(null=True),
        "url": models.URLField(null=True),
        "zone": TimeZoneField(null=True),
        "blob": models.BinaryField(null=True),
        "doc": models.JSONField(null=True),
        # SQLite keeps a decimal as a double: 15 significant digits are exact.
        "amount": models.DecimalField(max_digits=15, decimal_places=6, null=True),
        "big": models.BigIntegerField(null=True),
    }


@pytest.mark.parametrize("direction", ["postgresql->sqlite", "sqlite->postgresql"])
def test_field_classes_no_model_uses_yet_cross_engines(db, tmp_path, direction):
    """Durations (negative too), floats, dates, times, slugs, URLs, time zones,
    binary, JSON, 15-digit decimals and big integers, and NULL in each, come
    back identical from the other engine."""
    name = "MoreFields" + direction.split("-")[0].title()
    with (
        _temporary_model(name, _more_fields()) as model,
        _pg_database() as pg,
        _sqlite_database(tmp_path) as lite,
    ):
        source, target = (
            (pg, lite) if direction.startswith("postgresql") else (lite, pg)
        )
        before, after = _round_trip(model, source, target)
        names = [f.name for f in model._meta.local_concrete_fields]
    assert after == before
    first, second, nulls = (dict(zip(names, row, strict=True)) for row in after)
    assert first["negative"] == dt.timedelta(days=-3, seconds=8, microseconds=11)
    assert second["duration"] == dt.timedelta(days=3, seconds=9, microseconds=11)
    assert first["zone"] == allmodels.KATHMANDU
    assert first["amount"] == decimal.Decimal("-987654321.123456")
    assert first["big"] == -(2**62) - 1
    assert [k for k, v in nulls.items() if v is not None] == ["id", "negative"]


def _plain_fields() -> dict:
    return {
        "id": models.BigAutoField(primary_key=True),
        "ratio": models.FloatField(null=True),
        "day": models.DateField(null=True),
        "moment": models.TimeField(null=True),
        "stamp": models.DateTimeField(null=True),
        "text": models.TextField(null=True),
        "slug": models.SlugField(null=True),
        "flag": models.BooleanField(null=True),
        "key": models.UUIDField(null=True),
        "blob": models.BinaryField(null=True),
        "doc": models.JSONField(null=True),
        "amount": models.DecimalField(max_digits=15, decimal_places=6, null=True),
        "small": models.SmallIntegerField(null=True),
    }


def test_plain_field_classes_read_from_copy_text_round_trip(db, tmp_path):
    """A model of plain field classes only is exported from PostgreSQL's COPY
    text (no ORM): escaped text (tab, newline, backslash, U+2028, emoji),
    floats, times and timestamps with and without fractions, binary, JSON,
    decimals and NULL in each come back identical on SQLite, spelled and
    checksummed as the ORM spells them."""
    from backups import pgrows

    with (
        _temporary_model("PlainFields", _plain_fields()) as model,
        _pg_database() as pg,
        _sqlite_database(tmp_path) as lite,
    ):
        assert pgrows.spellers(model) is not None
        before, after = _round_trip(model, pg, lite)
        names = [f.name for f in model._meta.local_concrete_fields]
    assert after == before
    first = dict(zip(names, after[0], strict=True))
    assert first["text"].startswith("1\nline two\r\n\t")
    assert first["moment"] == dt.time(23, 59, 58, 123456)
    assert first["blob"] == bytes(range(256)) + (1).to_bytes(4, "big")


def test_arrays_round_trip_between_postgresql_databases(db):
    """ArrayField (PostgreSQL only) of dates, time zones, decimals, binary and
    of arrays comes back with each item read by its base field."""
    from django.contrib.postgres.fields import ArrayField

    fields = {
        "days": ArrayField(models.DateField()),
        "zones": ArrayField(TimeZoneField(), null=True),
        "amounts": ArrayField(models.DecimalField(max_digits=8, decimal_places=3)),
        "grid": ArrayField(ArrayField(models.IntegerField())),
        "blobs": ArrayField(models.BinaryField()),
    }
    with (
        _temporary_model("ArrayFields", fields) as model,
        _pg_database() as source,
        _pg_database() as target,
    ):
        before, after = _round_trip(model, source, target)
    assert after == before
    assert after[0][2] == [allmodels.KATHMANDU, allmodels.KATHMANDU]
    assert isinstance(after[0][1][0], dt.date)
    assert after[0][5][0] == bytes(range(256)) + (1).to_bytes(4, "big")


class _Opaque:
    """A value with no JSON spelling, from a field that forgot to give one."""


class OpaqueField(models.CharField):
    def from_db_value(self, value, expression, connection):
        return _Opaque()

    def get_prep_value(self, value):
        return value if isinstance(value, _Opaque) else super().get_prep_value(value)


def test_a_value_with_no_spelling_is_refused_naming_its_field(db, tmp_path):
    """The export refuses a value it cannot write with a message naming the
    model, the field and its class, instead of a bare TypeError."""
    fields = {"thing": OpaqueField(max_length=10)}
    with (
        _temporary_model("Opaque", fields) as model,
        _sqlite_database(tmp_path) as lite,
    ):
        with databases.connections[lite].schema_editor() as editor:
            editor.create_model(model)
        model._base_manager.using(lite).create(thing="x")
        with pytest.raises(ValueError) as refused:
            b"".join(logical.export_lines(lite))
    assert str(refused.value) == databases.UNWRITABLE.format(
        label="kreo.Opaque", field="thing", kind="OpaqueField", value_type="_Opaque"
    )
