"""System checks: the keyring parses, the erasure ledger is writable, and no
tombstones are left behind in a folder once the ledger moved to a bucket.

A bad keyring would otherwise surface only at the first upload or download;
a ledger that cannot be written would make every erasure fail.
"""

import os
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Tags, register

from projects import keys, ledger


@register(Tags.security)
def keyring_check(app_configs=None, **kwargs):
    try:
        keys.keyring()
    except keys.KeyError_ as exc:
        return [Error(str(exc), hint="See .env.example.", id="projects.E001")]
    return []


@register(Tags.security, deploy=True)
def ledger_check(app_configs=None, **kwargs):
    if settings.KREO_KEY_LEDGER_S3_BUCKET:
        problem = ledger.bucket_problem()
        if problem:
            return [Error(problem, id="projects.E003")]
        return _folder_left_behind(Path(settings.KREO_KEY_LEDGER_DIR))
    folder = Path(settings.KREO_KEY_LEDGER_DIR)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        writable = os.access(folder, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        return [
            Error(
                f"KREO_KEY_LEDGER_DIR {folder} is not a writable folder: "
                "erasures would fail.",
                id="projects.E002",
            )
        ]
    return []


def _folder_left_behind(folder: Path) -> list:
    """Tombstones still in the folder once the bucket is the ledger would be
    ignored: a restore would bring those erased projects back."""
    try:
        left = sum(1 for _ in folder.glob("*.json")) if folder.is_dir() else 0
    except OSError:
        left = 0
    if not left:
        return []
    return [
        Error(
            f"KREO_KEY_LEDGER_S3_BUCKET is the erasure ledger, but {left} "
            f"tombstone(s) are still in the folder {folder}, which is no longer "
            "read: a restore would bring those erased projects back.",
            hint=f"Run `manage.py ledger_import {folder}`.",
            id="projects.E004",
        )
    ]
