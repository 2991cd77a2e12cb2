"""Move a folder erasure ledger into the ledger bucket."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from projects import keys

NO_FOLDER = "No ledger folder at {folder}: nothing to import."


class Command(BaseCommand):
    help = (
        "Move the tombstones of a folder ledger (KREO_KEY_LEDGER_DIR) into "
        "KREO_KEY_LEDGER_S3_BUCKET. Each file is removed once the bucket holds "
        "it; run it again after an interruption, a second run moves nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", help="the folder ledger to move")

    def handle(self, *args, folder: str, **options):
        path = Path(folder)
        if not path.is_dir():
            raise CommandError(NO_FOLDER.format(folder=path))
        try:
            moved = keys.ledger_import(path)
        except keys.LedgerError as exc:
            raise CommandError(str(exc)) from exc
        bucket = keys.ledger().bucket
        self.stdout.write(
            self.style.SUCCESS(
                f"{moved} tombstone(s) moved from {path} into bucket {bucket}"
            )
        )
