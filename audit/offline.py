"""Verify the archives with no database: from the bucket or a folder copy.

What an auditor holds without the application's database: the archive
objects and their manifests (S3, or a copy of the prefix in a folder), the
anchors (``audit/anchors.py``), the published public key, the archive key and
the event key ring. Each archive is read whole: the object's SHA-256 and size
against its manifest; every event's content hash and MAC; each seal of the
manifest rebuilt from the events in its range (head, count) and its Ed25519
signature; the seals linked across the archives in order from the genesis
head; and every seal an anchor pins must be the seal the archive holds (same
last id, head and signature). The format is docs/FORMATS.md sections 3-4;
``tools/kreo_open.py audit-verify`` checks one archive the same way.
"""

import bisect
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature

from audit import archive as archive_mod
from audit import chain, keys, legacy
from kreo import sealed

MANIFEST_SUFFIX = ".manifest.json"


@dataclass
class ArchivesReport:
    archives: int = 0
    events: int = 0
    seals: int = 0
    pinned: int = 0
    problems: list[str] = field(default_factory=list)


class FolderArchives:
    """A folder holding copies of the archive objects and their manifests."""

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def manifests(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.path))
            for p in self.path.rglob(f"*{MANIFEST_SUFFIX}")
        )

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def open(self, manifest_name: str, object_key: str):
        """The object beside its manifest (a copy keeps the key's file name)."""
        return open(
            self.path / Path(manifest_name).parent / Path(object_key).name, "rb"
        )


class S3Archives:
    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def manifests(self) -> list[str]:
        names = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            names += [
                item["Key"]
                for item in page.get("Contents", [])
                if item["Key"].endswith(MANIFEST_SUFFIX)
            ]
        return sorted(names)

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def open(self, manifest_name: str, object_key: str):
        return self.client.get_object(Bucket=self.bucket, Key=object_key)["Body"]


def archives_at(location: str):
    """``s3://bucket/prefix`` or a folder; blank: this deployment's archives."""
    from django.conf import settings

    if not location:
        return S3Archives(
            archive_mod.s3_client(),
            settings.AUDIT_ARCHIVE_S3_BUCKET,
            settings.AUDIT_ARCHIVE_PREFIX,
        )
    if location.startswith("s3://"):
        bucket, _, prefix = location[5:].partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Archives(archive_mod.s3_client(), bucket, prefix)
    return FolderArchives(location)


class _Counting:
    """``read(n)`` over a body, counting the bytes and hashing them."""

    def __init__(self, body):
        self.body, self.size, self.sha = body, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.body.read(size)
        self.size += len(data)
        self.sha.update(data)
        return data


def verify_archives(where, verifying, pinned: dict) -> ArchivesReport:
    """Check every archive in ``where`` (see the module docstring); ``pinned``:
    seq -> (anchor number, seal entry), from ``anchors.read_chain``."""
    report = ArchivesReport()
    ring = keys.event_keys()
    manifests = []
    try:
        names = where.manifests()
    except (OSError, BotoCoreError, ClientError) as exc:
        report.problems.append(f"{where}: cannot list the archives: {exc}")
        return report
    for name in names:
        try:
            manifests.append((name, json.loads(where.read(name))))
        except ValueError as exc:
            report.problems.append(f"{name}: manifest unreadable: {exc}")
    manifests.sort(key=lambda item: int(item[1].get("first_id", 0)))
    prev_head, prev_seq, prev_last = chain.GENESIS, 0, 0
    for name, manifest in manifests:
        report.archives += 1
        try:
            prev_head, prev_seq, prev_last = _one(
                where,
                name,
                manifest,
                verifying,
                ring,
                pinned,
                report,
                (prev_head, prev_seq, prev_last),
            )
        except (
            archive_mod.ArchiveError,
            sealed.SealedError,
            legacy.LegacyError,
            zlib.error,
            OSError,
            KeyError,
            ValueError,
            BotoCoreError,
            ClientError,
        ) as exc:
            report.problems.append(f"{manifest.get('object', name)}: {exc}")
    return report


def _one(where, name, manifest, verifying, ring, pinned, report, before) -> tuple:
    key = manifest["object"]
    body = _Counting(where.open(name, key))
    pairs, times, problems = [], {}, report.problems
    keyed = False
    for row in archive_mod._rows(archive_mod._plain_chunks(body, key)):
        report.events += 1
        pk = int(row["id"])
        text = chain.canonical(row)
        if hashlib.sha256(text).hexdigest() != row["content_hash"]:
            problems.append(f"{key}: event {pk}: content does not match its hash")
        if chain.is_keyed(row):
            keyed = True
            reason = chain.mac_problem(row, ring, text)
            if reason:
                problems.append(f"{key}: event {pk}: {row['event_type']} {reason}")
        elif keyed:
            problems.append(f"{key}: event {pk}: {chain.NO_MAC}")
        pairs.append((pk, row["content_hash"]))
        times[pk] = row["occurred_at"]
    while body.read(archive_mod.READ):  # hash to the object's last byte
        pass
    if body.sha.hexdigest() != manifest.get("sha256") or body.size != manifest.get(
        "size"
    ):
        problems.append(f"{key}: SHA-256 or size differs from its manifest")
    if len(pairs) != manifest.get("count"):
        problems.append(
            f"{key}: {len(pairs)} events, manifest says {manifest['count']}"
        )
    return _seals(key, manifest, pairs, verifying, pinned, report, before)


def _seals(key, manifest, pairs, verifying, pinned, report, before) -> tuple:
    prev_head, prev_seq, prev_last = before
    ids = [pk for pk, _ in pairs]
    for record in sorted(manifest.get("seal_records") or [], key=lambda s: s["seq"]):
        report.seals += 1
        seq = int(record["seq"])
        if seq != prev_seq + 1 or record["prev_head"] != prev_head:
            report.problems.append(
                f"{key}: seal {seq} does not follow seal {prev_seq} "
                "(a seal or an archive is missing or was replaced)"
            )
        if int(record["first_id"]) != prev_last + 1:
            report.problems.append(f"{key}: gap before seal {seq}")
        start = bisect.bisect_left(ids, int(record["first_id"]))
        inside = pairs[start : bisect.bisect_right(ids, int(record["last_id"]))]
        digests = chain.pack_digests(inside)
        if chain.next_head(record["prev_head"], digests) != record["head"] or len(
            inside
        ) != int(record["count"]):
            report.problems.append(
                f"{key}: seal {seq}: the events in the archive do not rebuild its "
                "head (an event was altered, removed or added)"
            )
        seal = SimpleNamespace(**{**record, "rejected": record.get("rejected") or []})
        try:
            verifying.verify(bytes.fromhex(record["signature"]), chain.seal_text(seal))
        except (InvalidSignature, ValueError):
            report.problems.append(f"{key}: seal {seq}: bad signature")
        for pk in seal.rejected:
            report.problems.append(f"{key}: event {pk} rejected by seal {seq}")
        anchored = pinned.get(seq)
        if anchored is not None:
            report.pinned += 1
            n, entry = anchored
            if (entry["last_id"], entry["head"], entry.get("signature")) != (
                int(record["last_id"]),
                record["head"],
                record["signature"],
            ):
                report.problems.append(
                    f"{key}: seal {seq} differs from its anchor (anchor {n})"
                )
        prev_head, prev_seq, prev_last = record["head"], seq, int(record["last_id"])
    return prev_head, prev_seq, prev_last
