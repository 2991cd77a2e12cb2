"""Export: archived and hot events through the same filters, in id order."""

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from audit import archive, serialise
from audit.models import ArchiveState, AuditArchive, AuditEvent
from audit.selectors import event_filter

BAD_IP = "Not an IP address: {value}"


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    user: str = ""
    event_type: str = ""
    outcome: str = ""
    ip: str = ""

    def __post_init__(self):
        if self.ip:
            try:
                self.ip = str(ipaddress.ip_address(self.ip))
            except ValueError as exc:
                raise ValueError(BAD_IP.format(value=self.ip)) from exc

    def as_dict(self) -> dict:
        return {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in self.__dict__.items()
            if v
        }

    def match(self, row: dict) -> bool:
        when = datetime.fromisoformat(row["occurred_at"])
        if self.since and when < self.since:
            return False
        if self.until and when >= self.until:
            return False
        if self.user and not (
            row["actor_label"].lower() == self.user.lower()
            or (row["actor_id"] or "") == self.user
        ):
            return False
        if self.event_type:
            prefix = self.event_type.rstrip("*")
            if self.event_type.endswith(("*", ".")):
                if not row["event_type"].startswith(prefix):
                    return False
            elif row["event_type"] != self.event_type:
                return False
        if self.outcome and row["outcome"] != self.outcome:
            return False
        return not (self.ip and row["source_ip"] != self.ip)


def export_rows(filters: Filters, *, archives: bool = True) -> Iterator[dict]:
    """Matching events from archives whose time range overlaps, then hot rows."""
    boundary = 0
    done = AuditArchive.objects.filter(
        state__in=(ArchiveState.VERIFIED, ArchiveState.PURGED)
    ).order_by("first_id")
    for item in done:
        boundary = max(boundary, item.last_id)
        if not archives:
            continue
        if filters.since and item.last_at and item.last_at < filters.since:
            continue
        if filters.until and item.first_at and item.first_at >= filters.until:
            continue
        yield from (row for row in archive.read_rows(item) if filters.match(row))
    hot = event_filter(
        AuditEvent.objects.filter(id__gt=boundary),
        since=filters.since,
        until=filters.until,
        user=filters.user,
        event_type=filters.event_type,
        outcome=filters.outcome,
        ip=filters.ip,
    )
    yield from serialise.iter_values(hot)
