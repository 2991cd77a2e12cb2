"""django-auditlog's field changes, carried into the keyed, sealed chain.

django-auditlog writes one ``LogEntry`` per save of a registered model, with
the changed fields (secrets masked by ``audit.context.mask_secret``). Those
rows alone would sit outside the chain: unkeyed, unsealed, never archived,
and ``auditlogflush`` would wipe them. So every new entry is also recorded as
an audit event ``record.<create|update|delete|access>`` through
``audit_record``, in the same transaction as the change: keyed with the
event MAC, sealed, anchored, archived and purged with the rest of the trail.
The ``LogEntry`` table stays as django-auditlog's own view for the admin's
"Field changes"; PostgreSQL triggers keep it append-only (``audit/sql.py``),
``auditlogflush`` is refused (``audit/management/commands``), and the
archival purge removes entries only once the events mirroring them have
left the hot store into a verified archive.

A signal, against the house rule of explicit audit calls: django-auditlog
creates its entries inside its own save hooks, and ``post_save`` of
``LogEntry`` is the one place that sees every one of them.
"""

from __future__ import annotations

from django.db.models.signals import post_save

ACTIONS = {0: "create", 1: "update", 2: "delete", 3: "access"}
EVENT_PREFIX = "record."


def record_field_change(sender, instance, created, raw=False, **kwargs) -> None:
    if not created or raw:
        return
    from audit.services import audit_record

    action = ACTIONS.get(instance.action, str(instance.action))
    content_type = instance.content_type
    audit_record(
        event_type=EVENT_PREFIX + action,
        actor=instance.actor,
        actor_label=instance.actor_email or "",
        target_type=f"{content_type.app_label}.{content_type.model}",
        target_id=str(instance.object_pk),
        correlation_id=instance.cid or "",
        # The admin's own admin.change event is still recorded beside it.
        replaces_request_event=False,
        details={
            "log_entry": instance.pk,
            "object": (instance.object_repr or "")[:200],
            "changes": instance.changes or {},
        },
    )


def connect() -> None:
    from auditlog.models import LogEntry

    post_save.connect(
        record_field_change, sender=LogEntry, dispatch_uid="audit.fieldchanges"
    )
