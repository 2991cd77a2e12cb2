import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Project(models.Model):
    """An estimate's workspace: its drawings, documents and people."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(max_length=2000, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when the project is put aside (its last owner's account was
    # deleted); the purge job erases it after KREO_PURGE_AFTER_DAYS.
    deleted_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["name", "created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:detail", args=[self.pk])


class Membership(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__email"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"], name="projects_membership_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class Invitation(models.Model):
    """An owner's invitation of an e-mail address to a project, with a role.

    Only the SHA-256 digest of the link's secret is kept: the secret is made
    when the mail is sent and exists nowhere else. Nobody joins until the
    person signed in with that address accepts.
    """

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="invitations"
    )
    email = models.EmailField(max_length=254)  # normalised: stripped, lower case
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    token_digest = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["project", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "email"],
                condition=models.Q(accepted_at=None, revoked_at=None),
                name="projects_invitation_one_pending",
            )
        ]

    def __str__(self) -> str:
        return f"invitation of {self.email} to {self.project} as {self.role}"

    @property
    def pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


def _file_key(instance: "ProjectFile", filename: str) -> str:
    # The storage key never contains user input: the display name lives in
    # the row, the key is random.
    return f"projects/{instance.project_id}/{uuid.uuid4().hex}"


class ProjectFile(models.Model):
    """A drawing or document of an estimate, stored outside the database."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    blob = models.FileField(upload_to=_file_key, max_length=300)
    kind = models.CharField(max_length=16)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)
    # "" for files stored before encryption; else the format its object was
    # written in (projects.storage FORMAT, or LEGACY_FORMAT for KREOF1).
    encryption = models.CharField(max_length=16, blank=True, default="")
    # A small WebP of an image, sealed like the file (projects.thumbnails);
    # "" while none was made, and for every other file.
    thumbnail = models.FileField(
        upload_to=_file_key, max_length=300, blank=True, default=""
    )

    class Meta:
        ordering = ["name", "uploaded_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:file-download", args=[self.project_id, self.pk])


class ProjectKey(models.Model):
    """A project's data key, only ever stored wrapped by a key-encryption key."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="key"
    )
    kek_id = models.CharField(max_length=64, db_index=True)
    wrapped = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"data key of {self.project_id} under {self.kek_id}"


class ErasureMethod(models.TextChoices):
    CRYPTO_ERASE = "crypto-erase", "Cryptographic erase, then deletion"
    DELETE = "delete", "Deletion of every object version"


class ErasureCertificate(models.Model):
    """What was erased, when, at whose request, how, and which objects went."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject_type = models.CharField(max_length=16)  # project, file, account
    subject_id = models.CharField(max_length=64, db_index=True)
    subject_label = models.CharField(max_length=300)
    method = models.CharField(max_length=16, choices=ErasureMethod.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_by_label = models.CharField(max_length=254, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    key_destroyed = models.CharField(max_length=128, blank=True)
    objects_planned = models.JSONField(default=list)
    objects_removed = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"erasure of {self.subject_type} {self.subject_label}"
