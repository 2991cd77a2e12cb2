from django.core.management.base import BaseCommand, CommandError

from backups import services
from backups.models import SetState


class Command(BaseCommand):
    help = "Take a 3-2-1 backup set now; prints its id."

    def handle(self, *args, **options):
        try:
            backup_set = services.backup_create(progress=self.stdout.write)
        except Exception as exc:
            raise CommandError(f"backup failed: {exc}") from exc
        style = (
            self.style.SUCCESS
            if backup_set.state == SetState.GOOD
            else (self.style.WARNING)
        )
        states = ", ".join(
            f"copy {c.number} {c.state}" for c in backup_set.copies.all()
        )
        self.stdout.write(
            style(f"backup set {backup_set.pk} {backup_set.state}: {states}")
        )
        if backup_set.state == SetState.INCOMPLETE:
            self.stdout.write(style(backup_set.error))
        self.stdout.write(str(backup_set.pk))
