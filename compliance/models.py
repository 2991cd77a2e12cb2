"""Results of the control checks: one row per control per run.

The controls themselves live in code (``compliance/catalogue.py``), not in
the database: a control's definition is reviewed like any other change.
"""

from django.conf import settings
from django.db import models


class CheckStatus(models.TextChoices):
    PASS = "pass", "Pass"
    WARN = "warn", "Warn"
    FAIL = "fail", "Fail"
    NOT_APPLICABLE = "not_applicable", "Not applicable"
    # No evidence could be gathered (an advisory source out of reach): never
    # counted as a pass.
    NOT_CHECKED = "not_checked", "Not checked"
    # The check itself raised; its message is the summary.
    ERROR = "error", "Error"


class CheckRun(models.Model):
    """One run of every control's check (daily from beat, or on demand)."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Check run {self.started_at:%Y-%m-%d %H:%M} ({self.trigger})"


class ControlResult(models.Model):
    run = models.ForeignKey(CheckRun, on_delete=models.PROTECT, related_name="results")
    control_id = models.CharField(max_length=64, db_index=True)
    checked_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=16, choices=CheckStatus.choices)
    summary = models.CharField(max_length=512)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-checked_at", "control_id"]
        indexes = [models.Index(fields=["control_id", "-checked_at"])]

    def __str__(self) -> str:
        return f"{self.control_id}: {self.status}"
