"""Events written late from the outage spool: the flag and their spool id."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('audit', '0003_append_only_guards'),
    ]

    operations = [
        migrations.AddField(
            model_name='auditevent',
            name='spool_id',
            field=models.UUIDField(blank=True, editable=False, null=True, unique=True),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='spooled',
            field=models.BooleanField(db_default=False, default=False, editable=False),
        ),
    ]
