"""The restore drill: restore the latest set into a scratch database."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import connection
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from backups import databases, filesets
from backups.manifest import read_manifest
from backups.models import BackupSet, RestoreDrill, SetState
from backups.services.common import FILES_1, FILES_2, Progress, set_folder
from backups.services.restore import _restore_into
from backups.services.verify import _decrypting

NOTHING_TO_DRILL = "No backup set to drill: none has completed."
DRILL_MAIL_SUBJECT = "Kreo backup restore drill FAILED for set {id}"


@contextmanager
def _scratch_database():
    if connection.vendor == "postgresql":
        name = f"kreo_drill_{os.urandom(6).hex()}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        alias = databases.register_alias({"NAME": name}, prefix="drill")
        try:
            yield alias
        finally:
            databases.drop_alias(alias)
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    else:
        with tempfile.TemporaryDirectory(prefix="kreo-drill-") as folder:
            alias = databases.register_alias(
                {"NAME": str(Path(folder) / "drill.sqlite3")}, prefix="drill"
            )
            try:
                yield alias
            finally:
                databases.drop_alias(alias)


def compare_with_manifest(manifest: dict, stats: dict, files: dict) -> list[str]:
    mismatches = []
    for table, expected in manifest["tables"].items():
        got = stats.get(table)
        if got != expected:
            mismatches.append(f"table {table}: expected {expected}, restored {got}")
    expected_files = {k: v for k, v in manifest["files"].items() if k != "missing"}
    got_files = {k: v for k, v in files.items() if k != "missing"}
    if got_files != expected_files:
        mismatches.append(f"files: expected {expected_files}, restored {got_files}")
    return mismatches


def backup_drill(
    *, actor=None, copy: int = 1, progress: Progress = None
) -> RestoreDrill:
    """Restore the latest set into a scratch database and compare with its manifest.

    A failure is recorded, audited and mailed to every active staff user.
    """
    backup_set = (
        BackupSet.objects.filter(state__in=[SetState.GOOD, SetState.INCOMPLETE])
        .order_by("-created_at", "-id")
        .first()
    )
    drill = RestoreDrill.objects.create(
        backup_set=backup_set, started_at=timezone.now(), copy_number=copy
    )
    mismatches: list[str] = []
    try:
        if backup_set is None:
            raise ValueError(NOTHING_TO_DRILL)
        manifest = read_manifest(copy, backup_set.pk)
        folder = set_folder(copy, backup_set.pk)
        with _scratch_database() as alias:
            _restore_into(manifest, backup_set.pk, copy, folder, alias, False, progress)
            stats = databases.table_stats(alias)
        files_name = FILES_2 if copy == 2 else FILES_1
        with open(folder / files_name, "rb") as fs:
            summary = filesets.tar_summary(
                _decrypting(copy, fs, backup_set.pk, files_name)
            )
        mismatches = compare_with_manifest(manifest, stats, summary.as_dict())
    except Exception as exc:
        drill.error = str(exc)[:4000]
    drill.mismatches = mismatches
    drill.ok = not mismatches and not drill.error
    drill.finished_at = timezone.now()
    drill.save()
    audit_record(
        event_type="backup.drill",
        actor=actor,
        target=backup_set,
        outcome=Outcome.SUCCESS if drill.ok else Outcome.FAILURE,
        error_code="" if drill.ok else "drill_failed",
        error_description=drill.error or "; ".join(mismatches),
    )
    if not drill.ok:
        _mail_staff(drill)
    return drill


def _mail_staff(drill: RestoreDrill) -> None:
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    body = "\n".join(
        [
            f"Restore drill {drill.pk} of backup set {drill.backup_set_id} failed.",
            drill.error,
            *drill.mismatches,
        ]
    )
    send_mail(
        DRILL_MAIL_SUBJECT.format(id=drill.backup_set_id),
        body,
        settings.DEFAULT_FROM_EMAIL,
        recipients,
        fail_silently=False,
    )
