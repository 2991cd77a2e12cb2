from django.core.management.base import BaseCommand

from audit.anchors import anchor_write
from audit.services import audit_seal


class Command(BaseCommand):
    help = "Fold unsealed audit events into signed seals now, and anchor them."

    def handle(self, *args, **options):
        sealed = audit_seal()
        anchored = anchor_write()
        self.stdout.write(self.style.SUCCESS(f"{sealed} events sealed"))
        if anchored:
            self.stdout.write(self.style.SUCCESS(f"anchor {anchored} written"))
