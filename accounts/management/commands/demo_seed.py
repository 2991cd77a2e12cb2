from django.core.management.base import BaseCommand

from accounts.services import demo_user_ensure


class Command(BaseCommand):
    help = "Create (or reset) the demo login for the embedded default."

    def add_arguments(self, parser):
        parser.add_argument("--email", default="demo@kreo.local")

    def handle(self, *args, email, **options):
        user, password = demo_user_ensure(email=email)
        self.stdout.write(self.style.SUCCESS(f"demo login: {user.email} / {password}"))
