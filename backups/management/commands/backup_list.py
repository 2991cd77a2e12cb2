from django.core.management.base import BaseCommand

from backups import selectors


class Command(BaseCommand):
    help = "List backup sets and the state of each copy."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=30)

    def handle(self, *args, **options):
        sets = list(selectors.backup_set_list()[: options["limit"]])
        self.stdout.write(
            f"{'id':>6}  {'created (UTC)':19}  {'state':8}  copy1    copy2    copy3"
        )
        for item in sets:
            copies = "  ".join(f"{item.copy_state(n):7}" for n in (1, 2, 3))
            verified = (
                ""
                if item.verify_ok is None
                else (" verified" if item.verify_ok else " VERIFY FAILED")
            )
            self.stdout.write(
                f"{item.pk:>6}  {item.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{item.state:8}  {copies}{verified}"
            )
        self.stdout.write(f"{len(sets)} sets")
