"""Anchors: the seal chain's head kept outside the database.

The idea of CloudTrail's digest files: whoever can rewrite the database
(a superuser bypassing the triggers) can cut or rewrite the newest events
and their seals, and the chain left behind still verifies. So after each
sealing run, and at least every ``AUDIT_ANCHOR_SECONDS`` even with nothing
new, the sealer writes a small signed object naming the newest seals (seq,
range, head, signature), chained to the previous anchor by its SHA-256, to
a store the database cannot touch: ``audit-anchors/`` in the audit archive
bucket (Object Lock, ``kreo.s3.retention_params``), or on the embedded
default a local folder whose files are created once and never rewritten.
``audit_verify`` compares the database's seals with every anchor
(docs/FORMATS.md section 3, "Anchors").

Anchoring runs in the seal task and its own beat entry, never on a request
path; one writer at a time (the sealer's lock).
"""

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import chain, keys
from audit.models import AuditSeal
from kreo import s3 as kreo_s3

logger = logging.getLogger(__name__)

FORMAT = "kreo-audit-anchor-v1"
GENESIS = "0" * 64
# Anchors the hot check reads (the newest; about a day of anchors at one
# per sealing run): the newest anchored seal's head pins all before it.
HOT_WINDOW = 2000
# Seals listed in one anchor at most (a first anchor of a long trail, a
# catch-up): the newest seal's head pins every earlier one through the chain.
MAX_SEALS = 1000
NAME = re.compile(r"^(\d{12})\.json$")

ANCHOR_EXISTS = "{where}: anchor {n} exists already; anchors are never rewritten."
NOT_RETAINED = "{where}: anchor {n} written but its retention is not confirmed: {error}"
BEHIND = (
    "the database's newest seal {seq} is behind or differs from anchor {n} "
    "(which pins seals to {top}): the trail's tail was cut or rewritten"
)
VANISHED = (
    "anchor {n} in {where} has vanished since this process saw it: the next "
    "anchor follows it anyway, so the verifier reports the gap"
)
UNREADABLE = "{where}: cannot read the anchors: {error}"


class AnchorError(Exception):
    pass


def object_name(n: int) -> str:
    return f"{n:012d}.json"


def encode(body: dict, private_key) -> bytes:
    """The stored bytes: canonical JSON of ``body`` plus its signature."""
    signed = canonical(body)
    return canonical({**body, "signature": private_key.sign(signed).hex()}) + b"\n"


def canonical(value: dict) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


@dataclass
class Anchor:
    n: int
    data: bytes
    body: dict = field(default_factory=dict)
    versions: int = 1

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.body["at"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def seals(self) -> list[dict]:
        seals = self.body.get("seals")
        return seals if isinstance(seals, list) else []


class FolderStore:
    """Anchors as files in one folder: created under a temporary name, then
    linked to their final name (fails if it exists), never rewritten."""

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def name(self, n: int) -> str:
        return str(self.path / object_name(n))

    def numbers(self, after: int = 0) -> list[int]:
        if not self.path.is_dir():
            return []
        found = (NAME.match(name) for name in os.listdir(self.path))
        return sorted(n for n in (int(m.group(1)) for m in found if m) if n > after)

    def read(self, n: int) -> Anchor:
        return Anchor(n, (self.path / object_name(n)).read_bytes())

    def write(self, n: int, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self.path / object_name(n)
        tmp = self.path / f".{object_name(n)}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, final)
        except FileExistsError as exc:
            raise AnchorError(ANCHOR_EXISTS.format(where=self, n=n)) from exc
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class S3Store:
    """Anchors as objects under a prefix, each retained with Object Lock and
    put only if the name is free; the verifier reads each name's first
    version and reports any name holding more than one."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def name(self, n: int) -> str:
        return f"s3://{self.bucket}/{self.prefix}{object_name(n)}"

    def _number(self, key: str) -> int | None:
        match = (
            NAME.match(key[len(self.prefix) :]) if key.startswith(self.prefix) else None
        )
        return int(match.group(1)) if match else None

    def numbers(self, after: int = 0) -> list[int]:
        start = {"StartAfter": self.prefix + object_name(after)} if after else {}
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, **start
        )
        for page in pages:
            for item in page.get("Contents", []):
                n = self._number(item["Key"])
                if n is not None and n > after:
                    found.append(n)
        return sorted(found)

    def versions(self) -> dict[int, list[str]]:
        """Every anchor's versions, oldest first (S3 lists a key's newest first;
        LastModified has only second precision)."""
        found: dict[int, list[str]] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Versions", []):
                n = self._number(item["Key"])
                if n is not None:
                    found.setdefault(n, []).append(item.get("VersionId") or "null")
            # A delete marker counts as one more version (the anchor was
            # "deleted"); the first real version is still read.
            for item in page.get("DeleteMarkers", []):
                n = self._number(item["Key"])
                if n is not None:
                    found.setdefault(n, []).insert(0, "delete-marker")
        return {n: list(reversed(vs)) for n, vs in found.items()}

    def read(self, n: int, version: str | None = None) -> Anchor:
        extra = {"VersionId": version} if version and version != "null" else {}
        body = self.client.get_object(
            Bucket=self.bucket, Key=self.prefix + object_name(n), **extra
        )["Body"]
        return Anchor(n, body.read())

    def write(self, n: int, data: bytes) -> None:
        key = self.prefix + object_name(n)
        lock = kreo_s3.retention_params(
            self.client, self.bucket, days=settings.AUDIT_ANCHOR_LOCK_DAYS
        )
        try:
            done = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                IfNoneMatch="*",
                **lock,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412"):
                raise AnchorError(ANCHOR_EXISTS.format(where=self, n=n)) from exc
            raise
        try:
            kreo_s3.confirm_retention(
                self.client, self.bucket, key, done.get("VersionId"), lock
            )
        except kreo_s3.RetentionError as exc:
            raise AnchorError(NOT_RETAINED.format(where=self, n=n, error=exc)) from exc


def store():
    """Where this deployment's anchors live: S3 when a bucket is set."""
    bucket = settings.AUDIT_ANCHOR_S3_BUCKET or settings.AUDIT_ARCHIVE_S3_BUCKET
    if bucket:
        from audit.archive import s3_client

        return S3Store(s3_client(), bucket, settings.AUDIT_ANCHOR_PREFIX)
    return FolderStore(settings.AUDIT_ANCHOR_DIR)


def store_at(location: str):
    """A store named on the command line: ``s3://bucket/prefix`` or a folder."""
    if location.startswith("s3://"):
        from audit.archive import s3_client

        bucket, _, prefix = location[5:].partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Store(s3_client(), bucket, prefix)
    return FolderStore(location)


def _seal_entry(seal: AuditSeal) -> dict:
    return {
        "seq": seal.seq,
        "first_id": seal.first_id,
        "last_id": seal.last_id,
        "head": seal.head,
        "signature": seal.signature,
    }


# The newest anchor number this process wrote or saw, per store: the next
# run lists only names after it (an S3 listing of the whole prefix grows by
# ~100,000 names a year). Anchors are never removed, so it is never ahead.
_SEEN: dict[str, int] = {}


def _newest(where) -> Anchor | None:
    seen = _SEEN.get(str(where), 0)
    numbers = where.numbers(after=seen) if seen else []
    n = numbers[-1] if numbers else seen
    try:
        anchor = where.read(n) if n else None
    except (OSError, ClientError):
        # An anchor this process saw is gone: never refill its place (the
        # chain would heal over the hole); the next one shows the break.
        logger.critical(VANISHED.format(n=n, where=where))
        return Anchor(n, b"")
    if anchor is None:
        numbers = where.numbers()
        if not numbers:
            return None
        anchor = where.read(numbers[-1])
    _SEEN[str(where)] = anchor.n
    try:
        anchor.body = json.loads(anchor.data)
    except ValueError:
        anchor.body = {}
    return anchor


def anchor_write(*, where=None, force: bool = False) -> int | None:
    """Anchor the newest seals; return the anchor's number, or None.

    Written when a seal is new since the last anchor, or the last anchor is
    ``AUDIT_ANCHOR_SECONDS`` old (so a verifier can tell anchoring is alive),
    or ``force``. Nothing to anchor before the first seal.
    """
    where = where or store()
    private = keys.signing_key()
    with transaction.atomic():
        from audit.services import lock_sealer

        lock_sealer()
        latest = AuditSeal.objects.order_by("-seq").first()
        if latest is None:
            return None
        previous = _newest(where)
        top = (
            max((s.get("seq", 0) for s in previous.seals), default=0) if previous else 0
        )
        age = (
            (timezone.now() - previous.at).total_seconds()
            if previous and previous.at
            else None
        )
        due = (
            force
            or previous is None
            or latest.seq > top
            or age is None
            or age >= settings.AUDIT_ANCHOR_SECONDS
        )
        pinned = (
            {s.get("seq"): s.get("head") for s in previous.seals} if previous else {}
        )
        if latest.seq < top or pinned.get(latest.seq, latest.head) != latest.head:
            logger.critical(BEHIND.format(seq=latest.seq, n=previous.n, top=top))
        if not due:
            return None
        new = list(AuditSeal.objects.filter(seq__gt=top).order_by("-seq")[:MAX_SEALS])
        seals = [_seal_entry(s) for s in reversed(new or [latest])]
        n = previous.n + 1 if previous else 1
        body = {
            "format": FORMAT,
            "n": n,
            "prev": previous.sha256 if previous else GENESIS,
            "at": chain.iso(timezone.now()),
            "key_id": keys.key_id(keys.public_key_bytes(private.public_key())),
            "seals": seals,
        }
        where.write(n, encode(body, private))
    _SEEN[str(where)] = n
    return n


@dataclass
class Chain:
    """The anchors read back and checked: what they pin, what is wrong."""

    where: str
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # seq -> (anchor number, seal entry), from anchors that verify.
    pinned: dict[int, tuple[int, dict]] = field(default_factory=dict)

    @property
    def newest(self) -> Anchor | None:
        return self.anchors[-1] if self.anchors else None


def read_chain(public_key, where=None, *, last: int | None = None) -> Chain:
    """Read the anchors (only the ``last`` newest when given: the frequent hot
    check; the daily full check reads all), check each one's signature and
    its link to the previous one."""
    where = where or store()
    result = Chain(str(where))
    try:
        versions = where.versions() if isinstance(where, S3Store) else {}
        numbers = sorted(versions) if versions else where.numbers()
        numbers = numbers[-last:] if last else numbers
        for n in numbers:
            found = versions.get(n, [None])
            readable = [v for v in found if v != "delete-marker"]
            if not readable:
                continue  # only a delete marker left: reported as missing
            anchor = where.read(n, readable[0]) if readable[0] else where.read(n)
            anchor.versions = len(found)
            result.anchors.append(anchor)
    except (OSError, BotoCoreError, ClientError) as exc:
        result.problems.append(UNREADABLE.format(where=where, error=exc))
        return result
    prev_n, prev_sha = 0, GENESIS
    if last and result.anchors and result.anchors[0].n > 1:
        # The window's first anchor links to one not read: trust its prev.
        prev_n, prev_sha = result.anchors[0].n - 1, None
    for anchor in result.anchors:
        name = where.name(anchor.n)
        if anchor.versions > 1:
            result.problems.append(
                f"anchor {anchor.n} ({name}) was overwritten: {anchor.versions} "
                "versions (the first is checked)"
            )
        if anchor.n != prev_n + 1:
            result.problems.append(
                f"anchor {anchor.n} ({name}) follows anchor {prev_n}: anchors "
                f"{prev_n + 1}..{anchor.n - 1} are missing"
            )
        ok = _check_one(anchor, public_key)
        if not ok:
            result.problems.append(
                f"anchor {anchor.n} ({name}) has a bad signature or is not an "
                "anchor: forged or edited"
            )
        elif prev_sha is not None and anchor.body.get("prev") != prev_sha:
            result.problems.append(
                f"anchor {anchor.n} ({name}) does not link to anchor {prev_n} "
                "(its prev is not that anchor's SHA-256): the anchor chain is broken"
            )
        if ok:
            for seal in anchor.seals:
                known = result.pinned.get(seal["seq"])
                if known and known[1]["head"] != seal["head"]:
                    result.problems.append(
                        f"anchor {anchor.n} ({name}) pins seal {seal['seq']} with "
                        f"another head than anchor {known[0]}"
                    )
                # The first anchor of a seal wins: a later one cannot re-pin it.
                result.pinned.setdefault(seal["seq"], (anchor.n, seal))
        prev_n, prev_sha = anchor.n, anchor.sha256
    return result


def _check_one(anchor: Anchor, public_key) -> bool:
    try:
        body = json.loads(anchor.data)
        signature = bytes.fromhex(body.pop("signature"))
        public_key.verify(signature, canonical(body))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidSignature):
        return False
    if body.get("format") != FORMAT or body.get("n") != anchor.n:
        return False
    seals = body.get("seals")
    if not isinstance(seals, list) or not all(
        isinstance(s, dict) and {"seq", "last_id", "head"} <= set(s) for s in seals
    ):
        return False
    anchor.body = body
    return True
