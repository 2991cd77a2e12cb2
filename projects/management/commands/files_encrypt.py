"""Encrypt project files stored before encryption existed (resumable)."""

from django.core.management.base import BaseCommand

from audit.services import audit_record
from projects.models import ProjectFile
from projects.storage import legacy_encrypt


class Command(BaseCommand):
    help = "Encrypt every project file still stored in plaintext."

    def handle(self, *args, **options):
        pending = ProjectFile.objects.filter(encryption="").select_related("project")
        total, done = pending.count(), 0
        for item in pending.iterator(chunk_size=200):
            legacy_encrypt(item)
            done += 1
            if done % 100 == 0 or done == total:
                self.stdout.write(f"encrypted {done}/{total}")
        audit_record(event_type="files.encrypt_legacy", details={"files": done})
        self.stdout.write(self.style.SUCCESS(f"{done} plaintext files encrypted"))
