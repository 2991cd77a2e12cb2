"""The folder ledger (the embedded default) with a damaged tombstone."""

import pytest

from accounts.tests.factories import UserFactory
from projects import keys, services
from projects.ledger import LedgerError
from projects.models import Project

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def folder(settings, tmp_path):
    settings.KREO_KEY_LEDGER_S3_BUCKET = ""
    settings.KREO_KEY_LEDGER_DIR = tmp_path / "ledger"
    return settings.KREO_KEY_LEDGER_DIR


def test_a_damaged_tombstone_still_erases_by_its_name(folder):
    """Its body cut short (a disk error), the tombstone still names the
    project in its file name: a restore still removes the project."""
    owner = UserFactory()
    project = services.project_create(actor=owner, name="Erased")
    pk = project.pk
    services.project_delete(actor=owner, project=project)
    (path,) = folder.glob("*.json")
    path.write_text('{"kind": "proj')
    # The project comes back as a restore would bring it back.
    Project.objects.create(pk=pk, name="Erased", created_by=owner)

    assert [t.id for t in keys.ledger().tombstones("project")] == [str(pk)]
    keys.after_restore()
    assert not Project.objects.filter(pk=pk).exists()


def test_a_tombstone_that_names_nothing_stops_the_reader(folder):
    """Rather than let a restore skip an erasure it cannot read."""
    folder.mkdir(parents=True)
    (folder / "junk.json").write_text("not json")
    with pytest.raises(LedgerError, match="junk.json"):
        keys.ledger().tombstones()
