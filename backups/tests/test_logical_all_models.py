"""The logical copy carries every field of every model of every installed app,
from PostgreSQL into SQLite and from SQLite into PostgreSQL."""

import pytest
from django.apps import apps
from django.db import connection

from backups import databases, services
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
    transactional_db, other_engine
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
