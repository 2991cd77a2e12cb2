from django.core.management.base import BaseCommand, CommandError

from audit.archive import ArchiveError
from audit.services import audit_archive_run


class Command(BaseCommand):
    help = (
        "Archive audit events older than the retention window to S3, then "
        "remove them from the hot store."
    )

    def handle(self, *args, **options):
        def progress(archive):
            self.stderr.write(
                f"  archive {archive.first_id}..{archive.last_id}: {archive.state}"
            )

        try:
            summary = audit_archive_run(
                actor_label="manage.py audit_archive", progress=progress
            )
        except ArchiveError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            raise CommandError(
                f"archival stopped ({type(exc).__name__}: {exc}); nothing was "
                "lost, run it again to resume"
            ) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary['archives']} archives, {summary['events']} events "
                f"archived, {summary['purged']} removed from the hot store"
            )
        )
