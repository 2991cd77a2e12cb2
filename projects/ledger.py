"""Where erasure tombstones are kept: a folder on one host, or an S3 bucket.

``projects.keys`` decides what a tombstone means; this module only stores
them. Both stores keep each tombstone as its own small object, so writers
never share a file and never lock one another.

``FolderLedger`` (``KREO_KEY_LEDGER_DIR``, the embedded default) suits one
host. With several web pods, each would keep its own folder and a restore on
another host would miss their tombstones, so ``S3Ledger``
(``KREO_KEY_LEDGER_S3_BUCKET``, which wins when set) keeps them in a bucket
every pod shares, apart from the file storage and backup buckets (no backup
of the data ever contains the ledger):

- one object per tombstone, ``<prefix>tombstones/<kind>/<id>/<time>-<random>``,
  written with ``If-None-Match: *`` (a server without conditional writes is
  asked with HEAD first), so a tombstone is never overwritten;
- Object Lock retention where the bucket has it (``kreo.s3.retention_params``:
  ``KREO_S3_LOCK_MODE`` for ``KREO_KEY_LEDGER_LOCK_DAYS``; any S3 error on
  the lock query refuses the tombstone rather than write it unlocked), so
  nobody deletes one early; listing
  reads the first version of each key, so neither a delete marker nor a
  later version written over it hides or changes a tombstone;
- a tombstone is withdrawn (its erasure rolled back) by writing a *void*
  marker, ``<prefix>voids/<same path>``, never by deleting it. Voids carry no
  retention: the only harm a wrongly written void could do is let a restore
  bring a project back, and an operator must be able to delete it to undo
  that. Deleting a void only makes erasure reach further. So, unlike
  tombstones, a void counts only while it is a current object: in a
  versioned bucket deleting it leaves a delete marker, which reinstates the
  tombstone.

Kinds: ``project`` and ``file`` (uuid ids, ``projects``), ``account`` (a user's
integer id, ``accounts``: nothing else about the person is kept here).

A key under ``tombstones/`` that is not ``<kind>/<id>/<stamp>-<random>.json``
(the empty "folder" object an S3 console creates, a stray upload) is no
tombstone: it is logged and left out, so it cannot stop every reader.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from kreo import s3 as kreo_s3

logger = logging.getLogger(__name__)

LEDGER_UNREACHABLE = (
    "The erasure ledger cannot be reached, so nothing was erased: the data "
    "stays as it was. Try again once the ledger bucket answers."
)
LEDGER_UNAVAILABLE = (
    "The erasure ledger bucket cannot be reached: try again once it answers."
)
TOMBSTONE_EXISTS = "Tombstone {name} is in the erasure ledger already: not overwritten."
LEDGER_BUCKET_SHARED = (
    "KREO_KEY_LEDGER_S3_BUCKET {bucket!r} is also the {role} bucket: the erasure "
    "ledger needs a bucket of its own, which no backup of the data contains."
)
STAMP = "%Y%m%dT%H%M%S.%fZ"
TOMBSTONES, VOIDS = "tombstones/", "voids/"
KINDS = ("project", "file", "account")
TOMBSTONE_UNREADABLE = (
    "Tombstone {path} in the erasure ledger is unreadable and its name does "
    "not say what was erased: restore it from the ledger's own backup or "
    "remove it knowingly."
)


class LedgerError(Exception):
    """The ledger refused or could not be reached; the message says which."""


def entry_id(kind: str, raw: str) -> str:
    """The canonical id of a ``kind`` tombstone; ValueError if it names none.

    Projects and files have uuids, accounts positive integers.
    """
    if kind not in KINDS:
        raise ValueError(kind)
    if kind == "account":
        if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
            raise ValueError(raw)
        return str(int(raw))
    return str(uuid.UUID(raw))


@dataclass(frozen=True)
class Tombstone:
    """One erasure as the ledger holds it; ``name`` is its file or object key."""

    kind: str
    id: str
    at: datetime
    name: str
    store: Ledger = field(compare=False, repr=False)
    version: str = ""

    def unlink(self, missing_ok: bool = True) -> None:
        """Withdraw this tombstone: its erasure rolled back before committing.

        Named as ``Path.unlink``, which the erasure's rollback calls. Never
        raises: a tombstone left behind is withdrawn by ``ledger_settle``.
        """
        try:
            self.store.void(self)
        except (LedgerError, OSError):
            logger.warning("erasure ledger: %s left for ledger_settle", self.name)


class Ledger(Protocol):
    """What ``projects.keys`` needs from a place that keeps tombstones."""

    def record(self, *, kind: str, object_id, body: dict) -> Tombstone: ...

    def tombstones(self, kind: str | None = None) -> list[Tombstone]:
        """Tombstones in force (not voided), oldest first."""
        ...

    def read(self, tombstone: Tombstone) -> dict: ...

    def void(self, tombstone: Tombstone) -> bool:
        """Withdraw ``tombstone``; False when it already was."""
        ...


@dataclass(frozen=True)
class FolderLedger:
    """One JSON file per tombstone in a folder; withdrawing deletes the file."""

    folder: Path

    def record(self, *, kind: str, object_id, body: dict) -> Tombstone:
        """Write to a temporary name, sync, then rename into place."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.folder / f"{kind}-{object_id}.json"
        temporary = self.folder / f".{path.name}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(body, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return self._tombstone(path, body)

    def _tombstone(self, path: Path, body: dict) -> Tombstone:
        at = datetime.fromisoformat(body["at"])
        return Tombstone(body["kind"], body["id"], at, str(path), self)

    def tombstones(self, kind: str | None = None) -> list[Tombstone]:
        if not self.folder.exists():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            tombstone = self._load(path)
            if kind is None or tombstone.kind == kind:
                found.append(tombstone)
        return found

    def _load(self, path: Path) -> Tombstone:
        """A tombstone whose body is damaged still names what was erased in
        its file name (``kind-id.json``): it keeps applying, dated by the
        file. One that names nothing stops the reader (LedgerError), rather
        than let a restore skip an erasure."""
        try:
            return self._tombstone(path, json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, OSError) as exc:
            kind, _, object_id = path.stem.partition("-")
            try:
                object_id = entry_id(kind, object_id)
                at = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
            except (ValueError, OSError):
                raise LedgerError(TOMBSTONE_UNREADABLE.format(path=path)) from exc
            logger.warning("erasure ledger: %s is damaged, read from its name", path)
            return Tombstone(kind, object_id, at, str(path), self)

    def read(self, tombstone: Tombstone) -> dict:
        return json.loads(Path(tombstone.name).read_text(encoding="utf-8"))

    def void(self, tombstone: Tombstone) -> bool:
        path = Path(tombstone.name)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed


def s3_client():
    return kreo_s3.client(
        settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL,
        settings.KREO_KEY_LEDGER_S3_REGION,
        read_timeout=20,
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class S3Ledger:
    """One object per tombstone in a bucket every pod shares (module docstring)."""

    bucket: str
    prefix: str = ""
    client: object = field(default_factory=s3_client, compare=False, repr=False)

    def record(self, *, kind: str, object_id, body: dict) -> Tombstone:
        at = datetime.fromisoformat(body["at"]).astimezone(UTC)
        path = f"{kind}/{object_id}/{at.strftime(STAMP)}-{secrets.token_hex(6)}.json"
        key = self.prefix + TOMBSTONES + path
        try:
            self.put_new(key, json.dumps(body).encode(), locked=True)
        except (BotoCoreError, ClientError) as exc:
            logger.error("erasure ledger: cannot write %s: %s", key, exc)
            raise LedgerError(LEDGER_UNREACHABLE) from exc
        return Tombstone(kind, str(object_id), at, key, self)

    def put_new(self, key: str, data: bytes, *, locked: bool) -> None:
        """Create ``key``; LedgerError (TOMBSTONE_EXISTS) if it is there already."""
        extra = {"ServerSideEncryption": "AES256", "ContentType": "application/json"}
        if locked:
            extra.update(self._retention())
        put = {"Bucket": self.bucket, "Key": key, "Body": data, **extra}
        try:
            self.client.put_object(**put, IfNoneMatch="*")
            return
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                raise LedgerError(TOMBSTONE_EXISTS.format(name=key)) from exc
            if _code(exc) not in ("NotImplemented", "501"):
                raise
        # No conditional writes on this server: look before writing.
        if self._exists(key):
            raise LedgerError(TOMBSTONE_EXISTS.format(name=key))
        self.client.put_object(**put)

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _retention(self) -> dict:
        return kreo_s3.retention_params(
            self.client, self.bucket, days=settings.KREO_KEY_LEDGER_LOCK_DAYS
        )

    def _versions(self, folder: str) -> dict[str, str]:
        """Each key under ``folder`` with its first stored version, page by
        page: a delete marker hides nothing, a later version replaces
        nothing.

        LastModified has one-second resolution, so two versions can tie; S3
        lists a key's versions newest first, so of equal times the one listed
        later is the older and wins.
        """
        first: dict[str, tuple] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            for version in page.get("Versions", []):
                seen = first.get(version["Key"])
                if seen is None or version["LastModified"] <= seen[0]:
                    first[version["Key"]] = (
                        version["LastModified"],
                        version["VersionId"],
                    )
        return {key: version for key, (_, version) in first.items()}

    def _current(self, folder: str) -> set[str]:
        """Keys under ``folder`` whose latest version is an object, not a
        delete marker: what an operator deleted no longer counts."""
        found: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
            found.update(item["Key"] for item in page.get("Contents", []))
        return found

    def _parse(self, key: str, version: str) -> Tombstone | None:
        """The tombstone ``key`` names, or None (logged) when it names none."""
        path = key[len(self.prefix + TOMBSTONES) :]
        parts = path.split("/")
        try:
            entry_kind, raw_id, leaf = parts
            if not leaf.endswith(".json"):
                raise ValueError(path)
            object_id = entry_id(entry_kind, raw_id)
            stamp, _, rand = leaf[: -len(".json")].rpartition("-")
            if not rand:
                raise ValueError(path)
            at = datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)
        except ValueError:
            logger.warning("erasure ledger: %s is not a tombstone, skipped", key)
            return None
        return Tombstone(entry_kind, object_id, at, key, self, version)

    def tombstones(self, kind: str | None = None) -> list[Tombstone]:
        under = f"{kind}/" if kind else ""
        try:
            recorded = self._versions(self.prefix + TOMBSTONES + under)
            voided = self._current(self.prefix + VOIDS + under)
        except (BotoCoreError, ClientError) as exc:
            logger.error("erasure ledger: cannot list %s: %s", self.bucket, exc)
            raise LedgerError(LEDGER_UNAVAILABLE) from exc
        found = []
        for key, version in recorded.items():
            path = key[len(self.prefix + TOMBSTONES) :]
            if self.prefix + VOIDS + path in voided:
                continue
            if (tombstone := self._parse(key, version)) is not None:
                found.append(tombstone)
        return sorted(found, key=lambda t: (t.at, t.name))

    def read(self, tombstone: Tombstone) -> dict:
        try:
            version = {"VersionId": tombstone.version} if tombstone.version else {}
            got = self.client.get_object(
                Bucket=self.bucket, Key=tombstone.name, **version
            )
            return json.loads(got["Body"].read())
        except (BotoCoreError, ClientError) as exc:
            raise LedgerError(LEDGER_UNAVAILABLE) from exc

    def void(self, tombstone: Tombstone) -> bool:
        path = tombstone.name[len(self.prefix + TOMBSTONES) :]
        body = {"voids": tombstone.name, "at": timezone.now().isoformat()}
        try:
            data = json.dumps(body).encode()
            self.put_new(self.prefix + VOIDS + path, data, locked=False)
        except LedgerError:
            return False  # another pod voided it first
        except (BotoCoreError, ClientError) as exc:
            raise LedgerError(LEDGER_UNAVAILABLE) from exc
        return True


def bucket_problem() -> str:
    """Why ``KREO_KEY_LEDGER_S3_BUCKET`` cannot be the ledger, or ""."""
    bucket = settings.KREO_KEY_LEDGER_S3_BUCKET
    files = settings.STORAGES["default"].get("OPTIONS", {}).get("bucket_name", "")
    others = (
        ("file storage", files),
        ("file storage", getattr(settings, "AWS_STORAGE_BUCKET_NAME", "")),
        ("backup", getattr(settings, "BACKUP_S3_BUCKET", "")),
        ("audit archive", getattr(settings, "AUDIT_ARCHIVE_S3_BUCKET", "")),
    )
    for role, other in others:
        if other and other == bucket:
            return LEDGER_BUCKET_SHARED.format(bucket=bucket, role=role)
    return ""


def ledger() -> Ledger:
    """The configured store: the bucket when one is named, else the folder."""
    bucket = settings.KREO_KEY_LEDGER_S3_BUCKET
    if not bucket:
        return FolderLedger(Path(settings.KREO_KEY_LEDGER_DIR))
    if problem := bucket_problem():
        raise LedgerError(problem)
    return S3Ledger(bucket=bucket, prefix=settings.KREO_KEY_LEDGER_S3_PREFIX)
