from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring: alerts, limits, filtering, health"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from monitoring import metrics

        # Counted from Django's own sign-in signals: read only, nothing written.
        user_logged_in.connect(metrics.on_logged_in, dispatch_uid="monitoring.in")
        user_login_failed.connect(
            metrics.on_login_failed, dispatch_uid="monitoring.failed"
        )
