import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection


@pytest.fixture
def sealed_now(settings):
    """Seal events as soon as they are recorded."""
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    return settings


@pytest.fixture
def superuser_sql():
    """Run SQL on the test database as a PostgreSQL superuser (the attacker)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    params = connection.get_connection_params()
    conn = psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        user="postgres",
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )

    def run(sql, args=None, bypass=False):
        """``bypass`` disables triggers for this session first (superuser only)."""
        with conn.cursor() as cursor:
            if bypass:
                cursor.execute("SET session_replication_role = replica")
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None

    yield run
    conn.close()


def verify_output(*args):
    """Run audit_verify; return (ok, text)."""
    from io import StringIO

    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return False, out.getvalue() + str(exc)
    return True, out.getvalue()
