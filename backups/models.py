from django.conf import settings
from django.db import models


class SetState(models.TextChoices):
    RUNNING = "running", "Running"
    GOOD = "good", "Good"
    # Copies 1 and 2 written, copy 3 not (S3 down, or no bucket configured):
    # the 3-2-1 rule is not met, so the set counts as no good backup.
    INCOMPLETE = "incomplete", "Incomplete (3-2-1 not met: offsite copy missing)"
    FAILED = "failed", "Failed"
    PRUNED = "pruned", "Pruned"


class CopyState(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (not configured)"
    PRUNED = "pruned", "Pruned"
    LOCKED = "locked", "Pruned locally; offsite locked until expiry"


class Trigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"


class BackupSet(models.Model):
    """One 3-2-1 backup of the database and the project files.

    A set is ``good`` only once all three copies are written and its manifest
    sealed; without copy 3 it is ``incomplete`` until the retry uploads it. A
    ``running`` set carries a heartbeat; one whose heartbeat is older than
    ``KREO_TASK_STALE_SECONDS`` (its worker died) is failed, cleaned up and
    retried by the minute sweep (``backups.tasks.backup_sweep``).
    """

    created_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=SetState.choices, default=SetState.RUNNING
    )
    trigger = models.CharField(
        max_length=16, choices=Trigger.choices, default=Trigger.MANUAL
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    engine = models.CharField(max_length=16, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verify_ok = models.BooleanField(null=True, blank=True)
    verify_report = models.JSONField(default=list, blank=True)
    # Stamped every KREO_TASK_HEARTBEAT_SECONDS by the process writing the set.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The Celery task that took the set: a redelivered task finds it and does
    # not take a second one.
    task_id = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"backup {self.pk} ({self.state})"

    def copy_state(self, number: int) -> str:
        for copy in self.copies.all():
            if copy.number == number:
                return copy.state
        return ""


class BackupCopy(models.Model):
    """One of the three copies of a set: where it is and whether it is whole."""

    backup_set = models.ForeignKey(
        BackupSet, on_delete=models.CASCADE, related_name="copies"
    )
    number = models.PositiveSmallIntegerField()
    state = models.CharField(
        max_length=16, choices=CopyState.choices, default=CopyState.PENDING
    )
    location = models.CharField(max_length=500, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    # Copy 3: the S3 version id of every object written ({name: version id}),
    # read back by version so a later delete marker or overwrite cannot hide
    # or replace what was written.
    versions = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["backup_set", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["backup_set", "number"], name="backups_copy_unique"
            )
        ]

    def __str__(self) -> str:
        return f"copy {self.number} of set {self.backup_set_id}: {self.state}"


class RestoreDrill(models.Model):
    """A restore of a set into a scratch database, compared with its manifest."""

    backup_set = models.ForeignKey(
        BackupSet, null=True, on_delete=models.SET_NULL, related_name="drills"
    )
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    copy_number = models.PositiveSmallIntegerField(default=1)
    mismatches = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        verdict = {True: "passed", False: "FAILED", None: "running"}[self.ok]
        return f"drill {self.pk} of set {self.backup_set_id}: {verdict}"
