"""Read every copy of a set back and check it against the manifest."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from backups import crypto, offsite
from backups.manifest import read_manifest
from backups.models import BackupSet, CopyState
from backups.services.common import (
    ARTIFACT_MISMATCH,
    MANIFEST,
    Progress,
    _say,
    set_folder,
)
from kreo.streams import IterReader

DELETE_MARKER = (
    "a delete marker ({marker}) hides this object in the bucket; the version "
    "the backup wrote ({version}) was read by its id"
)
OTHER_VERSIONS = (
    "{count} other version(s) of this object that the backup did not write "
    "are in the bucket; the version it wrote ({version}) was read by its id"
)


def copy3_versions(backup_set: BackupSet) -> dict[str, str]:
    """The S3 version id of each copy-3 object the set wrote.

    From the catalogue; for a set it does not know them for (written before
    versions were recorded, or rebuilt by a rescan), the first version of
    each object, which is the one the backup wrote.
    """
    copy = next((c for c in backup_set.copies.all() if c.number == 3), None)
    if copy is not None and copy.versions:
        return dict(copy.versions)
    try:
        return offsite.written_versions(offsite.prefix_for(backup_set.pk))
    except offsite.OffsiteError:
        return {}


def copy3_warnings(set_id: int, versions: dict[str, str]) -> dict[str, str]:
    """What else is in the bucket under the set's keys: delete markers, and
    versions the backup did not write ({object name: warning})."""
    try:
        history = offsite.history(offsite.prefix_for(set_id))
    except offsite.OffsiteError:
        return {}
    warnings = {}
    for name, item in history.items():
        written = versions.get(name, "")
        notes = []
        markers = [marker for marker, _ in item["markers"]]
        if markers:
            hiding = item["latest"] if item["latest"] in markers else markers[-1]
            notes.append(DELETE_MARKER.format(marker=hiding, version=written))
        others = [v for v, _ in item["versions"] if v != written]
        if written and others:
            notes.append(OTHER_VERSIONS.format(count=len(others), version=written))
        if notes:
            warnings[name] = "; ".join(notes)
    return warnings


def _open_artifact(copy: int, set_id: int, name: str, version: str | None = None):
    if copy == 3:
        return io.BufferedReader(
            IterReader(offsite.stream(offsite.prefix_for(set_id) + name, version)),
            1024 * 1024,
        )
    return open(set_folder(copy, set_id) / name, "rb")


def _decrypting(copy: int, source, set_id: int, name: str) -> Iterator[bytes]:
    if copy == 2:
        return crypto.age_decrypt(source)
    return crypto.open_artifact(source, crypto.key_a(), set_id=set_id, name=name)


def _check_artifact(
    copy: int, set_id: int, name: str, expected: dict, version: str | None = None
) -> None:
    with _open_artifact(copy, set_id, name, version) as raw:
        source = crypto.HashingReader(raw)
        plain = hashlib.sha256()
        for piece in _decrypting(copy, source, set_id, name):
            plain.update(piece)
        source.drain()
    if (
        source.sha256.hexdigest() != expected["sha256"]
        or source.size != expected["size"]
        or plain.hexdigest() != expected["plain_sha256"]
    ):
        raise ValueError(ARTIFACT_MISMATCH.format(name=name))


def backup_verify(*, backup_set: BackupSet, actor=None, progress: Progress = None):
    """Decrypt every artifact of every copy and check it against the manifest.

    Returns one result per artifact: ``{"copy", "artifact", "ok", "error"}``,
    plus ``"warning"`` where copy 3's object has a delete marker or versions
    the backup did not write: copy 3 is read by the version ids it recorded,
    so such an object still verifies, and the warning says what was found.
    """
    results = []
    versions: dict[str, str] = {}
    warnings: dict[str, str] = {}
    for copy in (1, 2, 3):
        state = backup_set.copy_state(copy)
        if state in (CopyState.SKIPPED, CopyState.PRUNED, CopyState.LOCKED, ""):
            continue
        if state != CopyState.DONE:
            results.append(
                {"copy": copy, "artifact": "-", "ok": False, "error": f"copy {state}"}
            )
            continue
        if copy == 3:
            versions = copy3_versions(backup_set)
            warnings = copy3_warnings(backup_set.pk, versions)
        try:
            manifest = read_manifest(copy, backup_set.pk, versions.get(MANIFEST))
        except Exception as exc:
            results.append(
                {"copy": copy, "artifact": MANIFEST, "ok": False, "error": str(exc)}
            )
            continue
        if manifest != backup_set.manifest:
            results.append(
                {
                    "copy": copy,
                    "artifact": MANIFEST,
                    "ok": False,
                    "error": "differs from the catalogue's manifest",
                }
            )
            continue
        if copy == 3 and MANIFEST in warnings:
            results.append(
                {
                    "copy": 3,
                    "artifact": MANIFEST,
                    "ok": True,
                    "error": "",
                    "warning": warnings[MANIFEST],
                }
            )
        for name, expected in manifest["copies"][str(copy)]["artifacts"].items():
            _say(progress, f"copy {copy}: checking {name}")
            version = versions.get(name) if copy == 3 else None
            try:
                _check_artifact(copy, backup_set.pk, name, expected, version)
            except Exception as exc:
                result = {
                    "copy": copy,
                    "artifact": name,
                    "ok": False,
                    "error": str(exc),
                }
            else:
                result = {"copy": copy, "artifact": name, "ok": True, "error": ""}
            if copy == 3 and name in warnings:
                result["warning"] = warnings[name]
            results.append(result)
    ok = all(r["ok"] for r in results) and bool(results)
    backup_set.verified_at = timezone.now()
    backup_set.verify_ok = ok
    backup_set.verify_report = results
    backup_set.save(update_fields=["verified_at", "verify_ok", "verify_report"])
    audit_record(
        event_type="backup.verify",
        actor=actor,
        target=backup_set,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        error_code="" if ok else "backup_corrupt",
        error_description="; ".join(
            f"copy {r['copy']} {r['artifact']}: {r['error']}"
            for r in results
            if not r["ok"]
        ),
    )
    return results
