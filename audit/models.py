"""Audit events, the seals that chain them, archives, and log reviews."""

from auditlog.models import LogEntry
from django.conf import settings
from django.db import models


class Outcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"
    ERROR = "error", "Error"


class AuditEvent(models.Model):
    """One thing that happened, with who, from where, to what, and how it ended.

    Rows are append-only: nothing in the application updates them, and on
    PostgreSQL a trigger refuses UPDATE and TRUNCATE, and DELETE of any row
    that a verified archive does not hold (see ``audit/sql.py``).
    ``content_hash`` is computed from every other column except ``id`` at
    insert; seals bind each id to its hash (``audit/chain.py``).
    """

    occurred_at = models.DateTimeField(db_index=True)
    event_type = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # No database constraint and no cascade: the row outlives the user, and
    # deleting a user must not UPDATE audit rows (SET_NULL would).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
    )
    actor_label = models.CharField(max_length=254, blank=True)
    session_hash = models.CharField(max_length=64, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    source_port = models.PositiveIntegerField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    device_id = models.CharField(max_length=64, blank=True)
    server_host = models.CharField(max_length=128, blank=True)
    method = models.CharField(max_length=8, blank=True)
    path = models.CharField(max_length=512, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    release = models.CharField(max_length=64, blank=True)
    commit = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_description = models.CharField(max_length=512, blank=True)
    correlation_id = models.CharField(max_length=64, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64, editable=False, default="")
    # Written late from the outage spool (audit/spool.py), with its original
    # occurred_at; spool_id makes a repeated drain write it once only.
    spooled = models.BooleanField(default=False, db_default=False, editable=False)
    spool_id = models.UUIDField(null=True, blank=True, editable=False)
    # Keyed events (audit/chain.py): a unique id, so an exact replay of a
    # row is refused; and HMAC-SHA256 of the canonical form under the
    # AUDIT_EVENT_KEY ring's key ``mac_key_id``, a key the database never
    # holds. Events written before keying have neither ("legacy").
    event_uid = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    mac_key_id = models.CharField(
        max_length=16, blank=True, default="", db_default="", editable=False
    )
    mac = models.CharField(
        max_length=64, blank=True, default="", db_default="", editable=False
    )

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["actor", "occurred_at"]),
        ]
        permissions = [("export_auditevent", "Can export audit events")]
        constraints = [
            # Partial: the ordinary insert (no spool id) maintains no index.
            models.UniqueConstraint(
                fields=["spool_id"],
                condition=models.Q(spool_id__isnull=False),
                name="audit_event_spool_id_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.event_type} {self.outcome}"


class AuditSeal(models.Model):
    """A signed link of the hash chain over the events with ids in its range.

    ``digests`` lists (id, content hash) of every event in
    ``first_id..last_id`` in id order (8-byte big-endian id + 32-byte hash);
    ``head`` = SHA-256(previous head + SHA-256(digests)); ``signature`` is
    Ed25519 over the canonical seal text (``audit/chain.py``).

    ``keyed``: events up to this seal are keyed (from the first keyed event
    on, an event without a MAC is rejected). ``rejected`` lists the ids in
    the range whose MAC failed when sealed: their digests are in the chain
    (nothing is dropped) but they are never sealed as genuine.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    count = models.PositiveIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField(db_index=True)
    digests = models.BinaryField()
    prev_head = models.CharField(max_length=64)
    head = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=128)
    sealed_at = models.DateTimeField()
    keyed = models.BooleanField(default=False, db_default=False)
    rejected = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"seal {self.seq}: events {self.first_id}..{self.last_id}"


class ArchiveState(models.TextChoices):
    PENDING = "pending", "Pending upload"
    UPLOADED = "uploaded", "Uploaded"
    VERIFIED = "verified", "Read back and verified"
    PURGED = "purged", "Removed from the hot store"


class AuditArchive(models.Model):
    """One encrypted archive object in S3 holding whole seals of events."""

    first_seal = models.PositiveBigIntegerField()
    last_seal = models.PositiveBigIntegerField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField(unique=True)
    count = models.PositiveIntegerField(default=0)
    first_at = models.DateTimeField(null=True, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=512)
    manifest_key = models.CharField(max_length=512)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    state = models.CharField(
        max_length=16, choices=ArchiveState.choices, default=ArchiveState.PENDING
    )
    object_lock = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["first_id"]

    def __str__(self) -> str:
        return f"archive {self.first_id}..{self.last_id} ({self.state})"


class AuditReview(models.Model):
    """A periodic review of notable events, signed off by an auditor."""

    period_start = models.DateTimeField()
    period_end = models.DateTimeField(unique=True)
    notable_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    signed_off_label = models.CharField(max_length=254, blank=True)
    signed_off_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    # Why the signer signed a period holding their own notable events
    # (blank when another auditor signed, as it should be).
    own_events_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-period_end"]

    def __str__(self) -> str:
        return f"review {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"

    @property
    def signed_off(self) -> bool:
        return self.signed_off_at is not None


class FieldChange(LogEntry):
    """django-auditlog's field-level changes, shown in the admin beside the
    audit trail under a name that says what they are (not "Log entries")."""

    class Meta:
        proxy = True
        verbose_name = "field change"
        verbose_name_plural = "field changes"
