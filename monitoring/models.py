"""Alerts raised by the detection rules, and where the rules have read up to."""

from django.conf import settings
from django.db import models


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class SubjectKind(models.TextChoices):
    IP = "ip", "IP address"
    USER = "user", "User"
    PROJECT = "project", "Project"
    SYSTEM = "system", "System"


class AlertState(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


ACTIVE_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class Alert(models.Model):
    """One anomaly a rule saw about one subject, with its repeats folded in.

    While an alert is active (open or acknowledged), a repeat of its rule about
    its subject within ``MONITORING_ALERT_WINDOW_SECONDS`` of its last sighting
    adds to ``count`` and ``last_seen`` instead of raising another alert (and
    notifying again); the database holds at most one active alert per rule
    and subject.
    """

    rule = models.CharField(max_length=64, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    subject_kind = models.CharField(max_length=16, choices=SubjectKind.choices)
    subject = models.CharField(max_length=254, blank=True)
    summary = models.CharField(max_length=512)
    details = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    first_event_id = models.BigIntegerField(null=True, blank=True)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=16, choices=AlertState.choices, default=AlertState.OPEN
    )
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    acknowledged_label = models.CharField(max_length=254, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_reason = models.TextField(blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_label = models.CharField(max_length=254, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["state", "rule"])]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject_kind", "subject"],
                condition=models.Q(state__in=["open", "acknowledged"]),
                name="monitoring_alert_one_active_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.subject_kind}:{self.subject} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


class RuleCursor(models.Model):
    """The id of the last audit event the rules have read (one row)."""

    name = models.CharField(max_length=32, unique=True, default="rules")
    last_event_id = models.BigIntegerField(default=0)
    events_read = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rules read up to event {self.last_event_id}"


class IPListKind(models.TextChoices):
    DENY = "deny", "Deny (every page)"
    ADMIN_ALLOW = "admin_allow", "Allow for /admin/"


class IPRuleSource(models.TextChoices):
    STAFF = "staff", "Staff"
    RULE = "rule", "Detection rule"


class IPRule(models.Model):
    """An entry of the IP deny list or of the ``/admin/`` allow list.

    ``network`` is a normalised CIDR range (an address is a /32 or /128).
    While any allow entry is in force, ``/admin/`` answers only addresses
    inside one; a deny entry refuses every page. An entry with
    ``expires_at`` stops applying then by itself (``monitoring.ipfilter``
    compares it with the clock on every request).
    """

    kind = models.CharField(max_length=16, choices=IPListKind.choices)
    network = models.CharField(
        max_length=64,
        help_text="An IPv4 or IPv6 address or CIDR range, e.g. 203.0.113.0/24.",
    )
    reason = models.CharField(max_length=500)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty: until removed."
    )
    source = models.CharField(
        max_length=16, choices=IPRuleSource.choices, default=IPRuleSource.STAFF
    )
    alert = models.ForeignKey(
        Alert,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="ip_rules",
        help_text="The alert whose rule made this block.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_label = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "expires_at"])]
        verbose_name = "IP filter entry"
        verbose_name_plural = "IP filter entries"

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.network}"

    def in_force(self, now=None) -> bool:
        from django.utils import timezone

        return self.expires_at is None or self.expires_at > (now or timezone.now())
