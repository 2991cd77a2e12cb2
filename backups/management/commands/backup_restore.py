from django.core.management.base import BaseCommand, CommandError

from backups import services

NEEDS_YES = (
    "Restoring replaces the database and files of the target: "
    "re-run with --yes to confirm."
)


class Command(BaseCommand):
    help = "Restore a backup set (database and files) from one of its copies."

    def add_arguments(self, parser):
        parser.add_argument("--id", type=int, required=True)
        parser.add_argument("--copy", type=int, choices=[1, 2, 3], default=1)
        parser.add_argument(
            "--target-db", default="", help="restore into this database URL instead"
        )
        parser.add_argument(
            "--no-files", action="store_true", help="restore the database only"
        )
        parser.add_argument("--yes", action="store_true")

    def handle(self, *args, **options):
        if not options["yes"]:
            raise CommandError(NEEDS_YES)
        try:
            manifest = services.backup_restore(
                set_id=options["id"],
                copy=options["copy"],
                target_db=options["target_db"],
                restore_files=not options["no_files"],
                progress=self.stdout.write,
            )
        except Exception as exc:
            raise CommandError(f"restore refused or failed: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"restored set {options['id']} from copy {options['copy']}: "
                f"{len(manifest['tables'])} tables, "
                f"{manifest['files']['count']} files"
            )
        )
