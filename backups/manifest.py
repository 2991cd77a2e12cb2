"""A set's manifest: where each copy lives, and reading its MAC'd manifest back.

The manifest travels with every copy (sealed with ``BACKUP_MANIFEST_KEY``), so a
copy can be checked and restored with the catalogue gone.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings

from backups import crypto, offsite
from backups.models import BackupSet

MANIFEST = "manifest.json"
NO_SUCH_COPY = "Backup set {id} has no copy {copy} here ({where})."


def set_folder(copy: int, set_id: int) -> Path:
    root = settings.BACKUP_COPY1_DIR if copy == 1 else settings.BACKUP_COPY2_DIR
    return Path(root) / f"{set_id:08d}"


def read_manifest(copy: int, set_id: int, version: str | None = None) -> dict:
    """The manifest that travels with a copy, its MAC checked (copy 3: the
    given S3 version of it, else the current one)."""
    if copy == 3:
        raw = offsite.read_small(offsite.prefix_for(set_id) + MANIFEST, version)
    else:
        path = set_folder(copy, set_id) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(
                NO_SUCH_COPY.format(id=set_id, copy=copy, where=path.parent)
            )
        raw = path.read_bytes()
    return crypto.manifest_open(raw)


def manifest_json(backup_set: BackupSet) -> str:
    return json.dumps(backup_set.manifest, indent=1)
