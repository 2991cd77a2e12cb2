from django.apps import AppConfig


class StatusConfig(AppConfig):
    name = "status"
    verbose_name = "Status page: components, incidents, subscriptions"

    def ready(self) -> None:
        from django.core.checks import register

        from status.checks import status_bucket_check

        register(status_bucket_check)
