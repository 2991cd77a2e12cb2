from django.apps import AppConfig
from django.db.models.signals import post_migrate


class KreoConfig(AppConfig):
    name = "kreo"
    verbose_name = "Kreo platform"

    def ready(self) -> None:
        from kreo import checks  # noqa: F401 - registers the cache and key checks

        post_migrate.connect(_seed_schedule, sender=self)


def _seed_schedule(sender, **kwargs) -> None:
    from kreo.schedule import sync_default_schedule

    sync_default_schedule()
