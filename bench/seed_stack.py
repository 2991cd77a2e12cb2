"""Seed a benchmark database through the project's own services.

Run by bench_stack.py as ``python -m bench.seed_stack`` with the benchmark's
settings module and KREO_VAR_DIR set; the account's email and password come
from BENCH_EMAIL / BENCH_PASSWORD. Prints what it made as one JSON object.
"""

import json
import os
import sys

import django

PROJECTS = 20
FILE_BYTES = 1024 * 1024


def pdf_of_size(size: int) -> bytes:
    """A PDF (as the upload checks sniff it) padded with a comment to ``size``."""
    head = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    tail = b"\ntrailer\n<<>>\n%%EOF\n"
    padding = size - len(head) - len(tail) - 2
    return head + b"% " + b"x" * padding + tail


def main() -> int:
    django.setup()
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.utils import timezone

    from accounts.models import User
    from projects import services

    user = User.objects.create_user(
        email=os.environ["BENCH_EMAIL"], password=os.environ["BENCH_PASSWORD"]
    )
    if hasattr(user, "email_verified_at"):
        # A verified account, as every real user past sign-up is.
        user.email_verified_at = timezone.now()
        user.save(update_fields=["email_verified_at"])
    projects = [
        services.project_create(actor=user, name=f"Bench estimate {n:02d}")
        for n in range(1, PROJECTS + 1)
    ]
    upload = SimpleUploadedFile(
        "takeoff.pdf", pdf_of_size(FILE_BYTES), content_type="application/pdf"
    )
    item = services.project_file_upload(actor=user, project=projects[0], upload=upload)
    json.dump(
        {
            "projects": [p.name for p in projects],
            "download": f"/projects/{projects[0].pk}/files/{item.pk}/download/",
            "file_bytes": item.size,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
