"""Rewrite every project file still in an older format as KREOSEAL (resumable)."""

from django.core.management.base import BaseCommand, CommandError

from projects import reseal
from projects.keys import KeyError_
from projects.storage import StorageUnavailable


def report(command: BaseCommand, summary: dict) -> None:
    """The summary lines both storage_reseal and keys_rotate print."""
    if summary["dry_run"]:
        line = f"{summary['left']} file(s) in an older format to reseal"
    else:
        line = f"{summary['resealed']} file(s) resealed, {summary['left']} left"
    if summary["already_sealed"]:
        line += (
            f"; {summary['already_sealed']} recorded as older but already "
            "sealed (row corrected)"
        )
    if summary["exports_left"]:
        line += (
            f"; {summary['exports_left']} data export(s) in the old format "
            "(their key is only in the mailed link: they go when they expire)"
        )
    command.stdout.write(command.style.SUCCESS(line))
    if summary["failed"]:
        raise CommandError(
            reseal.FAILED.format(
                count=len(summary["failed"]), ids=", ".join(summary["failed"])
            )
        )


class Command(BaseCommand):
    help = (
        "Rewrite every project file still stored in an older format (KREOF1, "
        "or unencrypted) as KREOSEAL. Resumable: run it again after an "
        "interruption; objects already sealed are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what is left"
        )
        parser.add_argument(
            "--limit", type=int, default=None, help="stop after N files resealed"
        )

    def handle(self, *args, dry_run: bool, limit: int | None, **options):
        verb = "checked" if dry_run else "resealed"

        def progress(done: int, total: int) -> None:
            self.stdout.write(f"{verb} {done}/{total}")

        try:
            summary = reseal.storage_reseal(
                dry_run=dry_run, limit=limit, progress=progress
            )
        except (reseal.ResealError, KeyError_, StorageUnavailable) as exc:
            raise CommandError(str(exc)) from exc
        report(self, summary)
