"""Access control: two-factor sign-in (A.8.5), dormant accounts and
privileged roles (A.5.15, A.5.18, A.8.2), API tokens (A.5.17)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from accounts import selectors as account_selectors
from audit import selectors as audit_selectors
from compliance.catalogue import Outcome, control
from compliance.checks.common import iso
from compliance.models import CheckStatus

DORMANT_DAYS = 90
# Role changes shown in the evidence: over the last period.
ROLE_CHANGE_DAYS = 30
# Events that change who holds a role: SSO role sync, and admin writes to
# accounts or groups (the admin's own event; field changes sit beside it).
ROLE_EVENT_TYPES = ("auth.sso.roles", "admin.change")
ROLE_PATHS = ("/admin/accounts/user/", "/admin/auth/group/")


@control(
    id="2fa-adoption",
    title="Every staff account signs in with two factors; customers' adoption",
    iso27001=("A.8.5", "A.5.17"),
    soc2=("CC6.1",),
    evidence="Staff accounts (id, email) and those without a second factor; "
    "customer accounts and how many have one.",
)
def two_factor_adoption(now: datetime) -> Outcome:
    figures = account_selectors.second_factor_adoption()
    staff, without = len(figures["staff"]), figures["staff_without"]
    customers, with_2fa = figures["customers"], figures["customers_with"]
    share = round(100 * with_2fa / customers, 1) if customers else None
    evidence = {
        "staff": staff,
        "staff_with_2fa": staff - len(without),
        "staff_without_2fa": without,
        "customers": customers,
        "customers_with_2fa": with_2fa,
        "customers_percent": share,
        # The cockpit's 2FA chart (compliance.series.TWOFA_EVIDENCE_KEY): the
        # share, 0 to 1, of active accounts, staff and customers, with one.
        "twofa_adoption": (
            round((staff - len(without) + with_2fa) / (staff + customers), 4)
            if staff + customers
            else None
        ),
    }
    customers_text = (
        f"customers {with_2fa}/{customers} ({share}%)" if customers else "no customers"
    )
    if without:
        names = ", ".join(u["email"] for u in without[:5])
        return Outcome(
            CheckStatus.FAIL,
            f"{len(without)} of {staff} staff without two-factor sign-in ({names}); "
            f"{customers_text}.",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"All {staff} staff sign in with two factors; {customers_text}.",
        evidence,
    )


@control(
    id="dormant-accounts",
    title=f"No account left active without a sign-in for {DORMANT_DAYS} days",
    iso27001=("A.5.18", "A.8.2"),
    soc2=("CC6.2", "CC6.3"),
    evidence="Active accounts with no sign-in for 90 days: id, email, whether "
    "privileged, last sign-in (or joined, if never).",
)
def dormant_accounts(now: datetime) -> Outcome:
    dormant = account_selectors.users_dormant(before=now - timedelta(days=DORMANT_DAYS))
    privileged = [u for u in dormant if u["privileged"]]
    evidence = {
        "days": DORMANT_DAYS,
        "dormant": [
            {
                **u,
                "last_login": iso(u["last_login"]),
                "date_joined": iso(u["date_joined"]),
            }
            for u in dormant[:200]
        ],
        "dormant_count": len(dormant),
        "privileged_count": len(privileged),
    }
    if privileged:
        names = ", ".join(u["email"] for u in privileged[:5])
        return Outcome(
            CheckStatus.FAIL,
            f"{len(privileged)} privileged account(s) unused for {DORMANT_DAYS} days "
            f"still active ({names}); {len(dormant)} dormant in all.",
            evidence,
        )
    if dormant:
        return Outcome(
            CheckStatus.WARN,
            f"{len(dormant)} customer account(s) without a sign-in for "
            f"{DORMANT_DAYS} days.",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"Every active account signed in within {DORMANT_DAYS} days.",
        evidence,
    )


def _role_changes(now: datetime) -> list[dict]:
    since = now - timedelta(days=ROLE_CHANGE_DAYS)
    changes = []
    for event_type in ROLE_EVENT_TYPES:
        for event in audit_selectors.event_filter(
            since=since, until=now, event_type=event_type
        ):
            if event_type == "admin.change" and not event.path.startswith(ROLE_PATHS):
                continue
            details = event.details or {}
            if event_type == "auth.sso.roles" and not (
                details.get("groups_added")
                or details.get("groups_removed")
                or details.get("staff_changed")
            ):
                continue
            changes.append(
                {
                    "event_id": event.pk,
                    "at": iso(event.occurred_at),
                    "type": event.event_type,
                    "actor": event.actor_label,
                    "target": f"{event.target_type}:{event.target_id}".strip(":"),
                    "path": event.path,
                    "groups_added": details.get("groups_added"),
                    "groups_removed": details.get("groups_removed"),
                }
            )
    return sorted(changes, key=lambda c: c["event_id"])


@control(
    id="privileged-roles",
    title="Staff, Admin and Auditor role holders are listed, in use, and "
    "their changes recorded",
    iso27001=("A.5.15", "A.5.18", "A.8.2"),
    soc2=("CC6.1", "CC6.2", "CC6.3"),
    evidence="Every active staff, superuser, Admin and Auditor holder (id, email, "
    "groups, last sign-in) and the role changes of the last 30 days from the "
    "audit trail (event id, time, who, what).",
)
def privileged_roles(now: datetime) -> Outcome:
    holders = account_selectors.privileged_users()
    cutoff = now - timedelta(days=DORMANT_DAYS)
    unused = [h for h in holders if (h["last_login"] or h["date_joined"]) < cutoff]
    changes = _role_changes(now)
    evidence = {
        "holders": [
            {
                **h,
                "last_login": iso(h["last_login"]),
                "date_joined": iso(h["date_joined"]),
            }
            for h in holders
        ],
        "superusers": sum(1 for h in holders if h["is_superuser"]),
        "changes_days": ROLE_CHANGE_DAYS,
        "changes": changes,
        "unused": [h["email"] for h in unused],
    }
    counts = (
        f"{len(holders)} privileged account(s), {len(changes)} role change(s) in "
        f"{ROLE_CHANGE_DAYS} days"
    )
    if unused:
        return Outcome(
            CheckStatus.FAIL,
            f"{counts}; {len(unused)} not used for {DORMANT_DAYS} days: "
            f"{', '.join(evidence['unused'][:5])}.",
            evidence,
        )
    return Outcome(CheckStatus.PASS, f"{counts}; all in use.", evidence)


@control(
    id="api-token-lifetime",
    title="No API token in force past its lifetime",
    iso27001=("A.5.17", "A.8.5"),
    soc2=("CC6.1", "CC6.2"),
    evidence="The token lifetime and every token in force older than it, or "
    "without expiry: public id, owner, created, expiry, last use.",
)
def api_token_lifetime(now: datetime) -> Outcome:
    lifetime = timedelta(seconds=settings.KREO_API_TOKEN_TTL_SECONDS)
    tokens = account_selectors.api_tokens_in_force(at=now)
    overdue = [
        t for t in tokens if t["expiry"] is None or now - t["created"] > lifetime
    ]
    evidence = {
        "lifetime_seconds": settings.KREO_API_TOKEN_TTL_SECONDS,
        "in_force": len(tokens),
        "overdue": [
            {
                **t,
                "created": iso(t["created"]),
                "expiry": iso(t["expiry"]),
                "last_used_at": iso(t["last_used_at"]),
            }
            for t in overdue
        ],
    }
    if overdue:
        return Outcome(
            CheckStatus.FAIL,
            f"{len(overdue)} of {len(tokens)} API token(s) in force past their "
            f"{lifetime.days}-day lifetime or without expiry.",
            evidence,
        )
    return Outcome(
        CheckStatus.PASS,
        f"{len(tokens)} API token(s) in force, none past the {lifetime.days}-day "
        "lifetime.",
        evidence,
    )
