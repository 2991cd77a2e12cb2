from django.core.management.base import BaseCommand

from audit.services import audit_seal


class Command(BaseCommand):
    help = "Fold unsealed audit events into signed seals now."

    def handle(self, *args, **options):
        sealed = audit_seal()
        self.stdout.write(self.style.SUCCESS(f"{sealed} events sealed"))
