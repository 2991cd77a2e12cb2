"""One way to build a boto3 S3 client for the app's own buckets (audit
archives, backups' copy 3, the erasure ledger); project files go through
django-storages, which builds its own.

Path-style addressing (MinIO and other S3-compatible servers), SigV4, short
connect timeout and standard retries, so an unreachable S3 fails in seconds.
"""

import boto3
from botocore.config import Config

# Project files: seconds S3 may stay silent in one call before it is an
# outage. An upload makes two calls (HEAD for a free name, then PUT), each
# tried twice, so a hung S3 answers 503 within ~25 s: before gunicorn's
# worker timeout (30 s) and nginx's proxy_read_timeout (60 s), either of
# which would otherwise drop the connection. S3 answers a call (or a part of
# a multipart upload, 8 MB) in well under a second when it is up.
FILES_READ_TIMEOUT = 6


def config(*, read_timeout: int = 60, attempts: int = 2) -> Config:
    """The client settings; also the project files' (django-storages'
    ``client_config``), so an S3 outage answers 503 in seconds, not after
    botocore's default 60 s connect timeout and five tries."""
    return Config(
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )


def client(
    endpoint_url: str, region: str, *, read_timeout: int = 60, attempts: int = 2
):
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region,
        config=config(read_timeout=read_timeout, attempts=attempts),
    )
