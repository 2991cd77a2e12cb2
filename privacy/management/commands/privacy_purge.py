"""Run the purge job now (it also runs on the Celery beat schedule)."""

from django.core.management.base import BaseCommand

from privacy import services


class Command(BaseCommand):
    help = "Erase soft-deleted projects, never-verified accounts, expired exports."

    def handle(self, *args, **options):
        summary = services.purge_run()
        self.stdout.write(
            self.style.SUCCESS(", ".join(f"{k}: {v}" for k, v in summary.items()))
        )
