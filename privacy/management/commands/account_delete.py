"""Staff deletion of an account (the rule for owned projects applies)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from privacy import services


class Command(BaseCommand):
    help = "Delete an account by e-mail: " + services.OWNED_PROJECTS_RULE

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--reason", default="staff request")
        parser.add_argument("--yes", action="store_true")

    def handle(self, *args, email: str, reason: str, yes: bool, **options):
        if not yes:
            raise CommandError("This deletes the account: add --yes.")
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No account for {email}.")
        summary = services.account_delete(
            actor=None, user=user, staff=True, reason=reason
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"account {summary['user']} deleted; "
                f"{len(summary['projects_put_aside'])} project(s) put aside"
            )
        )
