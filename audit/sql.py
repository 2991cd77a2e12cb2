"""PostgreSQL guards that make the audit trail append-only.

Triggers refuse UPDATE and TRUNCATE of events and seals, and DELETE of
seals. DELETE of an event passes only inside the archival purge
(``SET LOCAL kreo.audit_purge = 'on'``) and only for a row that a read-back,
verified archive holds. The session flag is no secret: the row check is the
guard, and ``audit_verify`` still compares every archive with the seals.

Test databases are emptied with TRUNCATE between transactional tests, so the
test settings set ``kreo.audit_truncate_ok`` on their connections; nothing
else does. ``grants_sql`` is for deployments where migrations run as the
owner and the application as its own role.
"""

GUARD_FUNCTION = """
CREATE OR REPLACE FUNCTION kreo_audit_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF current_setting('kreo.audit_truncate_ok', true) = 'on' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'audit trail is append-only: TRUNCATE % refused',
            TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditevent'
        AND current_setting('kreo.audit_purge', true) = 'on'
        AND EXISTS (
            SELECT 1 FROM audit_auditarchive a
            WHERE a.state IN ('verified', 'purged')
              AND OLD.id BETWEEN a.first_id AND a.last_id
        ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit trail is append-only: % of % row % refused',
        TG_OP, TG_TABLE_NAME, OLD.id USING ERRCODE = 'insufficient_privilege';
END
$$;
"""

TABLES = ("audit_auditevent", "audit_auditseal")


def install_sql() -> list[str]:
    statements = [GUARD_FUNCTION]
    for table in TABLES:
        statements += [
            f"DROP TRIGGER IF EXISTS kreo_append_only ON {table}",
            f"CREATE TRIGGER kreo_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION kreo_audit_guard()",
            f"DROP TRIGGER IF EXISTS kreo_no_truncate ON {table}",
            f"CREATE TRIGGER kreo_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION kreo_audit_guard()",
            f"REVOKE UPDATE, TRUNCATE ON {table} FROM PUBLIC",
        ]
    return statements


def uninstall_sql() -> list[str]:
    statements = []
    for table in TABLES:
        statements += [
            f"DROP TRIGGER IF EXISTS kreo_append_only ON {table}",
            f"DROP TRIGGER IF EXISTS kreo_no_truncate ON {table}",
        ]
    return [*statements, "DROP FUNCTION IF EXISTS kreo_audit_guard()"]


# django-auditlog's entries (audit/fieldchanges.py mirrors each into the
# chain): no UPDATE but the one a user's deletion makes (the actor key set to
# NULL, nothing else), no TRUNCATE, and DELETE only inside the archival purge
# for entries older than every event still in the hot store (their mirrors
# are in a verified archive by then).
FIELD_CHANGE_GUARD = """
CREATE OR REPLACE FUNCTION kreo_field_change_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF current_setting('kreo.audit_truncate_ok', true) = 'on' THEN
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'field-change history is append-only: TRUNCATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
        AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE'
        AND current_setting('kreo.audit_purge', true) = 'on'
        AND OLD.timestamp < (SELECT min(occurred_at) FROM audit_auditevent) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'field-change history is append-only: % of entry % refused',
        TG_OP, OLD.id USING ERRCODE = 'insufficient_privilege';
END
$$;
"""
FIELD_CHANGE_TABLE = "auditlog_logentry"


def field_change_install_sql() -> list[str]:
    table = FIELD_CHANGE_TABLE
    return [
        FIELD_CHANGE_GUARD,
        f"DROP TRIGGER IF EXISTS kreo_append_only ON {table}",
        f"CREATE TRIGGER kreo_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION kreo_field_change_guard()",
        f"DROP TRIGGER IF EXISTS kreo_no_truncate ON {table}",
        f"CREATE TRIGGER kreo_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION kreo_field_change_guard()",
        f"REVOKE UPDATE, TRUNCATE ON {table} FROM PUBLIC",
    ]


def field_change_uninstall_sql() -> list[str]:
    table = FIELD_CHANGE_TABLE
    return [
        f"DROP TRIGGER IF EXISTS kreo_append_only ON {table}",
        f"DROP TRIGGER IF EXISTS kreo_no_truncate ON {table}",
        "DROP FUNCTION IF EXISTS kreo_field_change_guard()",
    ]


def grants_sql(role: str) -> list[str]:
    """Grants for an application role that does not own the audit tables."""
    quoted = '"' + role.replace('"', '""') + '"'
    return [
        f"REVOKE ALL ON audit_auditevent, audit_auditseal FROM {quoted}",
        # No DELETE: only the purge role removes archived events
        # (``purge_grants_sql``), so a fake archive row gets the app nowhere.
        f"GRANT SELECT, INSERT ON audit_auditevent TO {quoted}",
        f"GRANT SELECT, INSERT ON audit_auditseal TO {quoted}",
        f"GRANT USAGE ON SEQUENCE audit_auditevent_id_seq TO {quoted}",
        f"GRANT USAGE ON SEQUENCE audit_auditseal_id_seq TO {quoted}",
        # Archive bookkeeping and reviews change state: ordinary tables.
        f"GRANT SELECT, INSERT, UPDATE ON audit_auditarchive, audit_auditreview "
        f"TO {quoted}",
        f"GRANT USAGE ON SEQUENCE audit_auditarchive_id_seq, "
        f"audit_auditreview_id_seq TO {quoted}",
        # Field changes: written by django-auditlog; the actor key is set to
        # NULL when a user is deleted.
        f"REVOKE ALL ON {FIELD_CHANGE_TABLE} FROM {quoted}",
        f"GRANT SELECT, INSERT ON {FIELD_CHANGE_TABLE} TO {quoted}",
        f"GRANT UPDATE (actor_id) ON {FIELD_CHANGE_TABLE} TO {quoted}",
        f"GRANT USAGE ON SEQUENCE {FIELD_CHANGE_TABLE}_id_seq TO {quoted}",
    ]


def purge_grants_sql(role: str) -> list[str]:
    """Grants for the archival purge's role (``AUDIT_PURGE_DATABASE_URL``):
    it reads and deletes events and field changes, and reads the archive
    rows the guard checks; nothing else. The application role holds no
    DELETE on either table, so with the two roles apart no statement the
    application can run removes an event."""
    quoted = '"' + role.replace('"', '""') + '"'
    return [
        f"GRANT SELECT, DELETE ON audit_auditevent, {FIELD_CHANGE_TABLE} TO {quoted}",
        f"GRANT SELECT ON audit_auditarchive TO {quoted}",
    ]
