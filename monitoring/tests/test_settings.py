"""Production settings for monitoring: JSON lines on stdout, a strong token."""

import json

from kreo.tests.test_settings import PRODUCTION_ENV, manage

PROBE = (
    "import logging; logging.getLogger('kreo.request').info("
    "'GET / 200', extra={'correlation_id': 'c0ffee', 'status': 200})"
)


def test_production_writes_json_lines_on_stdout():
    """A request line from a production process is one JSON object on stdout."""
    done = manage("shell", "-c", PROBE, env=PRODUCTION_ENV)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "kreo.request" in line]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["correlation_id"] == "c0ffee"
    assert entry["status"] == 200
    assert entry["level"] == "INFO"
    assert "kreo.request" not in done.stderr


def test_production_refuses_a_short_monitoring_token():
    done = manage("check", env={**PRODUCTION_ENV, "MONITORING_TOKEN": "short"})
    assert done.returncode == 1
    assert "MONITORING_TOKEN must be at least 32 characters" in done.stderr
    assert "Traceback" not in done.stderr
