"""Data exports: new archives are KREOSEAL bound to their export; one
written before (KREOF1, by the removed writer, committed under
fixtures/legacy/) still downloads through its link until it goes."""

import hashlib
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from kreo import sealed
from privacy import services
from privacy.models import DataExport, ExportState
from projects import crypto, reseal

pytestmark = pytest.mark.django_db

LEGACY = Path(__file__).parent / "fixtures" / "legacy"


@pytest.fixture
def owner(client):
    user = UserFactory(email="exporter@example.test")
    client.force_login(user)
    return user


def test_a_kreof1_export_still_downloads_and_is_counted_as_left(
    client, owner, s3_storage
):
    about = json.loads((LEGACY / "fixtures.json").read_text())
    stored = (LEGACY / about["object"]).read_bytes()
    assert stored.startswith(b"KREOF1\x00\x00")
    export = DataExport.objects.create(
        id=about["export_id"],
        user=owner,
        state=ExportState.READY,
        token_hash=hashlib.sha256(about["token"].encode()).hexdigest(),
        size=about["size"],
        ready_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    export.blob = default_storage.save(f"exports/{export.pk}", ContentFile(stored))
    export.save(update_fields=["blob"])
    assert reseal.storage_reseal()["exports_left"] == 1

    response = client.get(
        reverse("privacy:export-download", args=[export.pk, about["token"]])
    )
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == about["sha256"]


def test_a_new_export_is_kreoseal_and_opens_only_as_its_own(client, owner, s3_storage):
    """Sealed with context kreo-export/<id>: the same bytes under another
    export's id (same token) do not open."""
    client.post(reverse("privacy:export"))
    export = DataExport.objects.get(state=ExportState.PENDING)
    services.export_build(export_id=export.pk)
    export.refresh_from_db()
    with default_storage.open(export.blob, "rb") as handle:
        stored = handle.read()
    assert stored.startswith(b"KREOSEAL\x01")
    assert sealed.parse_header(stored).chunk_size == 64 * 1024
    assert reseal.storage_reseal()["exports_left"] == 0
    token = re.search(r"/([^/\s]+)/?\s*$", mail.outbox[-1].body).group(1)
    # docs/FORMATS.md §5: the export key from the link's token.
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=str(export.pk).encode(),
        info=b"kreo-data-export",
    ).derive(token.encode())
    opened = crypto.decrypt_chunks(
        key, export.pk, [stored], context=services.export_context(export.pk)
    )
    assert b"".join(opened).startswith(b"PK")
    elsewhere = services.export_context(uuid.uuid4())
    with pytest.raises(crypto.FileIntegrityError, match="chunk 0 failed"):
        b"".join(crypto.decrypt_chunks(key, export.pk, [stored], context=elsewhere))
