"""The Quick start's promise: `make run` prints a demo login that signs in."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SIGN_IN = """
from django.test import Client
c = Client(HTTP_HOST='localhost')
r = c.post('/accounts/login/', {'username': '%s', 'password': '%s'})
print(r.status_code, r.headers.get('Location'))
print(c.get('/projects/').status_code)
"""


def test_demo_login_printed_by_demo_seed_signs_in(tmp_path):
    """On the embedded default, the printed demo credentials open the project list."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_"))
    }
    env.update(KREO_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="kreo.settings.local")

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        ).stdout

    manage("migrate", "-v", "0")
    printed = manage("demo_seed")
    found = re.search(r"demo login: (\S+) / (\S+)", printed)
    assert found, printed
    email, password = found.groups()
    out = manage("shell", "--no-imports", "-c", SIGN_IN % (email, password))
    login, projects = out.strip().splitlines()[-2:]
    assert login.startswith("302"), out
    assert projects == "200", out
    # Running it again resets the password: the old one stops working.
    manage("demo_seed")
    out = manage("shell", "--no-imports", "-c", SIGN_IN % (email, password))
    assert out.strip().splitlines()[-2].startswith("200"), "old password still works"
