from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit import serialise
from audit.archive import ArchiveError
from audit.export import Filters, export_rows
from audit.models import Outcome
from audit.services import audit_export_record

BAD_TIME = "Not a date or date-time: {value} (use 2026-11-01 or 2026-11-01T08:00)"


def when(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(BAD_TIME.format(value=value))
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.utc)
    return moment


class Command(BaseCommand):
    help = "Export audit events (archived and hot) as JSON Lines or CSV."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=when, help="from (inclusive), UTC")
        parser.add_argument("--until", type=when, help="to (exclusive), UTC")
        parser.add_argument("--user", default="", help="actor e-mail or id")
        parser.add_argument(
            "--type", default="", help="event type, or a prefix ending in *"
        )
        parser.add_argument("--outcome", default="", choices=["", *Outcome.values])
        parser.add_argument("--ip", default="", help="source IP address")
        parser.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
        parser.add_argument("--output", default="-", help="file path, - for stdout")
        parser.add_argument("--hot-only", action="store_true")

    def handle(self, *args, **options):
        try:
            filters = Filters(
                since=options["since"],
                until=options["until"],
                user=options["user"],
                event_type=options["type"],
                outcome=options["outcome"],
                ip=options["ip"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        writer = (
            serialise.write_csv if options["format"] == "csv" else serialise.write_jsonl
        )
        rows = export_rows(filters, archives=not options["hot_only"])
        try:
            if options["output"] == "-":
                count = writer(rows, self.stdout)
            else:
                with open(options["output"], "w", encoding="utf-8", newline="") as out:
                    count = writer(rows, out)
        except ArchiveError as exc:
            raise CommandError(str(exc)) from exc
        audit_export_record(
            fmt=options["format"],
            count=count,
            filters={**filters.as_dict(), "output": options["output"]},
            actor_label="manage.py audit_export",
        )
        self.stderr.write(f"{count} events exported")
