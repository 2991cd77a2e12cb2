"""Components and their samples, incidents, maintenance, subscribers.

State names and values are Atlassian Statuspage's (v2 API), so widgets and
monitors that read Statuspage read this page unchanged.
"""

import secrets

from django.db import models
from django.urls import reverse
from django.utils import timezone


class ComponentState(models.TextChoices):
    OPERATIONAL = "operational", "Operational"
    DEGRADED = "degraded_performance", "Degraded performance"
    PARTIAL = "partial_outage", "Partial outage"
    MAJOR = "major_outage", "Major outage"
    MAINTENANCE = "under_maintenance", "Under maintenance"


# Worst last: a day's bar takes the colour of its worst state.
SEVERITY = {
    ComponentState.OPERATIONAL: 0,
    ComponentState.MAINTENANCE: 1,
    ComponentState.DEGRADED: 2,
    ComponentState.PARTIAL: 3,
    ComponentState.MAJOR: 4,
}


class ProbeResult(models.TextChoices):
    OK = "ok", "Answered in time"
    SLOW = "slow", "Answered slowly"
    FAIL = "fail", "Failed or timed out"


class Impact(models.TextChoices):
    NONE = "none", "None"
    MINOR = "minor", "Minor"
    MAJOR = "major", "Major"
    CRITICAL = "critical", "Critical"


class IncidentStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"


def _public_id() -> str:
    return secrets.token_hex(6)


class Component(models.Model):
    """A part of the service as customers see it; its state comes from probes."""

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    public_id = models.CharField(max_length=12, unique=True, default=_public_id)
    state = models.CharField(
        max_length=24, choices=ComponentState, default=ComponentState.OPERATIONAL
    )
    state_since = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class Sample(models.Model):
    """One probe of one component, and the component's state after it."""

    component = models.ForeignKey(
        Component, on_delete=models.CASCADE, related_name="samples"
    )
    at = models.DateTimeField(default=timezone.now)
    result = models.CharField(max_length=8, choices=ProbeResult)
    state = models.CharField(max_length=24, choices=ComponentState)
    latency_ms = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        indexes = [models.Index(fields=["component", "at"])]

    def __str__(self) -> str:
        return f"{self.component} {self.result} at {self.at:%Y-%m-%d %H:%M}"


class DayUptime(models.Model):
    """A component's probes on one UTC day, maintenance left out: the page
    reads 90 of these instead of aggregating 130,000 samples each time."""

    component = models.ForeignKey(
        Component, on_delete=models.CASCADE, related_name="days"
    )
    day = models.DateField()
    total = models.PositiveIntegerField(default=0)
    up = models.PositiveIntegerField(default=0)
    worst = models.CharField(max_length=24, choices=ComponentState, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["component", "day"], name="status_dayuptime_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.component} on {self.day}"


class Incident(models.Model):
    """Written by staff: what happened, its impact, its updates."""

    public_id = models.CharField(max_length=12, unique=True, default=_public_id)
    title = models.CharField(max_length=200)
    impact = models.CharField(max_length=12, choices=Impact, default=Impact.MINOR)
    status = models.CharField(
        max_length=16, choices=IncidentStatus, default=IncidentStatus.INVESTIGATING
    )
    components = models.ManyToManyField(Component, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("status:incident", kwargs={"public_id": self.public_id})


class IncidentUpdate(models.Model):
    """One message on an incident; subscribers hear of each one once."""

    public_id = models.CharField(max_length=12, unique=True, default=_public_id)
    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="updates"
    )
    status = models.CharField(max_length=16, choices=IncidentStatus)
    body = models.TextField(help_text="Plain text; HTML is shown as typed.")
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_status_display()}: {self.body[:40]}"


class Maintenance(models.Model):
    """A scheduled window: its time does not count against uptime."""

    public_id = models.CharField(max_length=12, unique=True, default=_public_id)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    components = models.ManyToManyField(Component, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at"]
        verbose_name_plural = "maintenance windows"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="status_maintenance_ends_after_start",
            )
        ]

    def __str__(self) -> str:
        return self.title

    def status_at(self, now) -> str:
        if now < self.starts_at:
            return "scheduled"
        if now < self.ends_at:
            return "in_progress"
        return "completed"


class SubscriberKind(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class Subscriber(models.Model):
    """An e-mail address or a webhook; active once confirmed (double opt-in)."""

    kind = models.CharField(max_length=8, choices=SubscriberKind)
    email = models.EmailField(max_length=254)
    url = models.URLField(max_length=500, blank=True)
    secret = models.CharField(max_length=64, default=secrets.token_hex, editable=False)
    components = models.ManyToManyField(
        Component, blank=True, help_text="None chosen: every component."
    )
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "email", "url"], name="status_subscriber_unique"
            )
        ]

    def __str__(self) -> str:
        return self.url or self.email


class Delivery(models.Model):
    """One notification of one update to one subscriber: never twice."""

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE)
    update = models.ForeignKey(IncidentUpdate, on_delete=models.CASCADE)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "update"], name="status_delivery_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.update_id} to {self.subscriber_id}"
