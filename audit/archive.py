"""Archival to S3: sealed events as gzip JSON Lines, AES-256-GCM in chunks.

Object layout: ``MAGIC | nonce prefix (8)`` then chunks of
``length (4, big-endian) | ciphertext``. Chunk ``i`` is sealed with nonce
``prefix | i`` and associated data ``MAGIC | object key | i | final``, so a
chunk cannot be moved, dropped or the object truncated unnoticed. Each
archive holds whole seals; its manifest names counts, time range, SHA-256 of
the object and the seal at the cut.

States (``AuditArchive.state``): pending -> uploaded -> verified -> purged.
Every step is idempotent and a run starts by finishing unfinished archives,
so a failure anywhere loses nothing and the next run resumes: a worker killed
mid-upload leaves the archive ``pending`` (no event is removed before its
archive is read back and verified), and the next run aborts the dead
multipart upload and uploads it again. One run at a time (``kreo.worker``
lock; an advisory lock on PostgreSQL), so a redelivered task waits its turn.
"""

import gzip
import hashlib
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, keys, serialise
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal
from kreo import s3 as kreo_s3
from kreo.worker import exclusive, stream_pause

logger = logging.getLogger(__name__)

MAGIC = b"KREOAUD1"
CHUNK = 1024 * 1024
PART = 8 * 1024 * 1024
LENGTH = struct.Struct(">I")
NOT_CONFIGURED = "Audit archival needs AUDIT_ARCHIVE_S3_BUCKET in the environment."
BUSY = "Another audit archive run is in progress; this one did nothing."
PURGE_BATCH = 10_000


class ArchiveError(Exception):
    pass


def s3_client():
    return kreo_s3.client(
        settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL,
        settings.AUDIT_ARCHIVE_S3_REGION,
        attempts=3,
    )


def _aad(key: str, index: int, final: bool) -> bytes:
    return MAGIC + key.encode() + struct.pack(">IB", index, int(final))


class _Uploader:
    """Multipart upload with one part buffer: memory stays flat."""

    def __init__(self, client, bucket: str, key: str, extra: dict):
        self.client, self.bucket, self.key, self.extra = client, bucket, key, extra
        self.upload_id = ""
        self.parts: list[dict] = []
        self.buffer = bytearray()
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.buffer += data
        if len(self.buffer) >= PART:
            self._flush()

    def _flush(self) -> None:
        if not self.upload_id:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, **self.extra
            )["UploadId"]
        number = len(self.parts) + 1
        done = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"PartNumber": number, "ETag": done["ETag"]})
        self.buffer = bytearray()

    def close(self) -> None:
        if not self.parts:
            # Small archives go in one request.
            self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), **self.extra
            )
            return
        if self.buffer:
            self._flush()
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        if "ObjectLockMode" in self.extra:
            # Some S3 implementations drop retention given at multipart start.
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=self.key,
                Retention={
                    "Mode": self.extra["ObjectLockMode"],
                    "RetainUntilDate": self.extra["ObjectLockRetainUntilDate"],
                },
            )

    def abort(self) -> None:
        if not self.upload_id:
            return
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError):
            logger.warning("audit archive: could not abort upload of %s", self.key)


class _Encryptor:
    def __init__(self, sink, key: str):
        self.sink, self.key = sink, key
        self.aead = AESGCM(keys.archive_key())
        self.prefix = os.urandom(8)
        self.index = 0
        self.plain = bytearray()
        self.zip = zlib.compressobj(6, zlib.DEFLATED, 31)
        sink.write(MAGIC + self.prefix)

    def write_line(self, line: str) -> None:
        self.plain += self.zip.compress(line.encode())
        while len(self.plain) >= CHUNK:
            self._emit(bytes(self.plain[:CHUNK]), final=False)
            del self.plain[:CHUNK]

    def _emit(self, data: bytes, final: bool) -> None:
        nonce = self.prefix + struct.pack(">I", self.index)
        sealed = self.aead.encrypt(nonce, data, _aad(self.key, self.index, final))
        self.sink.write(LENGTH.pack(len(sealed)) + sealed)
        self.index += 1

    def close(self) -> None:
        self.plain += self.zip.flush()
        while len(self.plain) > CHUNK:
            self._emit(bytes(self.plain[:CHUNK]), final=False)
            del self.plain[:CHUNK]
        self._emit(bytes(self.plain), final=True)


def _read_exact(body, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = body.read(size - len(data))
        if not more:
            break
        data += more
    return data


def decrypt_stream(body, key: str, sha=None) -> Iterator[bytes]:
    """Yield the plaintext chunks of an archive object, checking every tag."""

    def read(size):
        data = _read_exact(body, size)
        if sha is not None:
            sha.update(data)
        return data

    head = read(len(MAGIC) + 8)
    if head[: len(MAGIC)] != MAGIC:
        raise ArchiveError(f"{key}: not an audit archive")
    prefix = head[len(MAGIC) :]
    aead = AESGCM(keys.archive_key())
    index = 0
    length = read(LENGTH.size)
    while length:
        if len(length) != LENGTH.size:
            raise ArchiveError(f"{key}: truncated")
        sealed = read(LENGTH.unpack(length)[0])
        length = read(LENGTH.size)
        final = not length
        nonce = prefix + struct.pack(">I", index)
        try:
            yield aead.decrypt(nonce, sealed, _aad(key, index, final))
        except InvalidTag as exc:
            raise ArchiveError(f"{key}: chunk {index} fails authentication") from exc
        index += 1
    if index == 0:
        raise ArchiveError(f"{key}: truncated")


def _rows(chunks: Iterator[bytes]) -> Iterator[dict]:
    unzip = zlib.decompressobj(31)
    tail = b""
    for chunk in chunks:
        tail += unzip.decompress(chunk)
        *lines, tail = tail.split(b"\n")
        for line in lines:
            yield json.loads(line)
    tail += unzip.flush()
    if tail.strip():
        yield json.loads(tail)


def read_rows(archive: AuditArchive, client=None, sha=None) -> Iterator[dict]:
    """Stream the events of an archive back from S3."""
    client = client or s3_client()
    try:
        body = client.get_object(Bucket=archive.bucket, Key=archive.key)["Body"]
        yield from _rows(decrypt_stream(body, archive.key, sha))
    except (BotoCoreError, ClientError) as exc:
        raise ArchiveError(f"{archive.key}: cannot read: {exc}") from exc
    except (zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise ArchiveError(f"{archive.key}: unreadable: {exc}") from exc


def _lock_params(client, bucket: str) -> dict:
    try:
        conf = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError:
        return {}
    if conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
        return {}
    until = timezone.now() + timedelta(days=settings.AUDIT_ARCHIVE_LOCK_DAYS)
    return {
        "ObjectLockMode": settings.AUDIT_ARCHIVE_LOCK_MODE,
        "ObjectLockRetainUntilDate": until,
    }


def plan(*, now=None) -> list[AuditArchive]:
    """Create pending archives for whole seals older than the retention window."""
    bucket = settings.AUDIT_ARCHIVE_S3_BUCKET
    cutoff = (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    last = AuditArchive.objects.order_by("-last_id").first()
    seals = AuditSeal.objects.filter(
        seq__gt=last.last_seal if last else 0, last_at__lt=cutoff
    ).order_by("seq")
    created, group = [], []
    expected_seq = (last.last_seal if last else 0) + 1

    def flush():
        if not group:
            return
        first, end = group[0], group[-1]
        name = f"{first.first_id:015d}-{end.last_id:015d}"
        created.append(
            AuditArchive.objects.create(
                first_seal=first.seq,
                last_seal=end.seq,
                first_id=first.first_id,
                last_id=end.last_id,
                count=sum(s.count for s in group),
                first_at=min(s.first_at for s in group),
                last_at=max(s.last_at for s in group),
                bucket=bucket,
                key=f"{settings.AUDIT_ARCHIVE_PREFIX}{name}.jsonl.gz.aes",
                manifest_key=f"{settings.AUDIT_ARCHIVE_PREFIX}{name}.manifest.json",
            )
        )
        group.clear()

    fields = ("seq", "first_id", "last_id", "count", "first_at", "last_at")
    for seal in seals.only(*fields):
        if seal.seq != expected_seq:
            break  # an older seal is still young: archives stay contiguous
        if group and sum(s.count for s in group) + seal.count > (
            settings.AUDIT_ARCHIVE_MAX_EVENTS
        ):
            flush()
        group.append(seal)
        expected_seq += 1
    flush()
    return created


def _abort_dead_uploads(archive: AuditArchive, client) -> int:
    """Abort multipart uploads of this archive left by a killed worker."""
    listing = client.list_multipart_uploads(Bucket=archive.bucket, Prefix=archive.key)
    dead = [u for u in listing.get("Uploads", []) if u["Key"] == archive.key]
    for item in dead:
        client.abort_multipart_upload(
            Bucket=archive.bucket, Key=item["Key"], UploadId=item["UploadId"]
        )
    return len(dead)


def upload(archive: AuditArchive, client) -> None:
    extra = {"ServerSideEncryption": "AES256", **_lock_params(client, archive.bucket)}
    events = AuditEvent.objects.filter(
        id__gte=archive.first_id, id__lte=archive.last_id
    ).order_by("id")
    _abort_dead_uploads(archive, client)
    uploader = _Uploader(client, archive.bucket, archive.key, extra)
    try:
        encryptor = _Encryptor(uploader, archive.key)
        for row in serialise.iter_values(events, chunk_size=5000):
            stream_pause()
            encryptor.write_line(serialise.jsonl_line(row))
        encryptor.close()
        uploader.close()
    except BaseException:
        uploader.abort()
        raise
    last = AuditSeal.objects.get(seq=archive.last_seal)
    manifest = {
        "format": "kreo-audit-archive-v1 (gzip JSON Lines, AES-256-GCM chunks)",
        "object": archive.key,
        "first_id": archive.first_id,
        "last_id": archive.last_id,
        "count": archive.count,
        "first_at": archive.first_at.isoformat(),
        "last_at": archive.last_at.isoformat(),
        "sha256": uploader.sha.hexdigest(),
        "size": uploader.size,
        "seals": [archive.first_seal, archive.last_seal],
        "seal_at_cut": {
            "seq": last.seq,
            "head": last.head,
            "signature": last.signature,
            "key_id": last.key_id,
        },
        "public_key": keys.public_key_b64(),
        "created_at": timezone.now().isoformat(),
    }
    client.put_object(
        Bucket=archive.bucket,
        Key=archive.manifest_key,
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
        **extra,
    )
    archive.sha256, archive.size = uploader.sha.hexdigest(), uploader.size
    archive.object_lock = "ObjectLockMode" in extra
    archive.state = ArchiveState.UPLOADED
    archive.save()


def read_back(archive: AuditArchive, client) -> None:
    """Download the object and check it holds exactly the sealed events."""
    seals = AuditSeal.objects.filter(
        seq__gte=archive.first_seal, seq__lte=archive.last_seal
    ).order_by("seq")
    expected = iter(
        pair for seal in seals.iterator() for pair in chain.unpack_digests(seal.digests)
    )
    sha = hashlib.sha256()
    count = 0
    for row in read_rows(archive, client, sha):
        pair = next(expected, None)
        if (
            pair != (row["id"], row["content_hash"])
            or chain.content_hash(row) != (row["content_hash"])
        ):
            raise ArchiveError(f"{archive.key}: event {row['id']} differs from seal")
        count += 1
    if next(expected, None) is not None or count != archive.count:
        raise ArchiveError(f"{archive.key}: holds {count} of {archive.count} events")
    if sha.hexdigest() != archive.sha256:
        raise ArchiveError(f"{archive.key}: SHA-256 differs from the manifest")
    archive.state = ArchiveState.VERIFIED
    archive.save()


def purge(archive: AuditArchive) -> int:
    """Remove the archived rows from the hot store, in batches."""
    removed = 0
    start = archive.first_id
    while start <= archive.last_id:
        end = min(start + PURGE_BATCH - 1, archive.last_id)
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL kreo.audit_purge = 'on'")
            removed += AuditEvent.objects.filter(
                id__gte=start, id__lte=end
            )._raw_delete(connection.alias)
        start = end + 1
    archive.state = ArchiveState.PURGED
    archive.save()
    return removed


def run(*, now=None, client=None, progress=None) -> dict:
    """Finish unfinished archives, plan new ones, and carry each to purged."""
    if not settings.AUDIT_ARCHIVE_S3_BUCKET:
        raise ArchiveError(NOT_CONFIGURED)
    with exclusive("audit-archive", Path(settings.VAR_DIR) / "locks") as got:
        if not got:
            logger.warning(BUSY)
            return {"archives": 0, "events": 0, "purged": 0, "busy": True}
        return _run(now=now, client=client or s3_client(), progress=progress)


def _run(*, now, client, progress) -> dict:
    plan(now=now)
    summary = {"archives": 0, "events": 0, "purged": 0}
    todo = AuditArchive.objects.exclude(state=ArchiveState.PURGED).order_by("first_id")
    for archive in todo:
        if archive.state == ArchiveState.PENDING:
            upload(archive, client)
        if archive.state == ArchiveState.UPLOADED:
            read_back(archive, client)
        if archive.state == ArchiveState.VERIFIED:
            summary["purged"] += purge(archive)
        summary["archives"] += 1
        summary["events"] += archive.count
        if progress:
            progress(archive)
    return summary
