"""System checks: the keyring parses, and the erasure ledger is writable.

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
        return [Error(problem, id="projects.E003")] if problem else []
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
