"""`check --deploy` on production settings with the CI placeholders, against
a real S3 server (moto) holding the CI backup and audit archive buckets in
eu-west-2 with Object Lock: the deploy checks read the backup bucket's
region and each app bucket's Object Lock (kreo.W020), and refuse what they
cannot read."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import boto3  # noqa: E402
import services  # noqa: E402


def main() -> int:
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".ci" / "production.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    moto, url = services.start_moto()
    try:
        credentials = {"AWS_ACCESS_KEY_ID": "ci", "AWS_SECRET_ACCESS_KEY": "ci"}  # nosec B105
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="eu-west-2",
            aws_access_key_id="ci",
            aws_secret_access_key="ci",  # noqa: S106 - moto accepts any  # nosec B106
        )
        for bucket in (env["BACKUP_S3_BUCKET"], env["AUDIT_ARCHIVE_S3_BUCKET"]):
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
                ObjectLockEnabledForBucket=True,
            )
        done = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "check",
                "--deploy",
                "--fail-level",
                "WARNING",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                **env,
                **credentials,
                "BACKUP_S3_ENDPOINT_URL": url,
                "AUDIT_ARCHIVE_S3_ENDPOINT_URL": url,
                # moto speaks plain HTTP on the loopback: the one plaintext
                # link of this check (database and Redis are TLS in the file).
                "KREO_PLAINTEXT_LINKS_OK": "s3",
            },
            check=False,
        )
        return done.returncode
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
