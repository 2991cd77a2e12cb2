"""The keyring, and keys_rotate: rewrap every data key, touch no file."""

import base64
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accounts.tests.factories import UserFactory
from projects import keys, services
from projects.models import Membership, Project, ProjectKey, Role
from projects.storage import raw_chunks
from projects.tests.factories import PDF, stored_file

pytestmark = pytest.mark.django_db


def new_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def old_ring(settings):
    settings.KREO_KEYRING = f"k2025:{new_kek()}"
    settings.KREO_ACTIVE_KEY_ID = "k2025"
    return settings.KREO_KEYRING


def test_keyring_refuses_bad_configuration(settings):
    """A key that is not 32 bytes, or an active id not in the ring, is refused
    with a message naming the variable."""
    settings.KREO_KEYRING = "a:" + base64.b64encode(b"short").decode()
    with pytest.raises(keys.KeyError_, match="KREO_KEYRING"):
        keys.keyring()
    settings.KREO_KEYRING = f"a:{new_kek()}"
    settings.KREO_ACTIVE_KEY_ID = "b"
    with pytest.raises(keys.KeyError_, match="KREO_ACTIVE_KEY_ID"):
        keys.keyring()


def test_a_tampered_wrapped_key_does_not_unwrap(old_ring):
    """A wrapped key is bound to its project: altered or moved, it fails."""
    owner = UserFactory()
    first = services.project_create(actor=owner, name="One")
    second = services.project_create(actor=owner, name="Two")
    keys.data_key_create(first)
    keys.data_key_create(second)
    row = ProjectKey.objects.get(pk=first.pk)
    row.wrapped = bytes(ProjectKey.objects.get(pk=second.pk).wrapped)
    with pytest.raises(keys.KeyError_, match="altered"):
        keys.data_key_unwrap(row)


def test_keys_rotate_over_1000_files_then_every_download_works(
    client, settings, old_ring
):
    """200 projects x 5 small files under the old KEK; keys_rotate rewraps
    every data key under the new one, leaves the stored objects byte for byte
    as they were (a sample of 40), shows progress; with the old KEK removed
    from the ring, all 1,000 files still download."""
    owner = UserFactory()
    files = []
    for p in range(200):
        project = Project.objects.create(name=f"Estimate {p}", created_by=owner)
        Membership.objects.create(project=project, user=owner, role=Role.OWNER)
        for f in range(5):
            content = PDF + f"project {p} file {f}".encode()
            files.append(
                (stored_file(project, name=f"f{f}.pdf", content=content), content)
            )
    sample = [item for item, _ in files[::25]]
    before = {item.pk: b"".join(raw_chunks(item.blob)) for item in sample}
    assert set(ProjectKey.objects.values_list("kek_id", flat=True)) == {"k2025"}

    settings.KREO_KEYRING = f"k2026:{new_kek()},{old_ring}"
    settings.KREO_ACTIVE_KEY_ID = "k2026"
    out = _run_rotate()
    assert "rewrapped 50/200" in out
    assert "rewrapped 200/200" in out
    assert "200 data keys rewrapped under k2026" in out
    assert set(ProjectKey.objects.values_list("kek_id", flat=True)) == {"k2026"}
    assert ProjectKey.objects.filter(rotated_at__isnull=True).count() == 0
    after = {item.pk: b"".join(raw_chunks(item.blob)) for item in sample}
    assert after == before  # files are not re-encrypted

    settings.KREO_KEYRING = settings.KREO_KEYRING.split(",")[0]  # old KEK retired
    # 1,000 downloads by one account: past the hourly download limit, which
    # is not what this test is about (kreo/tests/test_limits.py is).
    settings.KREO_LIMITS_ENABLED = False
    client.force_login(owner)
    for item, content in files:
        url = reverse("projects:file-download", args=[item.project_id, item.pk])
        response = client.get(url)
        assert response.status_code == 200, item.name
        assert b"".join(response.streaming_content) == content


def _run_rotate(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("keys_rotate", "--batch", "50", *args, stdout=out)
    return out.getvalue()


def test_keys_rotate_resumes_after_an_interruption(settings, old_ring):
    """Stopped after its first batch, a rerun rewraps only what is left."""
    owner = UserFactory()
    for p in range(6):
        keys.data_key_create(services.project_create(actor=owner, name=f"P{p}"))
    settings.KREO_KEYRING = f"k2026:{new_kek()},{old_ring}"
    settings.KREO_ACTIVE_KEY_ID = "k2026"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keys.data_keys_rotate(progress=stop, batch=2)
    assert ProjectKey.objects.filter(kek_id="k2026").count() == 2
    summary = keys.data_keys_rotate(batch=2)
    assert summary["rewrapped"] == 4
    assert summary["keys_by_kek"] == {"k2026": 6}


def test_keys_rotate_without_the_old_kek_fails_clearly(settings, old_ring):
    """A data key whose KEK is gone from the ring stops the command with a
    message naming the missing key id."""
    keys.data_key_create(services.project_create(actor=UserFactory(), name="P"))
    settings.KREO_KEYRING = f"k2026:{new_kek()}"
    settings.KREO_ACTIVE_KEY_ID = "k2026"
    with pytest.raises(CommandError, match="'k2025'"):
        _run_rotate()


def test_system_check_reports_a_bad_keyring(settings):
    """manage.py check names the problem instead of failing at first upload."""
    from io import StringIO

    settings.KREO_KEYRING = "broken"
    with pytest.raises(CommandError, match="projects.E001"):
        call_command("check", stdout=StringIO(), stderr=StringIO())
