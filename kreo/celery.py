"""The Celery application and the one place the default schedule is defined.

The schedule lives in the database (django-celery-beat) so that staff can edit
it in the admin; ``DEFAULT_SCHEDULE`` only seeds entries that do not exist yet
(see ``kreo.schedule.sync_default_schedule``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kreo.settings.local")

app = Celery("kreo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _make_broker_folders(sender, **kwargs) -> None:
    """The filesystem broker of the embedded default needs its folders to exist."""
    options = sender.conf.broker_transport_options or {}
    for key in (
        "data_folder_in",
        "data_folder_out",
        "processed_folder",
        "control_folder",
    ):
        if options.get(key):
            os.makedirs(options[key], mode=0o700, exist_ok=True)


# name -> (task, interval in seconds or a setting name holding it)
DEFAULT_SCHEDULE = {
    "kreo heartbeat": ("kreo.tasks.heartbeat", "KREO_HEARTBEAT_SECONDS"),
    "audit seal": ("audit.tasks.seal", "AUDIT_SEAL_INTERVAL_SECONDS"),
    "audit anchor": ("audit.tasks.anchor", "AUDIT_ANCHOR_SECONDS"),
    "audit verify hot": ("audit.tasks.verify_hot", "AUDIT_VERIFY_HOT_SECONDS"),
    "audit verify full": ("audit.tasks.verify_full", "AUDIT_VERIFY_FULL_SECONDS"),
    "audit archive": ("audit.tasks.archive", "AUDIT_ARCHIVE_INTERVAL_SECONDS"),
    "audit review": ("audit.tasks.review", "AUDIT_REVIEW_INTERVAL_SECONDS"),
    "audit spool drain": ("audit.tasks.spool_drain", "AUDIT_SPOOL_DRAIN_SECONDS"),
    "backup daily": ("backups.tasks.backup_scheduled", "BACKUP_INTERVAL_SECONDS"),
    "backup retention": ("backups.tasks.backup_prune", "BACKUP_INTERVAL_SECONDS"),
    "backup offsite retry": (
        "backups.tasks.backup_offsite_retry",
        "BACKUP_OFFSITE_RETRY_SECONDS",
    ),
    "backup stale sweep": ("backups.tasks.backup_sweep", "KREO_TASK_SWEEP_SECONDS"),
    "backup restore drill": ("backups.tasks.backup_drill", "BACKUP_DRILL_SECONDS"),
    "privacy purge": ("privacy.tasks.purge", "KREO_PURGE_INTERVAL_SECONDS"),
    "status probe": ("status.tasks.probe", "STATUS_PROBE_SECONDS"),
    "status publish": ("status.tasks.publish", "STATUS_PUBLISH_SECONDS"),
    "monitoring rules": ("monitoring.tasks.rules_run", "MONITORING_RULES_SECONDS"),
    "monitoring ip block summary": (
        "monitoring.tasks.ip_block_summary",
        "MONITORING_IPFILTER_SUMMARY_SECONDS",
    ),
    "compliance checks": ("compliance.tasks.checks_run", 24 * 3600),
}
