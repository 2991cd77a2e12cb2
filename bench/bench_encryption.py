"""Project file encryption, end to end: a 100 MB file uploaded through the
upload page and downloaded through the download link, encrypted against plain.

Budget (issue 7): with encryption, at least 0.8 of the throughput without.
What a user gets is measured: real gunicorn servers on the loopback, signed
in through the login form, the file posted as a multipart form with its CSRF
token and read back in full (its SHA-256 must match). Two servers share one
database and one storage: "encrypted" runs the embedded default as ``make
run`` serves it; "plain" runs the same settings with KREO_FILE_ENCRYPTION off
(bench/settings_unencrypted.py, the only place that switches it off), which
stores the bytes as they are. Both read stored bytes 64 KiB at a time and
hand them to gunicorn the same way. Both storages are measured: moto's S3
server over HTTP with SSE on (production keeps files in object storage) and
local disk (the embedded default). Each round uploads the file once and
downloads it four times (one untimed download checks its SHA-256); requests
alternate between the servers, the order rotating each round, so machine
noise hits both alike.

On a 2-core host the client, the server (and moto) share the cores, so a
download is bound by CPU: AES-GCM costs about 45 ms per 100 MB on one core,
against 65-100 ms for the whole plain download from the page cache. A
client on another machine leaves the cipher's worker thread a core.

The cipher's own speed (in memory, no storage or HTTP around it) is printed
too, as information: it is what a page-cache copy would be compared with.

Size in MB from BENCH_ENCRYPTION_MB (default 100), rounds from
BENCH_ENCRYPTION_ROUNDS (default 5).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import servers  # noqa: E402

TITLE = "file encryption: 100 MB upload/download through the pages, encrypted vs plain"
BUDGET = 0.8
BUCKET = "kreo-bench-files"
MODES = {"encrypted": "bench.settings_full", "plain": "bench.settings_unencrypted"}
# Production keeps project files in object storage (its settings require
# AWS_STORAGE_BUCKET_NAME); local disk is the embedded default of `make run`.
STORAGE = {"s3": "production storage", "disk": "embedded default"}
DOWNLOAD_LINK = r'href="(/projects/[^"]+/files/[0-9a-f-]+/download/)">{name}</a>'
PIECE = 1024 * 1024
DOWNLOADS = 3  # timed downloads per upload


def pdf_body(size: int) -> bytes:
    """A PDF as the upload checks sniff it, the rest random (incompressible)."""
    head = b"%PDF-1.7\n% "
    tail = b"\n%%EOF\n"
    return head + os.urandom(size - len(head) - len(tail)) + tail


def multipart(name: str, content: bytes, token: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
        f"{token}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode(),
        content,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _token(server: servers.Server, path: str) -> str:
    page = server.session.get(f"{server.url}{path}", timeout=30)
    found = servers.CSRF_INPUT.search(page.text)
    if page.status_code != 200 or found is None:
        raise servers.BenchError(f"{server.name} {path}: no form ({page.status_code})")
    return found.group(1)


def upload(server: servers.Server, project: str, name: str, content: bytes) -> float:
    """Seconds for the upload POST (body sent, file stored, redirect back)."""
    body, content_type = multipart(name, content, _token(server, project))
    started = time.perf_counter()
    response = server.session.post(
        f"{server.url}{project}files/",
        data=body,
        headers={"Content-Type": content_type},
        allow_redirects=False,
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 302:
        raise servers.BenchError(
            f"{server.name} upload: {response.status_code} {response.text[:500]}"
        )
    return elapsed


def download(
    server: servers.Server, path: str, size: int, digest: str | None = None
) -> float:
    """Seconds to read the whole file through its download link.

    With ``digest``, the bytes are hashed and must match. The timed downloads
    read into one buffer with http.client and only count the bytes: a
    browser sits on another machine, so the client here should take as
    little of this machine's CPU from the server as it can.
    """
    if digest is not None:
        sha = hashlib.sha256()
        with server.session.get(f"{server.url}{path}", stream=True, timeout=600) as r:
            for piece in r.iter_content(PIECE):
                sha.update(piece)
        if r.status_code != 200 or sha.hexdigest() != digest:
            raise servers.BenchError(f"{server.name} download: wrong bytes")
    host, port = server.url.removeprefix("http://").split(":")
    cookies = "; ".join(f"{c.name}={c.value}" for c in server.session.cookies)
    connection = http.client.HTTPConnection(host, int(port), timeout=600)
    buffer, received = bytearray(PIECE), 0
    try:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookies})
        answer = connection.getresponse()
        while count := answer.readinto(buffer):
            received += count
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    if answer.status != 200 or received != size:
        raise servers.BenchError(
            f"{server.name} download: {answer.status}, {received} bytes"
        )
    return elapsed


def delete(server: servers.Server, path: str) -> None:
    page = path.replace("/download/", "/delete/")
    answer = server.session.post(
        f"{server.url}{page}",
        data={"csrfmiddlewaretoken": _token(server, page)},
        allow_redirects=False,
        timeout=120,
    )
    if answer.status_code != 302:
        raise servers.BenchError(f"{server.name} delete: {answer.status_code}")


def _link(server: servers.Server, project: str, name: str) -> str:
    page = server.session.get(f"{server.url}{project}", timeout=30).text
    found = re.search(DOWNLOAD_LINK.format(name=re.escape(name)), page)
    if found is None:
        raise servers.BenchError(f"{server.name}: {name} not listed after upload")
    return found.group(1)


def _project_path(server: servers.Server) -> str:
    page = server.session.get(f"{server.url}/projects/", timeout=30).text
    found = re.search(r'href="(/projects/[0-9a-f-]{36}/)"', page)
    if found is None:
        raise servers.BenchError(f"{server.name}: no project listed")
    return found.group(1)


def measure(backend: str, env: dict, size: int, rounds: int) -> dict:
    """Timings per operation and mode on one storage backend."""
    with tempfile.TemporaryDirectory(prefix="kreo-bench-enc-") as folder:
        var_dir = Path(folder)
        seed = servers.seed_site(var_dir)
        running = {}
        try:
            for mode, settings_module in MODES.items():
                running[mode] = servers.start_server(
                    f"{backend}-{mode}", var_dir, settings_module, **env
                )
                servers.login(running[mode], seed)
            project = _project_path(running["encrypted"])
            content = pdf_body(size)
            digest = hashlib.sha256(content).hexdigest()
            times = {f"{m}_{op}": [] for m in MODES for op in ("up", "down")}
            names = list(running)
            for number in range(-1, rounds):  # one unrecorded warm-up round
                shift = number % len(names)
                for mode in names[shift:] + names[:shift]:
                    server = running[mode]
                    name = f"{mode}-{number + 1}.pdf"
                    up = upload(server, project, name, content)
                    path = _link(server, project, name)
                    download(server, path, size, digest)  # the right bytes
                    downs = [download(server, path, size) for _ in range(DOWNLOADS)]
                    delete(server, path)
                    if number >= 0:
                        times[f"{mode}_up"].append(up)
                        times[f"{mode}_down"].extend(downs)
        finally:
            for server in running.values():
                server.stop()
    return times


def _rows(backend: str, size: int, times: dict) -> list[dict]:
    rows = []
    mb = size / 10**6
    for op, label in (("up", "upload"), ("down", "download")):
        plain = mb / statistics.median(times[f"plain_{op}"])
        encrypted = mb / statistics.median(times[f"encrypted_{op}"])
        ratio = encrypted / plain
        rows.append(
            {
                "case": f"{backend} {label} ({STORAGE[backend]})",
                "size_mb": round(mb),
                "rounds": len(times[f"plain_{op}"]),
                "plain_MBps": round(plain, 1),
                "encrypted_MBps": round(encrypted, 1),
                "encrypted/plain": round(ratio, 3),
                "budget": f">= {BUDGET:.2f}",
                "verdict": "PASS" if ratio >= BUDGET else "OVER",
            }
        )
    return rows


def cipher_rows(size: int) -> list[dict]:
    """Information: the cipher alone, in memory, with no storage or HTTP."""
    from projects import crypto

    key, file_id = os.urandom(32), uuid.uuid4()
    content = os.urandom(size)

    def pieces():
        view = memoryview(content)
        for offset in range(0, size, crypto.CHUNK):
            yield view[offset : offset + crypto.CHUNK]

    sealed = b"".join(crypto.encrypt_chunks(key, file_id, pieces()))

    def stored():
        return io.BytesIO(sealed)

    seal = min(
        _timed(lambda: sum(map(len, crypto.encrypt_chunks(key, file_id, pieces()))))
        for _ in range(3)
    )
    opened = min(
        _timed(lambda: sum(map(len, crypto.decrypt_chunks(key, file_id, stored()))))
        for _ in range(3)
    )
    mb = size / 10**6
    return [
        {
            "case": f"cipher alone: {label} (information)",
            "size_mb": round(mb),
            "encrypted_MBps": round(mb / took, 1),
        }
        for label, took in (("seal", seal), ("open", opened))
    ]


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def run(options) -> list[dict]:
    import boto3
    import services

    size = int(os.environ.get("BENCH_ENCRYPTION_MB", "100")) * 10**6
    rounds = int(os.environ.get("BENCH_ENCRYPTION_ROUNDS", "5"))
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
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        )
        s3 = {
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": "eu-west-2",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # nosec B105 - moto
        }
        for backend, env in (("disk", {}), ("s3", s3)):
            rows.extend(_rows(backend, size, measure(backend, env, size, rounds)))
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    rows.extend(cipher_rows(size))
    return rows
