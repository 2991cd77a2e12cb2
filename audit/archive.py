"""Archival to S3: sealed events as gzip JSON Lines in a ``KREOSEAL`` object.

Object: the gzip of the events' JSON Lines, sealed with ``kreo/sealed.py``
(1 MiB chunks, key ``audit.keys.archive_key()``, context the S3 object key
in UTF-8), so a chunk cannot be altered, moved, dropped, the object cut
short or copied to another key unnoticed. Archives written before
``KREOSEAL`` (``KREOAUD1``) are read by ``audit/legacy.py``, chosen by the
magic bytes. Each archive holds whole seals; its manifest names counts,
time range, SHA-256 of the object and every seal record it covers, so the
archive verifies with the public key alone (docs/FORMATS.md sections 3, 4).

Object Lock: ``kreo.s3.retention_params`` decides; an archive whose lock
cannot be queried (AccessDenied, an outage) is refused and stays pending.

States (``AuditArchive.state``): pending -> uploaded -> verified -> purged.
Every step is idempotent and a run starts by finishing unfinished archives,
so a failure anywhere loses nothing and the next run resumes: a worker killed
mid-upload leaves the archive ``pending`` (no event is removed before its
archive is read back and verified), and the next run aborts the dead
multipart upload and uploads it again. One run at a time (``kreo.worker``
lock; an advisory lock on PostgreSQL), so a redelivered task waits its turn.
"""

import hashlib
import itertools
import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min
from django.utils import timezone

from audit import chain, keys, legacy, serialise
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal
from kreo import s3 as kreo_s3
from kreo import sealed
from kreo.worker import exclusive, stream_pause

logger = logging.getLogger(__name__)

PART = 8 * 1024 * 1024
READ = 256 * 1024
MANIFEST_FORMAT = "kreo-audit-archive-v2"
NOT_CONFIGURED = "Audit archival needs AUDIT_ARCHIVE_S3_BUCKET in the environment."
BUSY = "Another audit archive run is in progress; this one did nothing."
LOCK_UNKNOWN = (
    "{key}: not archived: the Object Lock configuration of bucket {bucket} "
    "could not be read ({error}). Nothing was uploaded and no event removed; "
    "the archive stays pending until S3 answers."
)
NOT_RETAINED = (
    "{key}: not archived: its Object Lock retention could not be confirmed "
    "({error}). No event removed; the archive stays pending."
)
UNKNOWN_MAGIC = "{key}: not an audit archive (neither KREOSEAL nor KREOAUD1)."
PURGE_BATCH = 10_000


class ArchiveError(Exception):
    pass


def s3_client():
    return kreo_s3.client(
        settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL,
        settings.AUDIT_ARCHIVE_S3_REGION,
        attempts=3,
    )


class _Uploader:
    """Multipart upload with one part buffer: memory stays flat."""

    def __init__(self, client, bucket: str, key: str, extra: dict):
        self.client, self.bucket, self.key, self.extra = client, bucket, key, extra
        self.upload_id = ""
        self.parts: list[dict] = []
        self.buffer = bytearray()
        self.sha = hashlib.sha256()
        self.size = 0
        self.version: str | None = None

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
            done = self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), **self.extra
            )
        else:
            if self.buffer:
                self._flush()
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        self.version = done.get("VersionId")

    def abort(self) -> None:
        if not self.upload_id:
            return
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (BotoCoreError, ClientError):
            logger.warning("audit archive: could not abort upload of %s", self.key)


class _HashingReader:
    """``read(n)`` over an S3 body, hashing every byte read."""

    def __init__(self, body, sha=None):
        self.read_exact = sealed.reader(body)
        self.sha = sha

    def read(self, size: int) -> bytes:
        data = self.read_exact(size)
        if self.sha is not None:
            self.sha.update(data)
        return data


def _plain_chunks(body, key: str, sha=None) -> Iterator[bytes]:
    """The gzip stream inside an archive object, by its magic bytes:
    ``KREOSEAL`` now, ``KREOAUD1`` for archives written before it."""
    source = _HashingReader(body, sha)
    head = source.read(len(sealed.MAGIC))
    if sealed.is_sealed(head):
        yield from sealed.open_stream(
            keys.archive_key(),
            itertools.chain([head], iter(lambda: source.read(READ), b"")),
            context=key.encode(),
            name=key,
        )
    elif head == legacy.MAGIC:
        yield from legacy.open_stream(keys.archive_key(), source.read, object_key=key)
    else:
        raise ArchiveError(UNKNOWN_MAGIC.format(key=key))


def _rows(chunks: Iterator[bytes]) -> Iterator[dict]:
    unzip = zlib.decompressobj(31)
    tail = b""
    for chunk in chunks:
        tail += unzip.decompress(chunk)
        *lines, tail = tail.split(b"\n")
        for line in lines:
            yield json.loads(line)
    tail += unzip.flush()
    if not unzip.eof:
        raise ValueError("the gzip stream is cut short")
    if tail.strip():
        yield json.loads(tail)


def read_rows(archive: AuditArchive, client=None, sha=None) -> Iterator[dict]:
    """Stream the events of an archive back from S3."""
    client = client or s3_client()
    try:
        body = client.get_object(Bucket=archive.bucket, Key=archive.key)["Body"]
        yield from _rows(_plain_chunks(body, archive.key, sha))
    except (sealed.SealedError, legacy.LegacyError) as exc:
        raise ArchiveError(str(exc)) from exc
    except (BotoCoreError, ClientError) as exc:
        raise ArchiveError(f"{archive.key}: cannot read: {exc}") from exc
    except (zlib.error, ValueError) as exc:
        raise ArchiveError(f"{archive.key}: unreadable: {exc}") from exc


def _retention(client, archive: AuditArchive) -> dict:
    """The Object Lock arguments for this archive's puts; refuse the archive
    when S3 cannot say whether the bucket locks (never upload it unlocked)."""
    try:
        return kreo_s3.retention_params(
            client, archive.bucket, days=settings.AUDIT_ARCHIVE_LOCK_DAYS
        )
    except (BotoCoreError, ClientError) as exc:
        raise ArchiveError(
            LOCK_UNKNOWN.format(key=archive.key, bucket=archive.bucket, error=exc)
        ) from exc


def _confirm(client, archive: AuditArchive, key: str, version, lock: dict) -> None:
    try:
        kreo_s3.confirm_retention(client, archive.bucket, key, version, lock)
    except (kreo_s3.RetentionError, BotoCoreError, ClientError) as exc:
        raise ArchiveError(NOT_RETAINED.format(key=key, error=exc)) from exc


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


def _seal_record(seal: AuditSeal) -> dict:
    """A seal as the manifest carries it: every field of its signed text."""
    return {
        "seq": seal.seq,
        "first_id": seal.first_id,
        "last_id": seal.last_id,
        "count": seal.count,
        "first_at": chain.iso(seal.first_at),
        "last_at": chain.iso(seal.last_at),
        "prev_head": seal.prev_head,
        "head": seal.head,
        "key_id": seal.key_id,
        "signature": seal.signature,
        # Only on keyed seals, so older manifests keep their shape.
        **({"keyed": True, "rejected": list(seal.rejected)} if seal.keyed else {}),
    }


def upload(archive: AuditArchive, client) -> None:
    """Seal the archive's events into S3 (streamed, memory flat), then its
    manifest; both retained as the bucket's Object Lock asks."""
    lock = _retention(client, archive)
    extra = {"ServerSideEncryption": "AES256", **lock}
    events = AuditEvent.objects.filter(
        id__gte=archive.first_id, id__lte=archive.last_id
    ).order_by("id")
    _abort_dead_uploads(archive, client)
    uploader = _Uploader(client, archive.bucket, archive.key, extra)
    try:
        writer = sealed.SealingWriter(
            uploader,
            keys.archive_key(),
            context=archive.key.encode(),
            chunk_size=sealed.BULK_CHUNK,
        )
        gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
        for row in serialise.iter_values(events, chunk_size=5000):
            stream_pause()
            writer.write(gzip.compress(serialise.jsonl_line(row).encode()))
        writer.write(gzip.flush())
        writer.close()
        uploader.close()
    except BaseException:
        uploader.abort()
        raise
    _confirm(client, archive, archive.key, uploader.version, lock)
    seals = AuditSeal.objects.filter(
        seq__gte=archive.first_seal, seq__lte=archive.last_seal
    ).order_by("seq")
    records = [_seal_record(seal) for seal in seals.defer("digests").iterator()]
    manifest = {
        "format": MANIFEST_FORMAT,
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
            key: records[-1][key] for key in ("seq", "head", "signature", "key_id")
        },
        "seal_records": records,
        "public_key": keys.public_key_b64(),
        "created_at": timezone.now().isoformat(),
    }
    done = client.put_object(
        Bucket=archive.bucket,
        Key=archive.manifest_key,
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
        **extra,
    )
    _confirm(client, archive, archive.manifest_key, done.get("VersionId"), lock)
    archive.sha256, archive.size = uploader.sha.hexdigest(), uploader.size
    archive.object_lock = bool(lock)
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


@contextmanager
def _purge_cursor():
    """A cursor in one transaction with the purge flag set, as the purge role.

    ``AUDIT_PURGE_DATABASE_URL`` names a role that alone may DELETE events
    (``audit.sql.purge_grants_sql``); without it (SQLite, one-role setups)
    the application's own connection purges.
    """
    url = settings.AUDIT_PURGE_DATABASE_URL
    if url and connection.vendor == "postgresql":
        import psycopg

        with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL kreo.audit_purge = 'on'")
            yield cur, lambda value: value
        return
    with transaction.atomic(), connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("SET LOCAL kreo.audit_purge = 'on'")
        yield cur, connection.ops.adapt_datetimefield_value


def purge(archive: AuditArchive) -> int:
    """Remove the archived rows from the hot store, in batches."""
    removed = 0
    start = archive.first_id
    while True:
        # Batches of rows that exist, not of ids: ids are sparse (a sequence
        # skips on every rollback, and a restored database may jump by 2**60),
        # and a loop over the id range would then run for ever.
        batch = AuditEvent.objects.filter(id__gte=start, id__lte=archive.last_id)
        ids = list(batch.order_by("id").values_list("id", flat=True)[:PURGE_BATCH])
        if not ids:
            break
        end = ids[-1]
        with _purge_cursor() as (cursor, _):
            cursor.execute(
                "DELETE FROM audit_auditevent WHERE id BETWEEN %s AND %s", [start, end]
            )
            removed += cursor.rowcount
        start = end + 1
    archive.state = ArchiveState.PURGED
    archive.save()
    return removed


def purge_field_changes() -> int:
    """Remove django-auditlog entries older than every event still in the hot
    store: the events mirroring them (audit/fieldchanges.py) are in a
    verified archive by then. The PostgreSQL guard checks the same bound."""
    from auditlog.models import LogEntry

    bound = AuditEvent.objects.aggregate(oldest=Min("occurred_at"))["oldest"]
    if bound is None:
        return 0
    table = LogEntry._meta.db_table
    with _purge_cursor() as (cursor, adapt):
        cursor.execute(
            f"DELETE FROM {table} WHERE timestamp < %s",  # noqa: S608  # nosec B608
            [adapt(bound)],
        )
        return cursor.rowcount


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
    if summary["purged"]:
        summary["field_changes_purged"] = purge_field_changes()
    return summary
