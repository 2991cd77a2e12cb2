from django.core.management.base import BaseCommand

from audit import keys


class Command(BaseCommand):
    help = "Print the public key that verifies audit seals (publish it)."

    def handle(self, *args, **options):
        raw = keys.public_key_bytes()
        self.stdout.write(f"key id: {keys.key_id(raw)}")
        self.stdout.write(f"base64: {keys.public_key_b64()}")
        self.stdout.write(keys.public_key_pem())
