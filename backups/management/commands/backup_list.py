from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backups import selectors, services
from backups.models import SetState

INCOMPLETE_NOTE = (
    "incomplete: copy 3 is missing, so the 3-2-1 rule is not met and the set "
    "counts as no good backup"
)


class Command(BaseCommand):
    help = "List backup sets and the state of each copy."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=30)
        parser.add_argument(
            "--rescan",
            action="store_true",
            help="first rebuild the catalogue from the MAC'd manifests of the "
            "copies in both folders and the bucket (e.g. after a restore)",
        )

    def handle(self, *args, **options):
        if options["rescan"]:
            try:
                services.backup_catalogue_rescan(progress=self.stdout.write)
            except Exception as exc:
                raise CommandError(f"rescan failed: {exc}") from exc
        if not settings.BACKUP_S3_BUCKET:
            self.stdout.write(self.style.WARNING(services.NO_BUCKET))
        sets = list(selectors.backup_set_list()[: options["limit"]])
        self.stdout.write(
            f"{'id':>6}  {'created (UTC)':19}  {'state':10}  copy1    copy2    copy3"
        )
        for item in sets:
            copies = "  ".join(f"{item.copy_state(n):7}" for n in (1, 2, 3))
            verified = (
                ""
                if item.verify_ok is None
                else (" verified" if item.verify_ok else " VERIFY FAILED")
            )
            line = (
                f"{item.pk:>6}  {item.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{item.state:10}  {copies}{verified}"
            )
            if item.state == SetState.INCOMPLETE:
                line = self.style.WARNING(line)
            self.stdout.write(line)
        self.stdout.write(f"{len(sets)} sets")
        if any(item.state == SetState.INCOMPLETE for item in sets):
            self.stdout.write(INCOMPLETE_NOTE)
