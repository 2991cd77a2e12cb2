"""Rewrap every project data key under the active key-encryption key."""

from django.core.management.base import BaseCommand, CommandError

from projects import keys


class Command(BaseCommand):
    help = (
        "Rewrap project data keys under KREO_ACTIVE_KEY_ID without re-encrypting "
        "files. Resumable: run it again after an interruption."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=200)

    def handle(self, *args, batch: int, **options):
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"rewrapped {done}/{total}")

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
