"""Account deletion, and its return after a restore of an older backup.

``user_delete`` deletes the user row, so e-mail, name, sessions, devices and
API tokens go with it; projects the user alone owns are put aside by
``projects`` (``OWNED_PROJECTS_RULE``); audit events keep their recorded
actor label and id, untouched (the trail's hash chain stays intact).

Like a project erasure, a deletion first writes a tombstone to the erasure
ledger (``projects.ledger``: a folder or a bucket outside the database and
every backup of it). It holds the account's id and nothing else about the
person. When the ledger cannot be written the deletion is refused
(``LedgerError``) before anything is deleted. A restore of a backup taken
before the deletion applies the tombstone again (``reapply``, registered for
the ``account`` kind in ``AccountsConfig.ready`` and called by
``projects.keys.after_restore``): the account is deleted again and its
sole-owner projects are put aside again, dated from the original deletion.

A user id can come back after a restore (the id sequence is restored too):
a tombstone only applies to an account that already existed when it was
written (``date_joined`` no later than the tombstone), never to a newer
account that was given the same id.
"""

from __future__ import annotations

from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts import api_tokens
from accounts.oidc.errors import SSOFailure
from accounts.oidc.reauth import reauth_consume
from audit.models import Outcome
from audit.services import audit_record
from projects import keys
from projects.models import Membership
from projects.services import projects_set_aside_for_leaving_owner

KIND = "account"
WRONG_PASSWORD = "The password is not correct."  # noqa: S105  # nosec B105
REAUTH_REQUIRED = (
    "Confirm with your sign-in provider first. The confirmation lasts a few "
    "minutes and is good for one attempt. Nothing was deleted."
)
OWNED_PROJECTS_RULE = (
    "Projects you are the only owner of are deleted with your account: they "
    "disappear for every member at once and are erased (cryptographically) "
    "after {days} days. Projects with another owner stay, without you."
)
DELETE_REFUSED = (
    "The account was not deleted: the erasure ledger, which keeps it deleted "
    "through a restore of an older backup, cannot be written. Nothing was "
    "changed; try again once it answers."
)


def _reauth_refusal(
    *, user, request, password: str | None, reauthenticated: bool
) -> tuple[str, ValidationError] | None:
    """Why the owner's re-authentication does not hold, or None if it does.

    ``reauthenticated`` is a claim, not a proof: the session's marker from
    the identity provider is checked and spent here (accounts.oidc.reauth).
    """
    if reauthenticated:
        try:
            if request is None:
                raise SSOFailure("reauth_missing")
            reauth_consume(request=request, user=user)
        except SSOFailure as exc:
            return exc.code, ValidationError(REAUTH_REQUIRED, code="reauth")
        return None
    if not user.has_usable_password() or not user.check_password(password or ""):
        error = ValidationError({"password": WRONG_PASSWORD}, code="reauth")
        return "wrong_password", error
    return None


def user_delete_refused(
    *, actor, user, request, code: str, message: str, via: str
) -> None:
    """Audit a deletion refused: nothing was deleted."""
    audit_record(
        event_type="account.delete",
        actor=actor,
        actor_label="" if actor is not None else "system",
        request=request,
        outcome=Outcome.DENIED if code != "erasure_ledger" else Outcome.ERROR,
        target_type="accounts.user",
        target_id=str(user.pk),
        error_code=code,
        error_description=message,
        details={"via": via},
    )


def user_delete(
    *,
    actor,
    user,
    request=None,
    password: str | None = None,
    reauthenticated: bool = False,
    staff: bool = False,
    reason: str = "",
) -> dict:
    """Delete ``user``'s account by the rule in OWNED_PROJECTS_RULE.

    The owner re-authenticates: with the current password, or
    (``reauthenticated=True``) with a fresh sign-in at the identity provider
    that this session recorded and that is spent by this call. Staff decide
    with their own permissions (``staff=True``). A refusal deletes nothing
    and is audited: ``ValidationError`` for the re-authentication,
    ``LedgerError`` (``DELETE_REFUSED``) when the tombstone cannot be written.
    """
    via = "sso" if reauthenticated else ("" if staff else "password")
    if not staff:
        if actor.pk != user.pk:
            raise PermissionDenied
        refusal = _reauth_refusal(
            user=user,
            request=request,
            password=password,
            reauthenticated=reauthenticated,
        )
        if refusal is not None:
            code, error = refusal
            user_delete_refused(
                actor=actor,
                user=user,
                request=request,
                code=code,
                message=error.messages[0],
                via=via or "password",
            )
            raise error
    try:
        tombstone = keys.ledger_record(kind=KIND, object_id=user.pk, details={})
    except (keys.LedgerError, OSError) as exc:
        # The bucket raises LedgerError, the folder OSError (full, read-only).
        user_delete_refused(
            actor=actor,
            user=user,
            request=request,
            code="erasure_ledger",
            message=DELETE_REFUSED,
            via=via or "staff",
        )
        raise keys.LedgerError(DELETE_REFUSED) from exc
    try:
        with transaction.atomic():
            summary = _delete(
                actor=actor,
                user=user,
                request=request,
                details={
                    "by": "staff" if staff else "self",
                    "via": via,
                    "reason": reason,
                },
            )
    except BaseException:
        keys.ledger_withdraw([tombstone])
        raise
    return summary


def _delete(*, actor, user, request, details: dict) -> dict:
    put_aside = projects_set_aside_for_leaving_owner(user_id=user.pk)
    tokens = api_tokens.tokens_revoke_all(
        user=user, actor=actor, request=request, reason="account_deleted"
    )
    summary = {
        "user": user.pk,
        "projects_put_aside": put_aside,
        "memberships_removed": Membership.objects.filter(user=user).count(),
        "api_tokens_revoked": tokens,
        **details,
        "ledger": True,
    }
    audit_record(
        event_type="account.delete",
        actor=actor,
        actor_label="" if actor is not None else "system",
        request=request,
        target_type="accounts.user",
        target_id=str(user.pk),
        details=summary,
    )
    # django-auditlog would name the request's user, about to stop
    # existing, as the actor of its own deletion entry: a dangling key.
    with set_actor(None):
        user.delete()
    return summary


# After a restore ------------------------------------------------------------------


def _restored(tombstone, using: str):
    """The account ``tombstone`` deleted, if the database ``using`` has it."""
    return (
        get_user_model()
        .objects.using(using)
        .filter(pk=int(tombstone.id), date_joined__lte=tombstone.at)
        .first()
    )


def exists(tombstone, using: str) -> bool:
    """The deleted account is in ``using`` (its deletion rolled back, or the
    database is a restore not yet settled)."""
    return _restored(tombstone, using) is not None


def reapply(*, tombstones, using: str = "default", actor=None) -> dict:
    """Delete again the accounts a restore brought back, and put aside again
    the projects they alone own, dated from the original deletion."""
    accounts, projects = 0, []
    with transaction.atomic(using=using), set_actor(None):
        for tombstone in sorted(tombstones, key=lambda t: t.at):
            user = _restored(tombstone, using)
            if user is None:
                continue
            projects += projects_set_aside_for_leaving_owner(
                user_id=user.pk, at=tombstone.at, using=using
            )
            user.delete()
            accounts += 1
    return {"accounts_deleted": accounts, "projects_put_aside": len(projects)}
