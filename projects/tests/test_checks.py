"""Deploy checks of the erasure ledger that an operator meets on upgrade."""

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

from accounts.tests.factories import UserFactory
from projects import services

pytestmark = pytest.mark.django_db(transaction=True)


def _ledger_errors():
    return [
        e for e in run_checks(include_deployment_checks=True) if e.id == "projects.E004"
    ]


def test_tombstones_left_in_the_folder_after_the_move_to_a_bucket_fail_the_check(
    ledger_bucket, settings
):
    """Switching the ledger to a bucket stops reading the folder: until
    ``ledger_import`` has moved its tombstones, the deploy check says so."""
    folder = settings.KREO_KEY_LEDGER_DIR
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Erased on the folder")
    services.project_delete(actor=owner, project=project)
    assert _ledger_errors() == []  # the folder is the ledger: nothing left behind

    settings.KREO_KEY_LEDGER_S3_BUCKET = ledger_bucket
    (error,) = _ledger_errors()
    assert "1 tombstone(s) are still in the folder" in error.msg
    assert f"ledger_import {folder}" in error.hint

    call_command("ledger_import", str(folder))
    assert _ledger_errors() == []
