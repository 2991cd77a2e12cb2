"""Rewrap every project data key under the active key-encryption key, then
move files still in an older format to KREOSEAL (``storage_reseal``)."""

from django.core.management.base import BaseCommand, CommandError

from projects import keys, reseal
from projects.management.commands.storage_reseal import report
from projects.storage import StorageUnavailable


class Command(BaseCommand):
    help = (
        "Rewrap project data keys under KREO_ACTIVE_KEY_ID, then reseal files "
        "still in an older format (as storage_reseal). Resumable: run it "
        "again after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=200)

    def handle(self, *args, batch: int, **options):
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"rewrapped {done}/{total}")

        def resealing(done: int, total: int) -> None:
            self.stdout.write(f"resealed {done}/{total}")

        try:
            summary = keys.data_keys_rotate(progress=progress, batch=batch)
        except keys.KeyError_ as exc:
            raise CommandError(str(exc)) from exc
        counts = ", ".join(
            f"{k}: {n}" for k, n in sorted(summary["keys_by_kek"].items())
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{summary['rewrapped']} data keys rewrapped under "
                f"{summary['active']}; keys by KEK: {counts or 'none'}"
            )
        )
        try:
            resealed = reseal.storage_reseal(progress=resealing)
        except (reseal.ResealError, keys.KeyError_, StorageUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        report(self, resealed)
