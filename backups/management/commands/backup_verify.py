from django.core.management.base import BaseCommand, CommandError

from backups import selectors, services
from backups.models import BackupSet, SetState

NO_SET = "No backup set {id}."
NO_SETS = "There is no backup set to verify."


class Command(BaseCommand):
    help = "Check every copy of a set against its manifest; non-zero on any fault."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--id", type=int)
        which.add_argument("--latest", action="store_true")

    def handle(self, *args, **options):
        if options["id"] is not None:
            try:
                backup_set = selectors.backup_set_get(set_id=options["id"])
            except BackupSet.DoesNotExist as exc:
                raise CommandError(NO_SET.format(id=options["id"])) from exc
        else:
            backup_set = selectors.backup_set_latest()
            if backup_set is None:
                raise CommandError(NO_SETS)
        results = services.backup_verify(
            backup_set=backup_set, progress=self.stdout.write
        )
        for result in results:
            line = f"copy {result['copy']} {result['artifact']}: "
            if result["ok"]:
                self.stdout.write(self.style.SUCCESS(line + "ok"))
            else:
                self.stdout.write(self.style.ERROR(line + result["error"]))
            if result.get("warning"):
                self.stdout.write(self.style.WARNING(line + result["warning"]))
        if backup_set.state == SetState.INCOMPLETE:
            self.stdout.write(self.style.WARNING(backup_set.error))
        bad = [r for r in results if not r["ok"]]
        if bad or not results:
            raise CommandError(
                f"backup set {backup_set.pk}: {len(bad)} faulty artifact(s): "
                + ", ".join(f"copy {r['copy']} {r['artifact']}" for r in bad)
            )
        self.stdout.write(
            f"backup set {backup_set.pk}: {len(results)} artifacts verified"
        )
