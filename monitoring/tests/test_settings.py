"""Production settings for monitoring: JSON lines on stdout, a strong token."""

import json
import os
import subprocess
import sys

from kreo.tests.test_settings import PRODUCTION_ENV, ROOT, manage

SERVER_VARIABLES = ("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_")
PROBE = (
    "import logging; logging.getLogger('kreo.request').info("
    "'GET / 200', extra={'correlation_id': 'c0ffee', 'status': 200})"
)


def _json_line(text: str) -> dict:
    lines = [line for line in text.splitlines() if "kreo.request" in line]
    assert len(lines) == 1, text
    return json.loads(lines[0])


def test_production_writes_json_lines_on_stdout():
    """A request line from a production server process (not manage.py) is
    one JSON object on stdout."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(SERVER_VARIABLES)},
        **PRODUCTION_ENV,
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    entry = _json_line(done.stdout)
    assert (entry["correlation_id"], entry["status"]) == ("c0ffee", 200)
    assert entry["level"] == "INFO"
    assert "kreo.request" not in done.stderr


def test_a_production_command_keeps_stdout_for_its_answer():
    """manage.py's log lines are JSON on stderr; stdout is the command's own."""
    done = manage(
        "shell", "--no-imports", "-c", PROBE + "; print('answer')", env=PRODUCTION_ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answer"
    assert _json_line(done.stderr)["correlation_id"] == "c0ffee"


def test_production_refuses_a_short_monitoring_token():
    done = manage("check", env={**PRODUCTION_ENV, "MONITORING_TOKEN": "short"})
    assert done.returncode == 1
    assert "MONITORING_TOKEN must be at least 32 characters" in done.stderr
    assert "Traceback" not in done.stderr


def test_production_refuses_an_alert_webhook_without_its_secret():
    """A webhook URL with no signing secret would post unsigned alerts."""
    done = manage(
        "check",
        env={**PRODUCTION_ENV, "MONITORING_WEBHOOK_URL": "https://hooks.example/x"},
    )
    assert done.returncode == 1
    assert "MONITORING_WEBHOOK_SECRET" in done.stderr
    assert "Traceback" not in done.stderr
    signed = manage(
        "check",
        env={
            **PRODUCTION_ENV,
            "MONITORING_WEBHOOK_URL": "https://hooks.example/x",
            "MONITORING_WEBHOOK_SECRET": "w" * 48,
        },
    )
    assert signed.returncode == 0, signed.stderr
