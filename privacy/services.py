"""Data export, account deletion and the purge job.

Export: a user asks; a Celery task builds a zip of their account data and
every project they belong to (files decrypted from storage), seals it
(``KREOSEAL``, context ``kreo-export/<export id>``, docs/FORMATS.md §5) under
a key derived from a fresh random link token, and mails the link. Only the
token's hash is kept: the stored archive is unreadable without the link.
Archives written before KREOSEAL (``KREOF1``) still open until they expire;
they cannot be resealed, since their key exists only in the mailed link.
The link works once, for the signed-in owner, until it expires
(``KREO_EXPORT_TTL_SECONDS``).

Account deletion (by its owner after re-entering the password or, for an
account linked to single sign-on, after signing in again at the identity
provider; or by staff) is ``accounts.deletion.user_delete``, with its
tombstone in the erasure ledger; ``account_delete`` here adds the removal of
the account's export archives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.deletion import (  # noqa: F401 - texts the pages show, re-exported
    DELETE_REFUSED,
    OWNED_PROJECTS_RULE,
    REAUTH_REQUIRED,
    WRONG_PASSWORD,
    user_delete,
)
from audit.models import Outcome
from audit.services import audit_record
from kreo.worker import exclusive
from privacy.models import DataExport, ExportState
from projects import crypto, erasure
from projects.keys import LedgerError, ledger_settle
from projects.models import Membership, Project
from projects.storage import blob_chunks, blob_delete, raw_chunks

logger = logging.getLogger(__name__)

EXPORT_PENDING = "An export is already being prepared; you will get an e-mail."
EXPORT_LINK_INVALID = "This download link is not valid."
EXPORT_LINK_USED = "This download link was already used. Request a new export."
EXPORT_LINK_EXPIRED = "This download link has expired. Request a new export."
EXPORT_NOT_READY = "This export is not ready yet."
CONFIRM_MISMATCH = "Type DELETE to confirm."
PURGE_LEFT = (
    "{left} put-aside project(s) not erased: the erasure ledger refused; "
    "left for the next run."
)
PURGE_ACCOUNTS_LEFT = (
    "{left} never-verified account(s) not deleted: the erasure ledger "
    "refused; left for the next run."
)
PURGE_BUSY = "purge: another run holds the lock; this one did nothing."
PURGE_NOT_SETTLED = "The erasure ledger was not settled: left for the next run."


def _ttl() -> timedelta:
    return timedelta(seconds=getattr(settings, "KREO_EXPORT_TTL_SECONDS", 86400))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def export_context(export_id) -> bytes:
    return f"kreo-export/{export_id}".encode("ascii")


def _archive_key(token: str, export_id) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=str(export_id).encode(),
        info=b"kreo-data-export",
    ).derive(token.encode())


# Export --------------------------------------------------------------------------


@transaction.atomic
def export_request(*, actor, request=None) -> DataExport:
    """Queue an export of ``actor``'s data; one pending export at a time."""
    if DataExport.objects.filter(user=actor, state=ExportState.PENDING).exists():
        raise ValidationError(EXPORT_PENDING, code="pending")
    export = DataExport.objects.create(
        user=actor,
        site_url=request.build_absolute_uri("/").rstrip("/") if request else "",
    )
    audit_record(
        event_type="privacy.export.request",
        actor=actor,
        request=request,
        target=export,
    )
    from privacy import tasks

    transaction.on_commit(lambda: tasks.export_build.delay(str(export.pk)))
    return export


def _account_document(user) -> dict:
    memberships = Membership.objects.filter(user=user).select_related("project")
    return {
        "email": user.email,
        "full_name": getattr(user, "full_name", ""),
        "date_joined": user.date_joined.isoformat(),
        "last_login": user.last_login.isoformat() if user.last_login else None,
        "email_verified_at": (
            user.email_verified_at.isoformat()
            if getattr(user, "email_verified_at", None)
            else None
        ),
        "projects": [
            {
                "id": str(m.project_id),
                "name": m.project.name,
                "role": m.role,
                "added_at": m.added_at.isoformat(),
            }
            for m in memberships
            if m.project.deleted_at is None
        ],
    }


def _write_zip(user, handle) -> None:
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        account = json.dumps(_account_document(user), indent=2)
        archive.writestr("account.json", account)
        projects = Project.objects.filter(memberships__user=user, deleted_at=None)
        for project in projects.prefetch_related("files"):
            folder = f"projects/{project.pk}"
            about = {
                "id": str(project.pk),
                "name": project.name,
                "description": project.description,
                "created_at": project.created_at.isoformat(),
                "files": [
                    {"id": str(f.pk), "name": f.name, "sha256": f.sha256}
                    for f in project.files.all()
                ],
            }
            archive.writestr(f"{folder}/project.json", json.dumps(about, indent=2))
            for item in project.files.all():
                with archive.open(f"{folder}/files/{item.pk}-{item.name}", "w") as out:
                    for chunk in blob_chunks(item):
                        out.write(chunk)


def export_build(*, export_id) -> DataExport:
    """Build, encrypt and store the archive, then mail the one-time link."""
    export = DataExport.objects.select_related("user").get(pk=export_id)
    if export.state != ExportState.PENDING:
        return export
    token = secrets.token_urlsafe(32)
    try:
        with tempfile.TemporaryFile() as handle:
            _write_zip(export.user, handle)
            export.size = handle.tell()
            handle.seek(0)
            plain = iter(lambda: handle.read(crypto.CHUNK), b"")
            sealed = crypto.encrypt_chunks(
                _archive_key(token, export.pk),
                export.pk,
                plain,
                context=export_context(export.pk),
            )
            export.blob = default_storage.save(
                f"exports/{export.pk}", File(crypto.reader(sealed))
            )
    except Exception as exc:
        export.state, export.error = ExportState.FAILED, str(exc)[:300]
        export.save(update_fields=["state", "error"])
        audit_record(
            event_type="privacy.export.build",
            actor=export.user,
            target=export,
            outcome=Outcome.ERROR,
            error_description=export.error,
        )
        raise
    export.token_hash = _token_hash(token)
    export.state = ExportState.READY
    export.ready_at = timezone.now()
    export.expires_at = export.ready_at + _ttl()
    export.save()
    audit_record(
        event_type="privacy.export.build",
        actor=export.user,
        target=export,
        details={"size": export.size},
    )
    link = export.site_url + reverse("privacy:export-download", args=[export.pk, token])
    send_mail(
        "Your Kreo data export is ready",
        f"Download it once, before {export.expires_at:%Y-%m-%d %H:%M} UTC, "
        f"while signed in:\n\n{link}\n",
        None,
        [export.user.email],
    )
    return export


def _link_problem(export, token: str) -> tuple[str, str] | None:
    if export is None or not export.token_hash:
        return EXPORT_LINK_INVALID, "invalid"
    if not hmac.compare_digest(export.token_hash, _token_hash(token)):
        return EXPORT_LINK_INVALID, "invalid"
    if export.state == ExportState.DOWNLOADED:
        return EXPORT_LINK_USED, "used"
    if export.state != ExportState.READY or export.expires_at <= timezone.now():
        return EXPORT_LINK_EXPIRED, "expired"
    return None


def export_open(*, actor, export_id, token: str, request=None):
    """Spend the link and return ``(export, plaintext chunks)``.

    The link is marked used before the first byte is sent: a second request
    with it is refused even while the first is still downloading.
    """

    with transaction.atomic():
        export = (
            DataExport.objects.select_for_update()
            .filter(pk=export_id, user=actor)
            .first()
        )
        problem = _link_problem(export, token)
        if problem is None:
            export.state = ExportState.DOWNLOADED
            export.downloaded_at = timezone.now()
            export.save(update_fields=["state", "downloaded_at"])
            audit_record(
                event_type="privacy.export.download",
                actor=actor,
                request=request,
                target=export,
                details={"size": export.size},
            )
    if problem is not None:
        message, code = problem
        audit_record(
            event_type="privacy.export.download",
            actor=actor,
            request=request,
            outcome=Outcome.DENIED,
            target_type="privacy.dataexport",
            target_id=str(export_id),
            error_code=code,
            error_description=message,
        )
        raise PermissionDenied(message)
    blob = _Blob(export.blob)
    chunks = crypto.decrypt_chunks(
        _archive_key(token, export.pk),
        export.pk,
        raw_chunks(blob),
        context=export_context(export.pk),
        name=f"export {export.pk}",
    )
    return export, chunks


class _Blob:
    def __init__(self, name: str):
        self.name, self.storage = name, default_storage


def export_discard(export: DataExport, state: str = ExportState.EXPIRED) -> None:
    blob_delete(default_storage, export.blob)
    export.blob, export.state = "", state
    export.save(update_fields=["blob", "state"])


# Account deletion ----------------------------------------------------------------


def account_delete(
    *,
    actor,
    user,
    request=None,
    password: str | None = None,
    reauthenticated: bool = False,
    staff: bool = False,
    reason: str = "",
) -> dict:
    """Delete ``user``'s account (``accounts.deletion.user_delete``: its rule,
    its re-authentication, its tombstone), then the archives of its exports.

    ``LedgerError`` (``DELETE_REFUSED``) when the erasure ledger cannot be
    written: nothing deleted.
    """
    blobs = list(
        DataExport.objects.filter(user=user)
        .exclude(blob="")
        .values_list("blob", flat=True)
    )
    summary = user_delete(
        actor=actor,
        user=user,
        request=request,
        password=password,
        reauthenticated=reauthenticated,
        staff=staff,
        reason=reason,
    )
    for blob in blobs:
        try:
            blob_delete(default_storage, blob)
        except Exception:  # the account is gone; the archive is unreadable
            # without its link, whose hash went with the account's rows.
            logger.exception("account deletion: export archive %s left", blob)
    return summary


# Purge -----------------------------------------------------------------------------


def purge_run(*, now=None) -> dict:
    """Run the purge once across every worker and pod sharing the database
    (an advisory lock on PostgreSQL, kreo.worker.exclusive); a run that finds
    another one going does nothing and says so."""
    with exclusive("purge", Path(settings.VAR_DIR) / "locks") as got:
        if not got:
            logger.warning(PURGE_BUSY)
            return {"busy": True}
        return _purge_run(now=now)


def _purge_run(*, now=None) -> dict:
    """Erase what has been put aside for longer than KREO_PURGE_AFTER_DAYS.

    Soft-deleted projects are erased (certificate, ledger); accounts that
    never verified their e-mail nor signed in are deleted; exports past their
    expiry lose their archive; rolled-back erasures leave the ledger.

    A project the erasure ledger refuses is skipped (nothing of it erased,
    the refusal audited) and stays put aside for the next run, as does
    settling; the run goes on and its own event says what was left.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.KREO_PURGE_AFTER_DAYS)
    projects, left = 0, []
    for project in Project.objects.filter(deleted_at__lte=cutoff):
        try:
            erasure.project_erase(
                actor=None, project=project, reason="purge", via="purge"
            )
        except LedgerError as exc:
            # Refused before anything was erased, and audited: the project
            # stays put aside for the next run; the others go on.
            logger.warning(
                "purge: project %s left for the next run: %s", project.pk, exc
            )
            left.append(str(project.pk))
            continue
        projects += 1
    accounts, accounts_left = 0, []
    stale = get_user_model().objects.filter(
        email_verified_at__isnull=True,
        last_login__isnull=True,
        date_joined__lte=cutoff,
        is_staff=False,
    )
    for user in stale:
        try:
            account_delete(actor=None, user=user, staff=True, reason="never verified")
        except LedgerError as exc:
            # Refused before anything was deleted, and audited: next run.
            logger.warning("purge: account %s left for the next run: %s", user.pk, exc)
            accounts_left.append(user.pk)
            continue
        accounts += 1
    exports = 0
    for export in DataExport.objects.filter(expires_at__lte=now).exclude(blob=""):
        export_discard(export)
        exports += 1
    for export in DataExport.objects.filter(state=ExportState.DOWNLOADED).exclude(
        blob=""
    ):
        export_discard(export, ExportState.DOWNLOADED)
        exports += 1
    try:
        dropped = ledger_settle(now=now)
    except (LedgerError, OSError) as exc:
        # The bucket raises LedgerError, the folder ledger OSError (a full or
        # unreadable volume): either way the rest of the run stands.
        logger.warning(
            "purge: the ledger is not settled, left for the next run: %s", exc
        )
        dropped = None
    summary = {
        "projects_erased": projects,
        "projects_left": len(left),
        "accounts_deleted": accounts,
        "accounts_left": len(accounts_left),
        "exports_removed": exports,
        "tombstones_dropped": dropped,
    }
    problem = PURGE_LEFT.format(left=len(left)) if left else ""
    if accounts_left:
        problem = " ".join(
            filter(None, [problem, PURGE_ACCOUNTS_LEFT.format(left=len(accounts_left))])
        )
    if dropped is None:
        problem = " ".join(filter(None, [problem, PURGE_NOT_SETTLED]))
    audit_record(
        event_type="privacy.purge",
        outcome=Outcome.ERROR if problem else Outcome.SUCCESS,
        error_code=erasure.LEDGER_REFUSED if problem else "",
        error_description=problem,
        details={**summary, "left": left},
    )
    return summary
