"""A change to the IP lists made on one instance applies on another within
seconds, and the other instance serves its requests with no database read.

Instance B is a second Python process on the test database and the shared
cache (Redis, or the embedded default's shared cache folder), answering
requests through Django's test client in its own middleware stack; instance
A is this process, changing the list through the service.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404 - the test starts its own instance
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from monitoring import services
from monitoring.models import IPListKind

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
REFRESH = 0.5
# A page that does no database work of its own (a static file).
CHEAP = "/static/favicon.svg"

INSTANCE = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment
setup_test_environment()
client = Client()
print("ready", flush=True)
for line in sys.stdin:
    ip, path = line.split()
    with CaptureQueriesContext(connection) as queries:
        status = client.get(path, REMOTE_ADDR=ip).status_code
    print(json.dumps({"status": status, "queries": len(queries)}), flush=True)
"""


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}"
        f":{db['PORT'] or 5432}/{db['NAME']}"
    )


class Instance:
    def __init__(self):
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
            "DATABASE_URL": _database_url(),
            "MONITORING_IPFILTER_REFRESH_SECONDS": str(REFRESH),
            # The one shared cache, under this test's key prefix (conftest).
            "KREO_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        }
        self.process = subprocess.Popen(  # noqa: S603 # nosec B603 - fixed command
            [sys.executable, "-c", INSTANCE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        got = self.process.stdout.readline()
        assert got, f"instance B exited ({self.process.wait(30)})"
        return got.strip()

    def get(self, ip: str, path: str = CHEAP) -> dict:
        self.process.stdin.write(f"{ip} {path}\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def until(self, status: int, ip: str, limit: float = 10.0) -> float:
        """Seconds until instance B answers ``status`` to ``ip``."""
        start = time.monotonic()
        while self.get(ip)["status"] != status:
            assert time.monotonic() - start < limit, f"no {status} within {limit} s"
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def instance_b():
    instance = Instance()
    yield instance
    instance.stop()


def test_a_block_made_on_one_instance_applies_on_the_other(instance_b):
    ip = "198.51.100.20"
    assert instance_b.get(ip)["status"] == 200
    steady = instance_b.get(ip)
    assert steady == {"status": 200, "queries": 0}

    rule = services.ip_rule_create(
        actor=None, kind=IPListKind.DENY, network="198.51.100.0/24", reason="test"
    )
    took = instance_b.until(403, ip)
    assert took < REFRESH + 2
    # Blocked from now on, still with no database work per request.
    assert instance_b.get(ip) == {"status": 403, "queries": 0}
    assert instance_b.get("192.0.2.1") == {"status": 200, "queries": 0}

    services.ip_rule_delete(actor=None, rule_id=rule.pk)
    assert instance_b.until(200, ip) < REFRESH + 2
    assert instance_b.get(ip) == {"status": 200, "queries": 0}
