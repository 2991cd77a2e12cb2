"""Project file encryption: upload and download throughput of a 100 MB file
with the per-project AEAD (projects.crypto) against the same path without it.

Budget (issue 7): with encryption, at least 0.8 of the throughput without.
Both paths go through the same storage code (local disk, and moto's S3 server
over HTTP with SSE on): "plain" stores and streams the bytes as they are,
"encrypted" seals them in 64 KiB AES-256-GCM chunks on the way in and
verifies and decrypts every chunk on the way out. Runs alternate in rounds so
machine noise hits both alike; each backend runs in a child process, which
also reports its peak RSS (memory stays flat: the file is never held whole).
Size in MB from BENCH_ENCRYPTION_MB (default 100), rounds from
BENCH_ENCRYPTION_ROUNDS (default 3).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess  # nosec B404 - runs this module as a child
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

TITLE = "file encryption: 100 MB upload/download throughput, encrypted vs plain"
BUDGET = 0.8
PIECE = 64 * 1024


def _source(path: Path):
    with open(path, "rb") as handle:
        while piece := handle.read(PIECE):
            yield piece


def _child(backend: str, size_mb: int, rounds: int) -> dict:
    import django

    django.setup()
    from django.core.files import File
    from django.core.files.storage import default_storage

    from projects import crypto
    from projects.storage import _open_raw, raw_chunks

    key, file_id = os.urandom(32), uuid.uuid4()
    with tempfile.TemporaryDirectory(prefix="kreo-bench-enc-") as folder:
        source = Path(folder) / "upload.bin"
        with open(source, "wb") as handle:
            for _ in range(size_mb * 16):
                handle.write(os.urandom(PIECE))
        size = source.stat().st_size
        times: dict[str, list[float]] = {
            f"{mode}_{op}": []
            for mode in ("plain", "encrypted")
            for op in ("up", "down")
        }
        for _ in range(rounds):
            for mode in ("plain", "encrypted"):
                chunks = _source(source)
                if mode == "encrypted":
                    chunks = crypto.encrypt_chunks(key, file_id, chunks)
                started = time.perf_counter()
                name = default_storage.save(
                    f"bench/{uuid.uuid4().hex}", File(crypto.reader(chunks))
                )
                times[f"{mode}_up"].append(time.perf_counter() - started)
                blob = SimpleNamespace(storage=default_storage, name=name)
                started = time.perf_counter()
                if mode == "encrypted":
                    stream = crypto.decrypt_chunks(key, file_id, _open_raw(blob))
                else:
                    stream = raw_chunks(blob)
                total = sum(len(c) for c in stream)
                times[f"{mode}_down"].append(time.perf_counter() - started)
                if total != size:
                    raise RuntimeError(f"{mode} download returned {total} bytes")
                default_storage.delete(name)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "size_mb": size / 2**20,
        "median": {k: statistics.median(v) for k, v in times.items()},
        "peak_rss_mb": peak_mb,
    }


def _env(backend: str, var_dir: str, endpoint: str = "") -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KREO_", "AWS_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env = {
        **keep,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
        "KREO_VAR_DIR": var_dir,
        "PYTHONPATH": str(ROOT),
    }
    if backend == "s3":
        env.update(
            AWS_STORAGE_BUCKET_NAME="kreo-bench-files",
            AWS_S3_ENDPOINT_URL=endpoint,
            AWS_S3_REGION_NAME="eu-west-2",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106  # nosec B106 - moto
        )
    return env


def _rows(backend: str, result: dict) -> list[dict]:
    rows = []
    median, size = result["median"], result["size_mb"]
    for op, label in (("up", "upload"), ("down", "download")):
        plain = size / median[f"plain_{op}"]
        encrypted = size / median[f"encrypted_{op}"]
        ratio = encrypted / plain
        rows.append(
            {
                "case": f"{backend} {label}",
                "size_mb": round(size),
                "plain_MBps": round(plain, 1),
                "encrypted_MBps": round(encrypted, 1),
                "encrypted/plain": round(ratio, 3),
                "peak_rss_mb": round(result["peak_rss_mb"]),
                "budget": f">= {BUDGET:.2f}",
                "verdict": "PASS" if ratio >= BUDGET else "OVER",
            }
        )
    return rows


def run(options) -> list[dict]:
    import boto3
    import services

    size_mb = int(os.environ.get("BENCH_ENCRYPTION_MB", "100"))
    rounds = int(os.environ.get("BENCH_ENCRYPTION_ROUNDS", "3"))
    rows = []
    moto, endpoint = services.start_moto()
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="eu-west-2",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106  # nosec B106 - moto
        ).create_bucket(
            Bucket="kreo-bench-files",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        )
        for backend in ("disk", "s3"):
            with tempfile.TemporaryDirectory(prefix="kreo-bench-var-") as var_dir:
                output = subprocess.run(  # noqa: S603  # nosec B603 - this module
                    [
                        sys.executable,
                        "-m",
                        "bench.bench_encryption",
                        backend,
                        str(size_mb),
                        str(rounds),
                    ],
                    cwd=ROOT,
                    env=_env(backend, var_dir, endpoint),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if output.returncode != 0:
                    raise RuntimeError(output.stderr[-2000:])
                rows.extend(_rows(backend, json.loads(output.stdout.splitlines()[-1])))
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    return rows


if __name__ == "__main__":
    result = _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.write(json.dumps(result) + "\n")
