"""Check the whole trail, archives then hot store, against the signed seals."""

import hashlib
import json
import os
import pickle  # nosec B403 - only our own forked child's result, through its pipe
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import anchors, chain, keys, serialise
from audit.models import ArchiveState, AuditArchive, AuditEvent, AuditSeal

HOT_CHUNK = 10_000
UTC_SUFFIX = "+00:00"
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
    # Processes the hot store was checked in (spans side by side).
    spans: int = 1
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
        self.macs = chain.MacCheck(keys.event_keys())
        self.expected: dict[int, str] = {}
        self.by_hash: dict[str, int] = {}
        self.seen: set[int] = set()
        self.latest: str | None = None  # UTC ISO text
        # The earliest time of an event not flagged as back-dated: a span
        # checked apart from the events before it (``_walk_spans``) is checked
        # again with their latest time only when this is before it.
        self.lowest: str | None = None
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
        """An event as a dict of its columns (an archive's row, or the hot
        store's where it is not PostgreSQL)."""
        when = row["occurred_at"]
        if type(when) is not str:
            when = chain.iso(when)
        # The canonical values, as JSON holds them (an archive's already are).
        values = {name: row.get(name) for name in chain.KEYED_NAMES}
        values["occurred_at"] = when
        if values["actor_id"] is not None:
            values["actor_id"] = str(values["actor_id"])
        if values["event_uid"]:
            values["event_uid"] = str(values["event_uid"])
        values["mac_key_id"] = values["mac_key_id"] or ""
        # Once: hashed, and MACed if keyed.
        body = chain.canonical_row(values, bool(row.get("spooled")))
        if not when.endswith(UTC_SUFFIX):
            when = chain.iso(datetime.fromisoformat(when).astimezone(UTC))
        self.check(
            row["id"],
            body,
            row["content_hash"],
            when,
            bool(row.get("spooled")),
            chain.is_keyed(row),
            row.get("mac_key_id") or "",
            row.get("mac"),
            row["event_type"],
        )

    def check(
        self,
        pk: int,
        body: bytes,
        content_hash: str,
        when: str,
        spooled: bool,
        keyed: bool,
        kid: str,
        mac: str | None,
        event_type: str,
    ) -> None:
        """One event: its canonical bytes ``body`` against its content hash,
        its seal and its MAC; ``when``: its time as UTC ISO text (so times
        compare as text, parsed only when out of order)."""
        report = self.report
        report.events += 1
        while self.seal is not None and pk > self.seal.last_id:
            self._next_seal()
        if hashlib.sha256(body).hexdigest() != content_hash:
            report.problems.append(
                Problem("modified", pk, "content does not match its content hash")
            )
        if spooled:
            # Dated when it happened, written when the database returned: the
            # flag is in its content hash, so it cannot excuse another row.
            report.spooled += 1
        elif self.latest is None:
            self.latest = self.lowest = when
        elif when >= self.latest:
            self.latest = when
        else:
            self._out_of_order(pk, when)
        if self.seal is not None:
            self._in_seal(pk, content_hash)
        else:
            report.unsealed += 1
        # Last, so a problem the hash or the seal names stays the first one.
        self._check_mac(pk, body, keyed, kid, mac, event_type)

    def _out_of_order(self, pk: int, when: str) -> None:
        at = datetime.fromisoformat(when)
        if not before(at, self.latest, self.skew):
            self.lowest = min(self.lowest or when, when)
        else:
            self.report.problems.append(
                Problem(
                    "inserted",
                    pk,
                    f"dated {at.isoformat()}, before events already recorded "
                    "(back-dated insert)",
                )
            )

    def _in_seal(self, pk: int, content_hash: str) -> None:
        expected = self.expected.get(pk)
        if expected is None:
            self.report.problems.append(
                Problem("inserted", pk, f"not in seal {self.seal.seq}")
            )
            return
        self.seen.add(pk)
        if expected != content_hash:
            other = self.by_hash.get(content_hash)
            if other is not None:
                self.report.problems.append(
                    Problem("reordered", pk, f"holds the content sealed as {other}")
                )
            else:
                self.report.problems.append(
                    Problem("modified", pk, f"hash differs from seal {self.seal.seq}")
                )

    def _check_mac(
        self, pk: int, body: bytes, keyed: bool, kid: str, mac, event_type: str
    ) -> None:
        """A keyed event's MAC; no MAC after the first keyed event is a fault."""
        if keyed:
            self.keyed = True
            self.report.keyed += 1
            reason = self.macs.problem(kid, body, mac)
        elif self.keyed:
            reason = chain.NO_MAC
        else:
            self.report.legacy += 1
            reason = None
        if pk in self.rejected and self.seal is not None and self.seal.first_id <= pk:
            reason = (reason or "its MAC held when verified now") + (
                f"; rejected by seal {self.seal.seq}, never sealed as genuine"
            )
        if reason:
            self.report.problems.append(Problem("forged", pk, f"{event_type} {reason}"))


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


# How the hot store is read on PostgreSQL: each canonical column already as
# its JSON holds it (the time as UTC ISO text, ids as text), in the canonical
# key order, after the columns checked beside the bytes.
_AS_TEXT = {
    "occurred_at": (
        "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    ),
    "actor_id": "{}::text",
    "event_uid": "{}::text",
    "mac_key_id": "COALESCE({}, '')",
    "details": "{}::text",
}


def hot_sql(bounded: bool = False) -> str:
    """The SELECT verification reads the hot store with: the events after an
    id (and, ``bounded``, up to an id); the benchmark's fetch floor reads the
    same."""
    quote = connection.ops.quote_name
    names = [_AS_TEXT.get(name, "{}").format(quote(name)) for name in chain.KEYED_NAMES]
    columns = ", ".join(
        [quote(c) for c in ("id", "content_hash", "mac", "spooled")] + names
    )
    table = quote(AuditEvent._meta.db_table)
    upto = " AND id <= %s" if bounded else ""
    return f"SELECT {columns} FROM {table} WHERE id > %s{upto} ORDER BY id"  # noqa: S608  # nosec B608 - names from the model


def before(at: datetime, latest: str, skew: timedelta) -> bool:
    """Whether ``at`` is dated before ``latest`` by more than the clock skew
    allows (a back-dated insert)."""
    return at < datetime.fromisoformat(latest) - skew


def _walk_hot(walker: _Walker, after: int, progress=None, workers: int = 1) -> None:
    """Check the hot store's events after id ``after``, in id order."""
    if connection.vendor != "postgresql":
        columns = serialise.COLUMNS
        rows = (
            AuditEvent.objects.filter(id__gt=after)
            .order_by("id")
            .values_list(*columns)
            .iterator(chunk_size=HOT_CHUNK)
        )
        for values in rows:
            walker.event(dict(zip(columns, values, strict=True)))
        return
    spans = _spans(walker, after, workers) if workers > 1 else []
    if len(spans) > 1:
        _walk_spans(walker, spans, progress)
    else:
        _walk_range(walker, after, None, progress)


def _walk_range(walker: _Walker, after: int, upto: int | None, progress=None):
    """The PostgreSQL hot store's events in (after, upto], through ``walker``:
    psycopg's own server-side cursor, past Django's per-row converters, with
    the values made ready for the canonical bytes in SQL (no datetime or UUID
    is parsed to be printed again)."""
    report = walker.report
    names = chain.KEYED_NAMES
    loads = json.loads
    canonical = chain.canonical_row
    check = walker.check
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor(name="kreo_audit_verify") as cursor:
            cursor.itersize = HOT_CHUNK
            if upto is None:
                cursor.execute(hot_sql(), [after])
            else:
                cursor.execute(hot_sql(bounded=True), [after, upto])
            for pk, content_hash, mac, spooled, *values in cursor:
                row = dict(zip(names, values, strict=True))
                row["details"] = loads(row["details"])
                kid = row["mac_key_id"]
                keyed = bool(row["event_uid"] or kid or mac)
                when = row["occurred_at"]
                event_type = row["event_type"]
                check(
                    pk,
                    canonical(row, spooled),
                    content_hash,
                    when,
                    spooled,
                    keyed,
                    kid,
                    mac,
                    event_type,
                )
                if progress and report.events % 100_000 == 0:
                    progress(report)
    walker.finish()


# Spans: the hot store cut at seal boundaries into ranges checked side by
# side, one process each (forked: it inherits the seals already read and
# checked here, and opens its own connection).


@dataclass
class _Span:
    after: int
    upto: int | None  # None: to the newest event (the unsealed tail too)
    # The seals it reads again (by seq, inclusive; none when first > last),
    # each compared with what the chain check read: seq -> (head, SHA-256
    # of its digests).
    first_seq: int
    last_seq: int
    checked: dict


@dataclass
class _SpanResult:
    report: Report
    latest: str | None
    lowest: str | None
    keyed: bool


CHANGED = "seal {seq} changed while the trail was being verified"


def _span_seals(span: _Span, report: Report) -> Iterator:
    """A span's seals with their digests, read again (only their heads and
    digests' hashes are kept from the chain check, not every event's: flat
    memory); one that is not what the chain check read is a problem."""
    seq = span.first_seq
    while seq <= span.last_seq:
        # Pages of plain SELECTs, not a server-side cursor: this is read
        # inside and outside the events' transaction.
        page = list(
            AuditSeal.objects.filter(seq__gte=seq, seq__lte=span.last_seq).order_by(
                "seq"
            )[:50]
        )
        if not page:
            return
        yield from _reread(page, span, report)
        seq = page[-1].seq + 1


def _reread(page: list, span: _Span, report: Report) -> Iterator:
    for seal in page:
        digests = bytes(seal.digests)
        seen = (seal.head, hashlib.sha256(digests).digest())
        if span.checked.get(seal.seq) != seen:
            report.problems.append(
                Problem("forged-seal", seal.first_id, CHANGED.format(seq=seal.seq))
            )
        yield seal, chain.unpack_digests(digests)


def _spans(walker: _Walker, after: int, workers: int) -> list[_Span]:
    """Cut the hot store after ``after`` into up to ``workers`` spans of
    about equal events, at seal boundaries; [] when it is too small to be
    worth it or forking is not safe here (inside a transaction: the
    children would not see its rows; a pooled connection: a pool must not
    cross a fork). The chain checks of every seal run here, first."""
    if (
        connection.in_atomic_block
        or "pool" in connection.settings_dict.get("OPTIONS", {})
        or walker.seal is None
    ):
        return []
    current = walker.seal
    light = [(current.seq, current.last_id, current.count)]
    checked = {}
    for seal, _ in walker.seals:
        light.append((seal.seq, seal.last_id, seal.count))
        checked[seal.seq] = (seal.head, hashlib.sha256(bytes(seal.digests)).digest())
    total = sum(count for _, _, count in light)
    workers = min(workers, total // max(settings.AUDIT_VERIFY_SPAN_MIN_EVENTS, 1))
    cuts, done = [], light[0][2]
    target = total / max(workers, 1)
    for i, (_, _, count) in enumerate(light[1:], start=1):
        if done >= target * (len(cuts) + 1) and len(cuts) < workers - 1:
            cuts.append(i)  # light[i] starts a span
        done += count
    spans = []
    for start, end in zip([0, *cuts], [*cuts, len(light)], strict=True):
        # Span 0's first seal is the walker's, already read and taken.
        spans.append(
            _Span(
                after=after if start == 0 else spans[-1].upto,
                upto=None if end == len(light) else light[end - 1][1],
                first_seq=light[start][0] + (1 if start == 0 else 0),
                last_seq=light[end - 1][0],
                checked=checked,
            )
        )
    walker.seals = _span_seals(spans[0], walker.report)
    return spans if len(spans) > 1 else []


def _span_walker(span: _Span, report: Report, skip_until: int) -> _Walker:
    return _Walker(_span_seals(span, report), report, skip_until=skip_until)


def _fork_span(span: _Span, skip_until: int) -> tuple[int, int] | None:
    """Check ``span`` in a forked child from a clean state; return (pid, the
    read end of the pipe its pickled ``_SpanResult`` comes through), or None
    when this process cannot fork.

    ``os.fork``, not ``multiprocessing``: a multiprocessing child runs the
    after-fork hooks libraries registered there, and kombu's closes the
    broker connections it inherited, over the parent's own sockets (a child
    hung reading the parent's Redis socket). This child touches nothing it
    inherited but memory: it opens its own database connection, writes its
    result to the pipe and leaves with ``os._exit`` (no atexit handler, no
    flush of anything the parent holds).
    """
    try:
        read, write = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid:
        os.close(write)
        return pid, read
    code = 1
    try:
        os.close(read)
        walker = _span_walker(span, Report(), skip_until)
        _walk_range(walker, span.after, span.upto)
        connection.close()
        data = pickle.dumps(
            _SpanResult(walker.report, walker.latest, walker.lowest, walker.keyed)
        )
        with os.fdopen(write, "wb") as out:
            out.write(data)
        code = 0
    except BaseException:
        traceback.print_exc()  # the parent checks the span itself
    finally:
        os._exit(code)


def _span_result(pid: int, read: int) -> _SpanResult | None:
    """A child's result, or None when it died before giving it whole."""
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    return pickle.loads(data)  # noqa: S301  # nosec B301 - our own child's


def _walk_spans(walker: _Walker, spans: list[_Span], progress) -> None:
    """Check span 0 here with ``walker`` (it carries on from the archives)
    and the others in forked children at the same time, then join them.

    A child starts knowing nothing of the events before its span; its result
    stands unless they would have changed it: a keyed event before it and an
    event without a MAC in it (which then lacks one), or a time in it before
    the latest one before it (back-dated across the cut). Then that span is
    checked again here, from the true state (rare: only when it is bad).
    A child that dies, or cannot be forked, has its span checked here too.
    """
    connection.close()  # each child opens its own; none inherits this one
    children = [_fork_span(span, walker.skip_until) for span in spans[1:]]
    _walk_range(walker, spans[0].after, spans[0].upto, progress)
    report = walker.report
    report.spans = len(spans)
    latest, keyed = walker.latest, walker.keyed
    for span, child in zip(spans[1:], children, strict=True):
        result = None if child is None else _span_result(*child)
        if result is None or _redo(result, latest, keyed, walker.skew):
            again = _span_walker(span, Report(), walker.skip_until)
            again.latest, again.keyed = latest, keyed
            _walk_range(again, span.after, span.upto)
            result = _SpanResult(again.report, again.latest, None, again.keyed)
        part = result.report
        for name in ("events", "unsealed", "spooled", "keyed", "legacy"):
            setattr(report, name, getattr(report, name) + getattr(part, name))
        report.problems += part.problems
        if result.latest is not None and (latest is None or result.latest > latest):
            latest = result.latest
        keyed = keyed or result.keyed
        if progress:
            progress(report)
    walker.latest, walker.keyed = latest, keyed


def _redo(result: _SpanResult, latest, keyed: bool, skew: timedelta) -> bool:
    """Whether the events before a span would change what its child found."""
    if keyed and result.report.legacy:
        return True
    return (
        latest is not None
        and result.lowest is not None
        and before(datetime.fromisoformat(result.lowest), latest, skew)
    )


def audit_verify(
    *,
    public_key: str = "",
    archives: bool = True,
    anchored: bool = True,
    progress=None,
    workers: int | None = None,
):
    """Verify archives (read from S3) and the hot store against the seals,
    and the seals against the anchors; ``workers``: processes checking the
    hot store side by side on PostgreSQL (default ``AUDIT_VERIFY_WORKERS``)."""
    if workers is None:
        workers = settings.AUDIT_VERIFY_WORKERS
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
    _walk_hot(walker, boundary, progress, workers=workers)
    walker.finish()
    if anchored:
        check_anchors(report, verifying, last=None if archives else anchors.HOT_WINDOW)
    report.problems.sort(key=lambda p: (p.event_id is None, p.event_id or 0))
    return report
