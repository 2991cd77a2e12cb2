"""Retention: which sets to keep, pruning the rest, the age of the last good set."""

from __future__ import annotations

import datetime as dt
import shutil

from django.conf import settings
from django.utils import timezone

from audit.services import audit_record
from backups import offsite
from backups.models import BackupSet, CopyState, SetState
from backups.services.common import set_folder


def retention_keep(sets: list[BackupSet]) -> set[int]:
    """Ids kept by the policy: the newest set of each of the last N days,
    weeks and months that have one (``BACKUP_KEEP_DAILY/WEEKLY/MONTHLY``)."""
    keep: set[int] = set()
    rules = (
        (settings.BACKUP_KEEP_DAILY, lambda t: t.date()),
        (settings.BACKUP_KEEP_WEEKLY, lambda t: t.isocalendar()[:2]),
        (settings.BACKUP_KEEP_MONTHLY, lambda t: (t.year, t.month)),
    )
    ordered = sorted(sets, key=lambda s: (s.created_at, s.pk), reverse=True)
    for count, bucket in rules:
        seen = []
        for item in ordered:
            slot = bucket(item.created_at)
            if slot in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(slot)
            keep.add(item.pk)
    return keep


def backup_prune(*, actor=None) -> list[int]:
    """Apply the retention policy to all three places; return the pruned ids.

    Objects under Object Lock stay in S3 until their retention ends: the
    copy is marked ``locked`` and retried by the next prune.
    """
    candidates = list(
        BackupSet.objects.filter(state__in=[SetState.GOOD, SetState.INCOMPLETE])
    )
    keep = retention_keep(candidates)
    pruned = []
    for item in candidates:
        if item.pk in keep:
            continue
        _prune_set(item)
        pruned.append(item.pk)
    for item in BackupSet.objects.filter(copies__state=CopyState.LOCKED).distinct():
        _prune_set(item)
    for item in BackupSet.objects.filter(state=SetState.FAILED).exclude(
        copies__state=CopyState.PRUNED
    ):
        for n in (1, 2):
            shutil.rmtree(set_folder(n, item.pk), ignore_errors=True)
    if pruned:
        audit_record(event_type="backup.prune", actor=actor, details={"pruned": pruned})
    return pruned


def _prune_set(item: BackupSet) -> None:
    for n in (1, 2):
        shutil.rmtree(set_folder(n, item.pk), ignore_errors=True)
    item.copies.filter(number__in=[1, 2]).update(state=CopyState.PRUNED)
    copy3 = item.copies.filter(number=3).first()
    if copy3 and copy3.state in (CopyState.DONE, CopyState.LOCKED):
        try:
            gone = offsite.delete_prefix(item.pk)
        except offsite.OffsiteError:
            gone = False
        copy3.state = CopyState.PRUNED if gone else CopyState.LOCKED
        copy3.save(update_fields=["state"])
    elif copy3:
        copy3.state = CopyState.PRUNED
        copy3.save(update_fields=["state"])
    item.state = SetState.PRUNED
    item.save(update_fields=["state"])


def backup_age_hours() -> float | None:
    """Hours since the last good set finished (None when there is none)."""
    last = (
        BackupSet.objects.filter(state=SetState.GOOD, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if last is None:
        return None
    return (timezone.now() - last) / dt.timedelta(hours=1)
