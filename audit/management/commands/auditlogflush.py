"""django-auditlog's ``auditlogflush``, refused: field changes are part of the
audit trail (audit/fieldchanges.py) and leave the database only through the
archival purge, after their events are in a verified archive."""

from django.core.management.base import BaseCommand, CommandError

REFUSED = (
    "auditlogflush is disabled: field changes are part of the audit trail and "
    "leave only through `manage.py audit_archive` (archived, verified, then "
    "purged)."
)


class Command(BaseCommand):
    help = "Refused: field changes leave only through audit_archive."

    def add_arguments(self, parser):
        # Whatever django-auditlog's own command takes, so no flag gets past
        # this one as an "unrecognized arguments" usage error instead.
        parser.add_argument("args", nargs="*")
        parser.add_argument("-y", "--yes", action="store_true")
        parser.add_argument("-b", "--before-date")
        parser.add_argument("-t", "--truncate", action="store_true")

    def handle(self, *args, **options):
        raise CommandError(REFUSED)
