"""Project data keys, the key-encryption keys that wrap them, and erasure records.

Envelope encryption: every project has a random 256-bit data key that
encrypts its files (``projects.crypto``). The data key is stored only wrapped
(AES-256-GCM) by a key-encryption key (KEK) from the keyring, with the KEK's
id recorded, in ``ProjectKey``. The keyring comes from the environment::

    KREO_KEYRING="2026a:<base64 32 bytes>,2025b:<base64 32 bytes>"
    KREO_ACTIVE_KEY_ID=2026a

``KeyEncryptionKeys`` is the whole interface the rest of the code uses
(``active_id``, ``wrap``, ``unwrap``); a cloud KMS client can implement it.

Erasure that reaches backups: destroying a project's data key also writes a
tombstone to the erasure ledger, kept outside the database and outside the
file storage, so no backup of either contains it and no restore rolls it
back. ``after_restore`` (called by the backup restore path) applies every
tombstone to the restored database: the data keys of erased projects are
destroyed again and their rows and objects removed. Retiring a KEK from the
keyring after ``keys_rotate`` makes every older backup's wrapped keys, read
outside the restore path, undecryptable.

The ledger is a folder (``KREO_KEY_LEDGER_DIR``) on one host, or, for
several pods, an S3 bucket of its own that all of them share
(``KREO_KEY_LEDGER_S3_BUCKET``): see ``projects.ledger``. A tombstone that
cannot be written refuses the erasure (``LedgerError``) before anything is
erased. In the bucket tombstones are never overwritten nor deleted; one whose
erasure rolled back is withdrawn by a void marker beside it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.cache import cache
from django.db import models, transaction
from django.utils import timezone

from projects.ledger import (  # noqa: F401 - the ledger's interface, re-exported
    LEDGER_UNAVAILABLE,
    LEDGER_UNREACHABLE,
    TOMBSTONE_EXISTS,
    FolderLedger,
    LedgerError,
    S3Ledger,
    Tombstone,
    ledger,
)

logger = logging.getLogger(__name__)

DATA_KEY_BYTES = 32
NONCE = 12
# An erasure commits well within this; a tombstone older than it whose project
# or file still exists belongs to an erasure that rolled back.
SETTLE_GRACE_SECONDS = 3600
# Set in the shared cache (Redis in production) while a restore rewrites the
# live database: settling then would withdraw the tombstones of projects the
# restore just brought back. Expires on its own after a crashed restore.
RESTORING_KEY = "projects.keys.restoring"
RESTORING_SECONDS = 6 * 3600

KEYRING_EMPTY = "KREO_KEYRING is empty: set it to id:base64key[,id:base64key...]."
KEYRING_BAD = "KREO_KEYRING entry {entry!r} is not id:base64 of 32 bytes."
ACTIVE_UNKNOWN = "KREO_ACTIVE_KEY_ID {kid!r} is not an id in KREO_KEYRING."
KEK_UNKNOWN = (
    "The data key of this project is wrapped by key-encryption key {kid!r}, "
    "which is not in KREO_KEYRING."
)
UNWRAP_FAILED = "The data key of this project does not unwrap: it was altered."
KEY_DESTROYED = "The project's data key was destroyed: its files cannot be read."
LEDGER_IMPORT_NEEDS_BUCKET = (
    "Set KREO_KEY_LEDGER_S3_BUCKET first: tombstones are imported into it."
)
RESTORE_LEDGER_UNREACHABLE = (
    "The database was restored but the erasure ledger cannot be read, so "
    "projects erased since the backup may be back: keep the site closed and "
    "run projects.keys.after_restore() again once the ledger answers."
)


class KeyError_(Exception):  # noqa: N801 - KeyError is a builtin
    """A data key cannot be produced; the message says why."""


class KeyEncryptionKeys(Protocol):
    """What a KMS offers: wrap under the active key, unwrap under any known one."""

    active_id: str

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, key_id: str, wrapped: bytes, *, context: bytes) -> bytes: ...


def _decode(raw: str) -> bytes:
    raw = raw.strip()
    try:
        if "-" in raw or "_" in raw:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def parse_keyring(text: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        kid, _, material = entry.strip().partition(":")
        key = _decode(material)
        if not kid or len(key) != DATA_KEY_BYTES:
            raise KeyError_(KEYRING_BAD.format(entry=kid or entry[:8]))
        keys[kid] = key
    if not keys:
        raise KeyError_(KEYRING_EMPTY)
    return keys


@dataclass(frozen=True)
class LocalKeyring:
    """KEKs held in the process, from the environment."""

    keys: tuple[tuple[str, bytes], ...]
    active_id: str

    def _key(self, key_id: str) -> bytes:
        for kid, key in self.keys:
            if kid == key_id:
                return key
        raise KeyError_(KEK_UNKNOWN.format(kid=key_id))

    def wrap(self, data_key: bytes, *, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE)
        aad = self.active_id.encode() + b"\x00" + context
        sealed = AESGCM(self._key(self.active_id)).encrypt(nonce, data_key, aad)
        return self.active_id, nonce + sealed

    def unwrap(self, key_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        aad = key_id.encode() + b"\x00" + context
        try:
            return AESGCM(self._key(key_id)).decrypt(
                bytes(wrapped[:NONCE]), bytes(wrapped[NONCE:]), aad
            )
        except InvalidTag:
            raise KeyError_(UNWRAP_FAILED) from None


@lru_cache(maxsize=4)
def _keyring(text: str, active: str) -> LocalKeyring:
    keys = parse_keyring(text)
    if active not in keys:
        raise KeyError_(ACTIVE_UNKNOWN.format(kid=active))
    return LocalKeyring(keys=tuple(keys.items()), active_id=active)


def keyring() -> KeyEncryptionKeys:
    """The configured KEKs (read from settings on each call, cached by value)."""
    return _keyring(settings.KREO_KEYRING, settings.KREO_ACTIVE_KEY_ID)


def _context(project_id) -> bytes:
    return b"kreo-project-data-key\x00" + uuid.UUID(str(project_id)).bytes


# Data keys --------------------------------------------------------------------


def data_key_create(project) -> bytes:
    """Give ``project`` a data key if it has none; return the key."""
    from projects.models import ProjectKey

    with transaction.atomic():
        existing = (
            ProjectKey.objects.select_for_update().filter(project=project).first()
        )
        if existing is not None:
            return data_key_unwrap(existing)
        data_key = os.urandom(DATA_KEY_BYTES)
        kid, wrapped = keyring().wrap(data_key, context=_context(project.pk))
        ProjectKey.objects.create(project=project, kek_id=kid, wrapped=wrapped)
        return data_key


def data_key_unwrap(row) -> bytes:
    return keyring().unwrap(row.kek_id, bytes(row.wrapped), context=_context(row.pk))


def data_key_get(project_id) -> bytes:
    """The data key of the project, or KeyError_ when it was destroyed."""
    from projects.models import ProjectKey

    row = ProjectKey.objects.filter(pk=project_id).first()
    if row is None:
        raise KeyError_(KEY_DESTROYED)
    return data_key_unwrap(row)


def data_key_rewrap(row) -> bool:
    """Wrap ``row``'s data key under the active KEK; False if it already is."""
    ring = keyring()
    if row.kek_id == ring.active_id:
        return False
    data_key = data_key_unwrap(row)
    row.kek_id, row.wrapped = ring.wrap(data_key, context=_context(row.pk))
    row.rotated_at = timezone.now()
    row.save(update_fields=["kek_id", "wrapped", "rotated_at"])
    return True


# The erasure ledger -------------------------------------------------------------


_written: ContextVar[list[Tombstone] | None] = ContextVar(
    "ledger_written", default=None
)


@contextmanager
def ledger_recording() -> Iterator[list[Tombstone]]:
    """Collect the tombstones written inside the block, in order.

    For a caller whose own transaction wraps several erasures: each erasure
    withdraws its tombstone when it fails itself, but not when the caller
    rolls back erasures that had succeeded; the caller withdraws those.
    """
    written: list[Tombstone] = []
    token = _written.set(written)
    try:
        yield written
    finally:
        _written.reset(token)


def ledger_withdraw(tombstones: Iterable[Tombstone]) -> int:
    """Withdraw tombstones whose erasure rolled back, best effort; return how
    many were tried. One that cannot be withdrawn now is logged and left for
    ``ledger_settle``."""
    count = 0
    for tombstone in tombstones:
        logger.warning(
            "erasure ledger: %s %s rolled back, withdrawing %s",
            tombstone.kind,
            tombstone.id,
            tombstone.name,
        )
        tombstone.unlink(missing_ok=True)
        count += 1
    return count


@dataclass(frozen=True)
class ErasureKind:
    """How another app's tombstones are checked and applied again.

    ``exists(tombstone, using)``: the erased thing is in database ``using``
    (so its erasure rolled back, once past the grace period).
    ``reapply(tombstones, using, actor)``: erase them again in a restored
    database; returns a summary merged into ``after_restore``'s.
    """

    exists: Callable[[Tombstone, str], bool]
    reapply: Callable[..., dict]


_kinds: dict[str, ErasureKind] = {}


def erasure_kind_register(name: str, kind: ErasureKind) -> None:
    """Let the app that owns ``name`` tombstones apply them after a restore.

    Called from that app's ``AppConfig.ready``: ``projects`` then never
    imports the apps above it, and a restore applies their erasures too.
    """
    _kinds[name] = kind


def ledger_record(*, kind: str, object_id, details: dict) -> Tombstone:
    """Write a tombstone for an erased project, file or account, durably,
    before erasing.

    Raises ``LedgerError`` (``LEDGER_UNREACHABLE``) when the ledger bucket
    cannot be written: the caller has erased nothing yet and must not, since
    an erasure without its tombstone would come back with the next restore.
    ``unlink()`` on the result withdraws the tombstone if the erasure rolls
    back.
    """
    body = {"kind": kind, "id": str(object_id), "at": timezone.now().isoformat()}
    store = ledger()
    tombstone = store.record(kind=kind, object_id=object_id, body={**body, **details})
    if (written := _written.get()) is not None:
        written.append(tombstone)
    return tombstone


def ledger_entries(kind: str | None = None) -> list[dict]:
    """Every tombstone in force (withdrawn ones left out), as written."""
    store = ledger()
    return [store.read(tombstone) for tombstone in store.tombstones(kind)]


def ledger_rolled_back(
    tombstones: Iterable[Tombstone],
    *,
    now=None,
    grace_seconds: int = SETTLE_GRACE_SECONDS,
    using: str = "default",
) -> list[Tombstone]:
    """The tombstones whose erasure certainly rolled back: older than the
    grace period, and their project or file still exists in ``using``.
    Younger ones may belong to an erasure still in flight."""
    from projects.models import Project, ProjectFile

    now = now or timezone.now()
    found = []
    for tombstone in tombstones:
        if (now - tombstone.at).total_seconds() <= grace_seconds:
            continue
        if tombstone.kind in ("project", "file"):
            model = Project if tombstone.kind == "project" else ProjectFile
            still = model.objects.using(using).filter(pk=tombstone.id).exists()
        elif (kind := _kinds.get(tombstone.kind)) is not None:
            still = kind.exists(tombstone, using)
        else:
            still = False  # a kind nobody registered: never withdrawn
        if still:
            found.append(tombstone)
    return found


def ledger_settle(*, now=None, grace_seconds: int = SETTLE_GRACE_SECONDS) -> int:
    """Withdraw tombstones of erasures that rolled back; return how many.

    A tombstone is written before its erasure commits. One older than the
    grace period whose project or file still exists in the live database
    belongs to an erasure that never happened. The folder deletes it; the
    bucket, whose tombstones are locked, writes a void marker beside it. Never
    call this between a database restore and ``after_restore``: with a shared
    bucket that means no pod settles while a restore into the live database
    runs. ``backup_restore`` marks such a restore (``restoring``) in the
    shared cache and settling skips while the mark is there.
    """
    if cache.get(RESTORING_KEY):
        logger.warning("erasure ledger: a restore is running, settling skipped")
        return 0
    store = ledger()
    stale = ledger_rolled_back(store.tombstones(), now=now, grace_seconds=grace_seconds)
    return sum(int(store.void(tombstone)) for tombstone in stale)


@contextmanager
def restoring():
    """Mark a restore into the live database: no process that shares the
    cache settles the ledger meanwhile (the embedded default's cache is per
    process: there, stop the worker for a restore)."""
    cache.set(RESTORING_KEY, timezone.now().isoformat(), RESTORING_SECONDS)
    try:
        yield
    finally:
        cache.delete(RESTORING_KEY)


def ledger_import(folder) -> int:
    """Move a folder ledger's tombstones into the configured bucket; return how
    many moved.

    For a deployment leaving ``KREO_KEY_LEDGER_DIR`` for
    ``KREO_KEY_LEDGER_S3_BUCKET``: each tombstone keeps its time and details,
    and its file is removed only once the bucket holds it, so a run that
    stops half-way is simply run again.
    """
    source, target = FolderLedger(Path(folder)), ledger()
    if not isinstance(target, S3Ledger):
        raise LedgerError(LEDGER_IMPORT_NEEDS_BUCKET)
    present = {(t.kind, t.id) for t in target.tombstones()}
    moved = 0
    for tombstone in source.tombstones():
        if (tombstone.kind, tombstone.id) not in present:
            body = source.read(tombstone)
            target.record(kind=tombstone.kind, object_id=tombstone.id, body=body)
            moved += 1
        source.void(tombstone)
    return moved


def after_restore(
    *,
    using: str = "default",
    actor=None,
    tombstones: list[Tombstone] | None = None,
    withdrawn: Iterable[Tombstone] = (),
    remove_objects: bool = True,
) -> dict:
    """Apply the erasure ledger to a just-restored database and file storage.

    The backup restore path calls this after the database and files are back.
    Every project erased since the backup loses its data key again, then its
    rows and objects; every deleted file loses its row and every version of
    its object; tombstones of other kinds go to the app that registered them
    (``erasure_kind_register``: deleted accounts, ``accounts``).

    By default the ledger is read now, and an unreadable one raises
    ``LedgerError`` (``RESTORE_LEDGER_UNREACHABLE``): the restored data may
    hold erased projects until this runs again. ``tombstones`` are the ones
    read before the restore touched anything: they are applied together with
    any the ledger holds now, or alone if it cannot be read now (never fewer
    than were read first; ``ledger_current`` in the summary says which).
    ``withdrawn`` are tombstones known to be rolled back (``ledger_rolled_back``
    before the restore): left out of the reading made now too.

    The objects live in the one file storage, the live one. With
    ``remove_objects`` False (a restore into another database that wrote no
    files) none is deleted: those objects are the live site's, and a
    tombstone of an erasure still in flight or rolled back would take a file
    the live database still holds.
    """
    from audit.services import audit_record
    from projects.models import Project, ProjectFile, ProjectKey
    from projects.storage import blob_delete_all_versions

    current = True
    try:
        found = ledger().tombstones()
    except LedgerError as exc:
        if tombstones is None:
            raise LedgerError(RESTORE_LEDGER_UNREACHABLE) from exc
        found, current = [], False
    skip = {t.name for t in withdrawn}
    tombstones = [*(tombstones or []), *(t for t in found if t.name not in skip)]
    project_ids = sorted({t.id for t in tombstones if t.kind == "project"})
    file_ids = sorted({t.id for t in tombstones if t.kind == "file"})
    with transaction.atomic(using=using):
        keys = ProjectKey.objects.using(using).filter(pk__in=project_ids).delete()[0]
        files = ProjectFile.objects.using(using).filter(
            models.Q(project_id__in=project_ids) | models.Q(pk__in=file_ids)
        )
        names = [
            name for pair in files.values_list("blob", "thumbnail") for name in pair
        ]
        names = [name for name in names if name]
        file_rows = files.delete()[0]
        projects = Project.objects.using(using).filter(pk__in=project_ids).delete()[0]
    removed = []
    for name in names if remove_objects else []:
        removed.extend(blob_delete_all_versions(name))
    summary = {
        "ledger_entries": len(project_ids) + len(file_ids),
        "keys_destroyed": keys,
        "rows_removed": file_rows + projects,
        "objects_removed": len(removed),
        "ledger_current": current,
    }
    changed = bool(keys or file_rows or projects or removed)
    for name, kind in sorted(_kinds.items()):
        own = list({t.name: t for t in tombstones if t.kind == name}.values())
        if own:
            done = kind.reapply(tombstones=own, using=using, actor=actor)
            summary["ledger_entries"] += len(own)
            summary.update(done)
            changed = changed or any(done.values())
    if changed or not current:
        audit_record(event_type="erasure.reapply", actor=actor, details=summary)
    return summary


def data_keys_rotate(*, actor=None, progress=None, batch: int = 200) -> dict:
    """Rewrap every data key not under the active KEK; files are not touched.

    Each key is rewrapped in its own short transaction, so an interrupted run
    loses nothing and the next run continues with the keys still to do.
    ``progress(done, total)`` is called after each batch.
    """
    from audit.services import audit_record
    from projects.models import ProjectKey

    active = keyring().active_id
    pending = ProjectKey.objects.exclude(kek_id=active)
    total, done, last = pending.count(), 0, None
    while True:
        page = pending.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        ids = list(page.values_list("pk", flat=True)[:batch])
        if not ids:
            break
        for pk in ids:
            with transaction.atomic():
                row = ProjectKey.objects.select_for_update().filter(pk=pk).first()
                if row is not None and data_key_rewrap(row):
                    done += 1
        last = ids[-1]
        if progress:
            progress(done, total)
    by_kek = dict(
        ProjectKey.objects.values_list("kek_id").annotate(n=models.Count("pk"))
    )
    summary = {"rewrapped": done, "active": active, "keys_by_kek": by_kek}
    audit_record(event_type="keys.rotate", actor=actor, details=summary)
    return summary
