"""Take this process's database away for a while, by the driver's own failure.

PostgreSQL: the connection is pointed at a loopback port nothing listens on,
so psycopg's connect is refused as it is when the server is stopped. SQLite:
at a file in a folder that does not exist ("unable to open database file").
Nothing of the project is replaced; the next request gets the real error.
(The whole-process fault test, ``kreo/tests/test_faults_postgres.py``, stops
a real PostgreSQL cluster instead.)
"""

import socket
from contextlib import contextmanager

from django.db import connection


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def database_down(tmp_path):
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "postgresql":
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(_closed_port()))
    else:
        connection.settings_dict["NAME"] = str(tmp_path / "gone" / "db.sqlite3")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
