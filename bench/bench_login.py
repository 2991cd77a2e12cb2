"""What a rate-limited login costs against one that reaches the password check.

Both through the whole middleware stack and the real login view, in-process
(Django's test client) on the embedded default with production's Argon2
parameters (kreo.settings.local), in a child process with its own SQLite
database and cache:

- ``password check``: a wrong password for an account that is neither
  limited nor locked, from a fresh client IP: rate-limit counters, one Argon2
  verification, failure counters, audit event, the form re-rendered.
- ``rate limited``: the same request for an account over its limit: the
  counters, the audit event and a 429 with Retry-After, no Argon2.

The ratio says how much cheaper refusing is than checking: the defence must
not be a denial-of-service lever itself.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TITLE = "rate-limited refusal vs real password check (median latency)"
WRONG = "a wrong password"  # nosec B105 - the guess the benchmark sends
ROOT = Path(__file__).resolve().parent.parent


def run(options) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kreo-bench-login-") as folder:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "REDIS_URL", "KREO_", "DJANGO_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="kreo.settings.local",
            KREO_VAR_DIR=folder,
            KREO_BENCH_REQUESTS=str(options.requests),
        )
        done = subprocess.run(  # noqa: S603 - this file, fixed arguments
            [sys.executable, __file__, "--worker"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"login benchmark worker failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9) - 1]


def _worker() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.hashers import get_hasher
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from accounts.models import User

    call_command("migrate", verbosity=0)
    n = int(os.environ["KREO_BENCH_REQUESTS"])
    hashed = get_hasher().encode("the right password 1", get_hasher().salt())
    User.objects.bulk_create(
        [User(email=f"bench{i}@example.test", password=hashed) for i in range(n + 1)]
    )
    client = Client(HTTP_HOST="localhost")
    url = reverse("accounts:login")

    def post(email: str, ip: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = client.post(
            url, {"username": email, "password": WRONG}, REMOTE_ADDR=ip
        )
        return time.perf_counter() - started, response.status_code

    # Warm up templates, connections and the hasher.
    for i in range(5):
        post(f"warm{i}@example.test", f"198.18.200.{i}")

    checked = []
    for i in range(n):
        seconds, status = post(f"bench{i}@example.test", f"198.18.{i // 250}.{i % 250}")
        assert status == 200, status
        checked.append(seconds)

    target, ip = f"bench{n}@example.test", "198.19.0.1"
    status = 200
    while status != 429:
        _, status = post(target, ip)
    limited = []
    for _ in range(n):
        seconds, status = post(target, ip)
        assert status == 429, status
        limited.append(seconds)

    check_median, check_p90 = _stats(checked)
    limit_median, limit_p90 = _stats(limited)
    rows = [
        {
            "case": "password check (Argon2)",
            "requests": n,
            "median_ms": round(check_median * 1000, 2),
            "p90_ms": round(check_p90 * 1000, 2),
            "check/limited": round(check_median / limit_median, 1),
        },
        {
            "case": "rate limited (429)",
            "requests": n,
            "median_ms": round(limit_median * 1000, 2),
            "p90_ms": round(limit_p90 * 1000, 2),
            "check/limited": 1.0,
        },
    ]
    sys.stdout.write(json.dumps(rows) + "\n")


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker()
