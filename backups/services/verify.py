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


class _HashingReader(io.RawIOBase):
    def __init__(self, source):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self.source.read(len(target))
        self.sha256.update(data)
        self.size += len(data)
        target[: len(data)] = data
        return len(data)

    def read(self, size=-1):
        data = self.source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _open_artifact(copy: int, set_id: int, name: str):
    if copy == 3:
        return io.BufferedReader(
            IterReader(offsite.stream(offsite.prefix_for(set_id) + name)),
            1024 * 1024,
        )
    return open(set_folder(copy, set_id) / name, "rb")


def _decrypting(copy: int, source) -> Iterator[bytes]:
    if copy == 2:
        return crypto.age_decrypt(source)
    return crypto.aead_decrypt(source, crypto.key_a())


def _check_artifact(copy: int, set_id: int, name: str, expected: dict) -> None:
    with _open_artifact(copy, set_id, name) as raw:
        source = _HashingReader(raw)
        plain = hashlib.sha256()
        for piece in _decrypting(copy, source):
            plain.update(piece)
        source.read()
    if (
        source.sha256.hexdigest() != expected["sha256"]
        or source.size != expected["size"]
        or plain.hexdigest() != expected["plain_sha256"]
    ):
        raise ValueError(ARTIFACT_MISMATCH.format(name=name))


def backup_verify(*, backup_set: BackupSet, actor=None, progress: Progress = None):
    """Decrypt every artifact of every copy and check it against the manifest.

    Returns one result per artifact: ``{"copy", "artifact", "ok", "error"}``.
    """
    results = []
    for copy in (1, 2, 3):
        state = backup_set.copy_state(copy)
        if state in (CopyState.SKIPPED, CopyState.PRUNED, CopyState.LOCKED, ""):
            continue
        if state != CopyState.DONE:
            results.append(
                {"copy": copy, "artifact": "-", "ok": False, "error": f"copy {state}"}
            )
            continue
        try:
            manifest = read_manifest(copy, backup_set.pk)
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
        for name, expected in manifest["copies"][str(copy)]["artifacts"].items():
            _say(progress, f"copy {copy}: checking {name}")
            try:
                _check_artifact(copy, backup_set.pk, name, expected)
            except Exception as exc:
                results.append(
                    {"copy": copy, "artifact": name, "ok": False, "error": str(exc)}
                )
            else:
                results.append(
                    {"copy": copy, "artifact": name, "ok": True, "error": ""}
                )
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
