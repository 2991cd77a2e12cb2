"""The test command: the suite on PostgreSQL + Redis + S3, then on the embedded default.

Usage: python scripts/test.py [--leg postgres|sqlite] [pytest args...]

Both legs talk to a real Redis and a real S3 server (moto, over HTTP) where a
test needs them; the PostgreSQL leg also runs the whole app on them (files in
the bucket, cache and broker on Redis), the SQLite leg on local files and the
filesystem broker, as `make run` does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET  # noqa: S405 - parses pytest's own report  # nosec B405
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import services  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a JUnit XML report."""
    if not report.exists():
        return 0, 1, 0
    root = ET.parse(report).getroot()  # noqa: S314 - our own file  # nosec B314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, failures, errors, skipped = (
        int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
    )
    failed = failures + errors
    return total - failed - skipped, failed, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leg", choices=["postgres", "sqlite"], action="append")
    args, pytest_args = parser.parse_known_args()
    legs = args.leg or ["postgres", "sqlite"]

    database_url = services.ensure_postgres() if "postgres" in legs else ""
    redis_url = services.ensure_redis()
    services.ensure_chromium()
    services.ensure_nginx()
    moto, s3_url = services.start_moto()
    run_id = f"{os.getpid()}"
    common = {
        "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
        "KREO_TEST_S3_ENDPOINT": s3_url,
        "KREO_TEST_REDIS_URL": f"{redis_url}/15",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105  # nosec B105
        "AWS_DEFAULT_REGION": "eu-west-2",
        "KREO_CACHE_PREFIX": f"kreo-test-{run_id}",
    }
    scrub = (
        "DATABASE_URL",
        "REDIS_URL",
        "AWS_STORAGE_BUCKET_NAME",
        "AWS_S3_ENDPOINT_URL",
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "KREO_VAR_DIR",
    )
    base_env = {k: v for k, v in os.environ.items() if k not in scrub}
    leg_env = {
        "postgres": {
            "DATABASE_URL": database_url,
            "REDIS_URL": f"{redis_url}/14",
            "AWS_STORAGE_BUCKET_NAME": "kreo-test-files",
            "AWS_S3_ENDPOINT_URL": s3_url,
            "AWS_S3_REGION_NAME": "eu-west-2",
        },
        "sqlite": {},
    }
    totals = [0, 0, 0]
    failed_legs = []
    try:
        with tempfile.TemporaryDirectory(prefix="kreo-test-") as tmp:
            for leg in legs:
                report = Path(tmp) / f"{leg}.xml"
                env = {
                    **base_env,
                    **common,
                    **leg_env[leg],
                    "KREO_VAR_DIR": str(Path(tmp) / f"var-{leg}"),
                    "KREO_TEST_LEG": leg,
                    "KREO_TEST_RUN": run_id,
                }
                sys.stdout.write(f"\n=== test leg: {leg} ===\n")
                sys.stdout.flush()
                code = subprocess.call(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        f"--junitxml={report}",
                        *pytest_args,
                    ],
                    cwd=ROOT,
                    env=env,
                )
                passed, failed, skipped = counts(report)
                totals = [totals[0] + passed, totals[1] + failed, totals[2] + skipped]
                if code != 0 and not (code == 5 and pytest_args):
                    failed_legs.append(f"{leg} (exit {code})")
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:  # a loaded machine: do not fail the run
            moto.kill()
            moto.wait()
    sys.stdout.write(
        f"\nlegs: {', '.join(legs)}; failed legs: {', '.join(failed_legs) or 'none'}\n"
    )
    sys.stdout.write(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped\n")
    return 1 if failed_legs or totals[0] == 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
