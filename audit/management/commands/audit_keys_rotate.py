from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit import keys
from audit.services import audit_record


class Command(BaseCommand):
    help = (
        "Rotate the audit event MAC key: print AUDIT_EVENT_KEY with a new key "
        "id first and every old one kept (old events still verify). Set it in "
        "the environment (or the sealed secret) of every process, then restart."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--key-id",
            default="",
            help="the new key id (1-16 of A-Z a-z 0-9 . _ -; default e<YYYYMMDD>)",
        )

    def handle(self, *args, **options):
        try:
            key_id, ring = keys.event_ring_rotated(
                key_id=options["key_id"],
                today=timezone.now().strftime("%Y%m%d"),
            )
        except keys.EventKeyError as exc:
            raise CommandError(str(exc)) from exc
        audit_record(
            event_type="audit.keys.rotate",
            actor_label="manage.py audit_keys_rotate",
            details={"key": "AUDIT_EVENT_KEY", "new_key_id": key_id},
        )
        self.stderr.write(
            f"new event key id {key_id}; keep every older entry for as long as "
            "events MACed under it are kept (archives too). Set:"
        )
        self.stdout.write(f"AUDIT_EVENT_KEY={ring}")
