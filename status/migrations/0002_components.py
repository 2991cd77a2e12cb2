"""The six components of the page (status.probes.COMPONENTS, as of this migration)."""

import secrets

from django.db import migrations

COMPONENTS = {
    "web": ("Web app", "Pages of the application", 1),
    "api": ("API", "The REST API under /api/", 2),
    "signin": ("Sign-in", "Password and single sign-on", 3),
    "storage": ("File storage", "Project files", 4),
    "backups": ("Backups", "Scheduled 3-2-1 backups", 5),
    "email": ("Email", "Outgoing mail", 6),
}


def seed(apps, schema_editor):
    Component = apps.get_model("status", "Component")
    for slug, (name, description, position) in COMPONENTS.items():
        Component.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "position": position,
                "public_id": secrets.token_hex(6),
            },
        )


class Migration(migrations.Migration):
    dependencies = [("status", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
