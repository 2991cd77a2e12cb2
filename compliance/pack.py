"""The evidence pack: one signed archive an auditor checks offline.

A zip holding, for a period of whole days:

- ``report.pdf``: the control table (id, title, ISO 27001 / SOC 2 mapping,
  status over the period, last evidence), the charts and the findings
  (every result that is not a pass);
- ``evidence/*.json`` and ``evidence/*.csv`` (``pack_evidence.py``): the
  control results, review sign-offs, restore drills, backup sets, erasure
  certificates, role changes and alerts of the period, read through each
  app's selectors;
- ``charts/*.svg``: the charts as drawn in the report;
- ``manifest.json``: the period, the signing key's id, and the size and
  SHA-256 of every other file;
- ``manifest.sig``: the raw 64-byte Ed25519 signature of ``manifest.json``'s
  bytes with the audit signing key (``audit.keys.signing_key``).

An auditor verifies it with the published public key alone
(``tools/kreo_open.py pack-verify``, or openssl and sha256sum: README,
"Evidence pack"). The archive goes to the audit archive bucket with Object
Lock (``kreo.s3.retention_params``), or on the embedded default (no bucket)
to a local folder, created once and never rewritten. Producing a pack is an
audit event (``compliance.pack``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone
from django.utils.text import slugify

from audit import keys
from audit.services import audit_record
from compliance import pack_evidence
from compliance.catalogue import controls
from compliance.models import CheckStatus
from kreo import s3 as kreo_s3

FORMAT = "kreo-evidence-pack-v1"
EVENT = "compliance.pack"
PREFIX = "compliance-packs/"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"

FROM_AFTER_TO = "The period starts ({start}) after it ends ({end})."
IN_FUTURE = (
    "The period ends on {end}, after today ({today}): a pack covers days that "
    "have happened."
)
NO_DATA = (
    "No control check results between {start} and {end}: nothing to put in a "
    "pack. Choose a period in which the checks ran."
)
LOCK_UNKNOWN = (
    "The pack was not stored: the Object Lock configuration of bucket {bucket} "
    "could not be read ({error}). Nothing was written."
)
NOT_STORED = "The pack was not stored in s3://{bucket}/{key}: {error}"


class PackError(Exception):
    """A pack cannot be made; the message says why, for the user."""


@dataclass
class PackResult:
    name: str
    data: bytes
    sha256: str
    location: str
    object_lock: dict
    manifest: dict
    files: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.data)


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end+1 00:00)`` in the current time zone, cut at now
    when the period ends today; refuse a period that is reversed or ends in
    the future."""
    today = timezone.localdate()
    if start > end:
        raise PackError(FROM_AFTER_TO.format(start=start, end=end))
    if end > today:
        raise PackError(IN_FUTURE.format(end=end, today=today))
    zone = timezone.get_current_timezone()
    since = datetime.combine(start, time.min, tzinfo=zone)
    until = min(
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone), timezone.now()
    )
    return since, until


# -- the report --------------------------------------------------------------


def control_table(results: list[dict]) -> list[dict]:
    """One row per control: its mapping, status counts over the period, and
    its last result."""
    by_control: dict[str, list[dict]] = {}
    for row in results:
        by_control.setdefault(row["control_id"], []).append(row)
    table = []
    for item in controls():
        rows = by_control.pop(item.id, [])
        table.append(_table_row(item.id, item.title, item.iso27001, item.soc2, rows))
    for control_id, rows in sorted(by_control.items()):  # retired controls
        table.append(
            _table_row(control_id, "(no longer in the catalogue)", (), (), rows)
        )
    return table


def _table_row(control_id, title, iso, soc2, rows) -> dict:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    last = rows[-1] if rows else None
    return {
        "id": control_id,
        "title": title,
        "iso27001": ", ".join(iso),
        "soc2": ", ".join(soc2),
        "runs": len(rows),
        "counts": [(CheckStatus(s).label, n) for s, n in sorted(counts.items())],
        "last_status": last["status"] if last else "",
        "last_status_label": CheckStatus(last["status"]).label if last else "no result",
        "last_at": last["checked_at"] if last else "",
        "last_summary": last["summary"] if last else "",
    }


def _charts(start: date, end: date) -> list[tuple[str, str]]:
    try:
        from compliance.charts import chart_svgs
    except ImportError:  # the cockpit's charts are not installed
        return []
    return chart_svgs(start=start, end=end)


# -- building ----------------------------------------------------------------


def _canonical(value: dict) -> bytes:
    return (
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=True).encode() + b"\n"
    )


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def pack_contents(
    *, start: date, end: date, actor=None
) -> tuple[dict[str, bytes], dict]:
    """Every file of the pack by name, and its manifest (not yet signed)."""
    from compliance import pdf

    since, until = period_bounds(start, end)
    evidence = {
        stem: reader(since, until)
        for stem, (_, reader) in pack_evidence.EVIDENCE.items()
    }
    results = evidence["control-results"]
    if not results:
        raise PackError(NO_DATA.format(start=start, end=end))
    created = timezone.now()
    raw_public = keys.public_key_bytes()
    charts = _charts(start, end)
    files: dict[str, bytes] = {}
    files["report.pdf"] = pdf.report_pdf(
        {
            "start": start,
            "end": end,
            "since": since,
            "until": until,
            "created_at": created,
            "created_by": getattr(actor, "email", "") or "",
            "key_id": keys.key_id(raw_public),
            "table": control_table(results),
            "findings": [
                {**r, "status_label": CheckStatus(r["status"]).label}
                for r in results
                if r["status"] != CheckStatus.PASS
            ],
            "charts": charts,
            "evidence": [
                (stem, pack_evidence.EVIDENCE[stem][0], len(rows))
                for stem, rows in evidence.items()
            ],
        }
    )
    for stem, rows in evidence.items():
        files[f"evidence/{stem}.json"] = pack_evidence.as_json(rows)
        files[f"evidence/{stem}.csv"] = pack_evidence.as_csv(rows)
    for n, (title, svg) in enumerate(charts, 1):
        files[f"charts/{n:02d}-{slugify(title) or 'chart'}.svg"] = svg.encode()
    manifest = {
        "format": FORMAT,
        "period": {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "since": since.isoformat(),
            "until": until.isoformat(),
        },
        "created_at": created.isoformat(),
        "created_by": getattr(actor, "email", "") or "",
        "key_id": keys.key_id(raw_public),
        "public_key": keys.public_key_b64(),
        "signature": {"file": SIGNATURE, "algorithm": "Ed25519", "signs": MANIFEST},
        "counts": {stem: len(rows) for stem, rows in evidence.items()},
        "files": [
            {
                "name": name,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            for name, data in files.items()
        ],
    }
    return files, manifest


def _store_local(name: str, data: bytes) -> str:
    folder = Path(settings.VAR_DIR) / "compliance-packs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return str(target)


def _store_s3(name: str, data: bytes, sha256: str) -> tuple[str, dict]:
    from audit.archive import s3_client

    bucket, key = settings.AUDIT_ARCHIVE_S3_BUCKET, PREFIX + name
    client = s3_client()
    try:
        lock = kreo_s3.retention_params(
            client, bucket, days=settings.AUDIT_ARCHIVE_LOCK_DAYS
        )
    except (BotoCoreError, ClientError) as exc:
        raise PackError(LOCK_UNKNOWN.format(bucket=bucket, error=exc)) from exc
    try:
        done = client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType="application/zip",
            ServerSideEncryption="AES256",
            Metadata={"sha256": sha256},
            **lock,
        )
        kreo_s3.confirm_retention(client, bucket, key, done.get("VersionId"), lock)
    except (kreo_s3.RetentionError, BotoCoreError, ClientError) as exc:
        raise PackError(NOT_STORED.format(bucket=bucket, key=key, error=exc)) from exc
    return f"s3://{bucket}/{key}", lock


def pack_build(*, start: date, end: date, actor=None, request=None) -> PackResult:
    """Build, sign and store the evidence pack for the days ``start``..``end``
    (inclusive), and record it in the audit trail (with ``request``'s
    source when built from the admin).

    Raises ``PackError`` with a message for the user on a reversed or future
    period, a period without check results, or storage that cannot retain
    it; nothing is written then.
    """
    files, manifest = pack_contents(start=start, end=end, actor=actor)
    manifest_bytes = _canonical(manifest)
    files[MANIFEST] = manifest_bytes
    files[SIGNATURE] = keys.signing_key().sign(manifest_bytes)
    data = _zip(files)
    sha256 = hashlib.sha256(data).hexdigest()
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%fZ")
    name = f"kreo-evidence-{start.isoformat()}_{end.isoformat()}-{stamp}.zip"
    if settings.AUDIT_ARCHIVE_S3_BUCKET:
        location, lock = _store_s3(name, data, sha256)
    else:
        location, lock = _store_local(name, data), {}
    audit_record(
        event_type=EVENT,
        actor=actor,
        request=request,
        target_type="compliance.pack",
        target_id=name,
        details={
            "from": start.isoformat(),
            "to": end.isoformat(),
            "location": location,
            "sha256": sha256,
            "size": len(data),
            "key_id": manifest["key_id"],
            "files": len(files),
            "object_lock": {
                "mode": lock.get("ObjectLockMode", ""),
                "until": pack_evidence.iso(lock.get("ObjectLockRetainUntilDate")),
            },
        },
    )
    return PackResult(
        name=name,
        data=data,
        sha256=sha256,
        location=location,
        object_lock=lock,
        manifest=manifest,
        files=list(files),
    )
