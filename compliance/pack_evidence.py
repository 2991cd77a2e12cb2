"""The evidence of an evidence pack (``compliance/pack.py``): each kind read
through its app's selectors for ``[since, until)``, as rows of plain values,
written as JSON and as CSV (nested values as JSON in their cell)."""

from __future__ import annotations

import csv
import io
import json

from django.core.serializers.json import DjangoJSONEncoder

from audit import selectors as audit_selectors
from backups import selectors as backup_selectors
from compliance import selectors
from monitoring import selectors as monitoring_selectors
from projects import selectors as project_selectors


def iso(value) -> str | None:
    return value.isoformat() if value else None


def _results(since, until) -> list[dict]:
    rows = selectors.results_between(start=since, end=until).order_by(
        "checked_at", "control_id", "id"
    )
    return [
        {
            "run": r.run_id,
            "control_id": r.control_id,
            "checked_at": iso(r.checked_at),
            "status": r.status,
            "summary": r.summary,
            "evidence": r.evidence,
        }
        for r in rows
    ]


def _reviews(since, until) -> list[dict]:
    return [
        {
            "id": r.pk,
            "period_start": iso(r.period_start),
            "period_end": iso(r.period_end),
            "notable_count": r.notable_count,
            "signed_off_by": r.signed_off_label,
            "signed_off_at": iso(r.signed_off_at),
            "comment": r.comment,
            "own_events_reason": r.own_events_reason,
        }
        for r in audit_selectors.reviews_between(start=since, end=until)
    ]


def _drills(since, until) -> list[dict]:
    return [
        {
            "id": d.pk,
            "started_at": iso(d.started_at),
            "finished_at": iso(d.finished_at),
            "ok": d.ok,
            "copy_number": d.copy_number,
            "mismatches": d.mismatches,
            "error": d.error,
        }
        for d in backup_selectors.restore_drills_between(start=since, end=until)
    ]


def _backups(since, until) -> list[dict]:
    return [
        {
            "id": s.pk,
            "created_at": iso(s.created_at),
            "finished_at": iso(s.finished_at),
            "state": s.state,
            "trigger": s.trigger,
            "verified_at": iso(s.verified_at),
            "verify_ok": s.verify_ok,
            "copies": [
                {
                    "number": c.number,
                    "state": c.state,
                    "location": c.location,
                    "size": c.size,
                    "locked_until": iso(c.locked_until),
                }
                for c in s.copies.all()
            ],
            "error": s.error,
        }
        for s in backup_selectors.backup_sets_between(start=since, end=until)
    ]


def _erasures(since, until) -> list[dict]:
    return [
        {
            "id": str(c.pk),
            "subject_type": c.subject_type,
            "subject_id": c.subject_id,
            "subject_label": c.subject_label,
            "method": c.method,
            "requested_by": c.requested_by_label,
            "reason": c.reason,
            "requested_at": iso(c.created_at),
            "completed_at": iso(c.completed_at),
            "key_destroyed": c.key_destroyed,
            "objects_planned": len(c.objects_planned or []),
            "objects_removed": len(c.objects_removed or []),
        }
        for c in project_selectors.erasure_certificates_between(start=since, end=until)
    ]


def _role_changes(since, until) -> list[dict]:
    return [
        {
            "event_id": e.pk,
            "occurred_at": iso(e.occurred_at),
            "event_type": e.event_type,
            "actor": e.actor_label or (str(e.actor_id) if e.actor_id else ""),
            "target": f"{e.target_type}:{e.target_id}",
            "path": e.path,
            "details": e.details,
        }
        for e in audit_selectors.role_change_events(start=since, end=until)
    ]


def _alerts(since, until) -> list[dict]:
    return [
        {
            "id": a.pk,
            "rule": a.rule,
            "severity": a.severity,
            "subject": f"{a.subject_kind}:{a.subject}",
            "summary": a.summary,
            "first_seen": iso(a.first_seen),
            "last_seen": iso(a.last_seen),
            "count": a.count,
            "state": a.state,
            "acknowledged_by": a.acknowledged_label,
            "acknowledged_at": iso(a.acknowledged_at),
            "resolved_by": a.resolved_label,
            "resolved_at": iso(a.resolved_at),
            "resolved_reason": a.resolved_reason,
        }
        for a in monitoring_selectors.alerts_between(start=since, end=until)
    ]


# File stem -> (what it is, reader).
EVIDENCE = {
    "control-results": ("Control check results", _results),
    "review-signoffs": ("Audit log reviews and their sign-off", _reviews),
    "restore-drills": ("Restore drills and their result", _drills),
    "backup-sets": ("Backup sets and their copies (3-2-1)", _backups),
    "erasure-certificates": ("Erasure requests and certificates", _erasures),
    "role-changes": ("Role and group membership changes", _role_changes),
    "alerts": ("Alerts open during the period", _alerts),
}


def as_json(rows: list[dict]) -> bytes:
    return json.dumps(
        rows, indent=2, cls=DjangoJSONEncoder, ensure_ascii=False
    ).encode()


def as_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    columns = list(rows[0]) if rows else []
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                json.dumps(v, cls=DjangoJSONEncoder, sort_keys=True)
                if isinstance(v, dict | list)
                else ("" if v is None else v)
                for v in (row[c] for c in columns)
            ]
        )
    return out.getvalue().encode()
