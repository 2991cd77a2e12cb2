"""The migration to the 3-2-1 states: no set without copy 3 stays good."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("backups", "0001_initial")]
AFTER = [("backups", "0002_incomplete_state_and_copy3_versions")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_partial_and_good_without_copy3_become_incomplete():
    """A partial set, and a good set whose copy 3 was skipped, are incomplete
    after the migration; a good set with copy 3 done stays good."""
    old = _migrate(BEFORE)
    BackupSet, BackupCopy = (
        old.get_model("backups", name) for name in ("BackupSet", "BackupCopy")
    )
    sets = {}
    for label, state, copy3 in (
        ("partial", "partial", "failed"),
        ("skipped", "good", "skipped"),
        ("whole", "good", "done"),
    ):
        sets[label] = BackupSet.objects.create(created_at=timezone.now(), state=state)
        for number in (1, 2, 3):
            BackupCopy.objects.create(
                backup_set=sets[label],
                number=number,
                state=copy3 if number == 3 else "done",
            )
    new = _migrate(AFTER)
    states = {
        label: new.get_model("backups", "BackupSet").objects.get(pk=item.pk).state
        for label, item in sets.items()
    }
    assert states == {"partial": "incomplete", "skipped": "incomplete", "whole": "good"}
    # Back to the latest schema for the tests that follow.
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
