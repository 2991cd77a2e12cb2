"""Check the whole trail, archives then hot store, against the signed seals."""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import anchors, chain, keys, serialise
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal

HOT_CHUNK = 10_000
DONE_STATES = (ArchiveState.VERIFIED, ArchiveState.PURGED)
TRUNCATED = (
    "seal {seq} (events to {last_id}) is anchored (anchor {n}) but missing from "
    "the database: seals {first}..{seq} were cut, the database ends at seal {top}"
)
REWRITTEN = (
    "seal {seq} differs from its anchor (anchor {n}): head {db_head}... in the "
    "database, {head}... anchored; seals {first}..{seq} were rewritten"
)
STALE = (
    "the newest anchor ({n}, written {at}) is older than {grace}: anchoring has stopped"
)
NOT_ANCHORED = "seal {seq}, sealed {at}, is in no anchor after {grace}"


@dataclass
class Problem:
    kind: str  # modified, deleted, inserted, reordered, forged-seal, missing-seal...
    event_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"event {self.event_id}: " if self.event_id is not None else ""
        return f"{self.kind}: {where}{self.message}"


@dataclass
class Report:
    events: int = 0
    seals: int = 0
    archives: int = 0
    unsealed: int = 0
    # Events written late from the outage spool (audit/spool.py).
    spooled: int = 0
    anchors: int = 0
    # Events whose MAC was checked, and events written before keying (no MAC).
    keyed: int = 0
    legacy: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_seals(seals: Iterable[AuditSeal], public_key, report: Report):
    """Yield each seal with its expected digests; record chain problems."""
    prev_seq, prev_head, prev_last = 0, chain.GENESIS, 0
    for seal in seals:
        report.seals += 1
        digests = bytes(seal.digests)
        if seal.seq != prev_seq + 1 or seal.prev_head != prev_head:
            report.problems.append(
                Problem(
                    "missing-seal",
                    seal.first_id,
                    f"seal {seal.seq} does not follow seal {prev_seq} "
                    "(a seal was removed or replaced)",
                )
            )
        if seal.first_id != prev_last + 1:
            report.problems.append(
                Problem("missing-seal", seal.first_id, f"gap before seal {seal.seq}")
            )
        try:
            public_key.verify(bytes.fromhex(seal.signature), chain.seal_text(seal))
            signed = True
        except (InvalidSignature, ValueError):
            signed = False
        pairs = chain.unpack_digests(digests)
        named = pairs[0][0] if pairs else seal.first_id
        if (
            not signed
            or seal.head != chain.next_head(seal.prev_head, digests)
            or seal.count != len(pairs)
        ):
            report.problems.append(
                Problem(
                    "forged-seal",
                    named,
                    f"seal {seal.seq} has a bad signature or its digests do not "
                    "match its head",
                )
            )
        prev_seq, prev_head, prev_last = seal.seq, seal.head, seal.last_id
        yield seal, pairs


class _Walker:
    """Merge the id-ordered event stream with the seal stream."""

    def __init__(self, seals: Iterator, report: Report, skip_until: int = 0):
        self.seals = seals
        self.skip_until = skip_until
        self.report = report
        self.seal = None
        self.rejected: set[int] = set()
        # From the first keyed event on, every event must be keyed.
        self.keyed = False
        self.ring = keys.event_keys()
        self.expected: dict[int, str] = {}
        self.by_hash: dict[str, int] = {}
        self.seen: set[int] = set()
        self.latest: datetime | None = None
        self.skew = timedelta(seconds=settings.AUDIT_CLOCK_SKEW_SECONDS)
        self._next_seal()

    def _next_seal(self) -> None:
        self._close_seal()
        item = next(self.seals, None)
        # Seals of archived events not being read are chain-checked only.
        while item is not None and item[0].last_id <= self.skip_until:
            item = next(self.seals, None)
        if item is None:
            self.seal = None
            return
        self.seal, pairs = item
        self.rejected = set(self.seal.rejected or ())
        self.expected = dict(pairs)
        self.by_hash = {h: pk for pk, h in pairs}
        self.seen = set()

    def _close_seal(self) -> None:
        if self.seal is None:
            return
        for pk in sorted(set(self.expected) - self.seen):
            self.report.problems.append(
                Problem("deleted", pk, f"sealed in seal {self.seal.seq}, now missing")
            )

    def finish(self) -> None:
        while self.seal is not None:
            self._next_seal()

    def event(self, row: dict) -> None:
        body = chain.canonical(row)  # once: hashed, and MACed if keyed
        self._event(row, body)
        # Last, so a problem the hash or the seal names stays the first one.
        self._check_mac(row, body)

    def _event(self, row: dict, body: bytes) -> None:
        report = self.report
        report.events += 1
        pk = row["id"]
        while self.seal is not None and pk > self.seal.last_id:
            self._next_seal()
        if hashlib.sha256(body).hexdigest() != row["content_hash"]:
            report.problems.append(
                Problem("modified", pk, "content does not match its content hash")
            )
        when = row["occurred_at"]
        if type(when) is str:  # archives carry ISO text, the hot store datetimes
            when = datetime.fromisoformat(when)
        if row.get("spooled"):
            # Dated when it happened, written when the database returned: the
            # flag is in its content hash, so it cannot excuse another row.
            report.spooled += 1
        elif self.latest and when < self.latest - self.skew:
            report.problems.append(
                Problem(
                    "inserted",
                    pk,
                    f"dated {when.isoformat()}, before events already recorded "
                    "(back-dated insert)",
                )
            )
        if not row.get("spooled"):
            self.latest = max(self.latest or when, when)
        if self.seal is None:
            report.unsealed += 1
            return
        expected = self.expected.get(pk)
        if expected is None:
            report.problems.append(
                Problem("inserted", pk, f"not in seal {self.seal.seq}")
            )
            return
        self.seen.add(pk)
        if expected != row["content_hash"]:
            other = self.by_hash.get(row["content_hash"])
            if other is not None:
                report.problems.append(
                    Problem("reordered", pk, f"holds the content sealed as {other}")
                )
            else:
                report.problems.append(
                    Problem("modified", pk, f"hash differs from seal {self.seal.seq}")
                )

    def _check_mac(self, row: dict, body: bytes) -> None:
        """A keyed event's MAC; no MAC after the first keyed event is a fault."""
        pk = row["id"]
        if chain.is_keyed(row):
            self.keyed = True
            self.report.keyed += 1
            reason = chain.mac_problem(row, self.ring, body)
        elif self.keyed:
            reason = chain.NO_MAC
        else:
            self.report.legacy += 1
            reason = None
        inside = self.seal is not None and self.seal.first_id <= pk
        if inside and pk in self.rejected:
            reason = (reason or "its MAC held when verified now") + (
                f"; rejected by seal {self.seal.seq}, never sealed as genuine"
            )
        if reason:
            self.report.problems.append(
                Problem("forged", pk, f"{row['event_type']} {reason}")
            )


def check_anchors(
    report: Report, verifying, where=None, *, now=None, last: int | None = None
) -> None:
    """Compare the database's seals with the anchors kept outside it.

    Names the newest anchored seal that is missing (a cut tail) or differs
    (a rewritten tail), and anchoring that has stopped.
    """
    found = anchors.read_chain(verifying, where, last=last)
    report.anchors = len(found.anchors)
    report.problems += [Problem("anchor", None, text) for text in found.problems]
    db = {
        row[0]: row
        for row in AuditSeal.objects.values_list(
            "seq", "first_id", "last_id", "head", "signature", "sealed_at"
        )
    }
    missing, differ = [], []
    for seq, (n, pinned) in sorted(found.pinned.items()):
        row = db.get(seq)
        if row is None:
            missing.append((seq, n, pinned))
        elif (row[2], row[3], row[4]) != (
            pinned["last_id"],
            pinned["head"],
            pinned.get("signature"),
        ):
            differ.append((seq, n, pinned))
    if missing:
        seq, n, pinned = missing[-1]
        report.problems.append(
            Problem(
                "truncated",
                None,
                TRUNCATED.format(
                    seq=seq,
                    last_id=pinned["last_id"],
                    n=n,
                    first=missing[0][0],
                    top=max(db, default=0),
                ),
            )
        )
    if differ:
        seq, n, pinned = differ[-1]
        report.problems.append(
            Problem(
                "rewritten",
                None,
                REWRITTEN.format(
                    seq=seq,
                    n=n,
                    db_head=db[seq][3][:16],
                    head=pinned["head"][:16],
                    first=differ[0][0],
                ),
            )
        )
    if not db:
        return
    now = now or timezone.now()
    # Beat may run the anchor entry just before it is due: one period of slack.
    grace = timedelta(seconds=3 * settings.AUDIT_ANCHOR_SECONDS)
    newest = found.newest
    if newest is not None and newest.at and now - newest.at > grace:
        report.problems.append(
            Problem(
                "unanchored",
                None,
                STALE.format(
                    n=newest.n, at=newest.at.isoformat(timespec="seconds"), grace=grace
                ),
            )
        )
    top = max(found.pinned, default=0)
    late = [
        row for seq, row in sorted(db.items()) if seq > top and now - row[5] > grace
    ]
    if late:
        report.problems.append(
            Problem(
                "unanchored",
                None,
                NOT_ANCHORED.format(
                    seq=late[0][0],
                    at=late[0][5].isoformat(timespec="seconds"),
                    grace=grace,
                ),
            )
        )


def _hot_rows(after: int) -> Iterator[dict]:
    """The hot store's events after id ``after``, in id order: raw tuples from
    a server-side cursor made into plain dicts (no model instances, no ISO
    round trip; ``chain.canonical`` takes the values as the database gives
    them)."""
    columns = serialise.COLUMNS
    if connection.vendor != "postgresql":
        rows = (
            AuditEvent.objects.filter(id__gt=after)
            .order_by("id")
            .values_list(*columns)
            .iterator(chunk_size=HOT_CHUNK)
        )
        for values in rows:
            yield dict(zip(columns, values, strict=True))
        return
    # PostgreSQL: psycopg's own server-side cursor, past Django's per-row
    # converters (a fifth of the time); the one column Django leaves as
    # text for its JSONField, details, is parsed here.
    names = ", ".join(connection.ops.quote_name(c) for c in columns)
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor(name="kreo_audit_verify") as cursor:
            cursor.itersize = HOT_CHUNK
            cursor.execute(
                f"SELECT {names} FROM {table} WHERE id > %s ORDER BY id",  # noqa: S608  # nosec B608 - names from the model
                [after],
            )
            for values in cursor:
                row = dict(zip(columns, values, strict=True))
                if type(row["details"]) is str:
                    row["details"] = json.loads(row["details"])
                yield row


def audit_verify(
    *, public_key: str = "", archives: bool = True, anchored: bool = True, progress=None
):
    """Verify archives (read from S3) and the hot store against the seals,
    and the seals against the anchors."""
    from audit import archive as archive_mod

    report = Report()
    verifying = keys.verifying_key(public_key)
    seals = _check_seals(
        AuditSeal.objects.order_by("seq").iterator(chunk_size=50),
        verifying,
        report,
    )
    done = AuditArchive.objects.filter(state__in=DONE_STATES).order_by("first_id")
    purged_until = max(
        (a.last_id for a in done if a.state == ArchiveState.PURGED), default=0
    )
    walker = _Walker(seals, report, skip_until=0 if archives else purged_until)
    boundary = 0 if archives else purged_until
    for archive in done if archives else []:
        report.archives += 1
        sha = hashlib.sha256()
        try:
            for row in archive_mod.read_rows(archive, sha=sha):
                walker.event(row)
            if sha.hexdigest() != archive.sha256:
                raise archive_mod.ArchiveError(
                    f"{archive.key}: SHA-256 differs from the manifest"
                )
        except archive_mod.ArchiveError as exc:
            report.problems.append(Problem("archive", archive.first_id, str(exc)))
        boundary = max(boundary, archive.last_id)
        if progress:
            progress(report)
    purged = AuditArchive.objects.filter(state=ArchiveState.PURGED)
    if archives:
        for archive in purged:
            stray = AuditEvent.objects.filter(
                id__gte=archive.first_id, id__lte=archive.last_id
            ).values_list("id", flat=True)[:10]
            for pk in stray:
                report.problems.append(
                    Problem("inserted", pk, "in the range of a purged archive")
                )
    for row in _hot_rows(boundary):
        walker.event(row)
        if progress and report.events % 100_000 == 0:
            progress(report)
    walker.finish()
    if anchored:
        check_anchors(report, verifying, last=None if archives else anchors.HOT_WINDOW)
    report.problems.sort(key=lambda p: (p.event_id is None, p.event_id or 0))
    return report
