"""kreo/sealed.py against bare AES-256-GCM over the same chunks, in memory.

Budget (issue #12): sealing and opening through ``kreo.sealed`` keep at least
90% of the throughput of the bare cipher (``AESGCM.encrypt``/``decrypt`` over
the same chunk size, same key, no framing) measured in the same run. Both
chunk sizes the app uses: 64 KiB (project files, exports) and 1 MiB
(backups, audit archives). BENCH_SEALED_MB sets the object size (default
256 MiB), BENCH_SEALED_ROUNDS the rounds (default 9; the fastest round
of each side counts: the least disturbed by whatever else the machine runs).
"""

from __future__ import annotations

import os
import time

TITLE = "sealed-object format vs bare AES-256-GCM, in memory"
BUDGET = 0.90


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _measure(size: int, chunk: int, rounds: int) -> dict[str, list[float]]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kreo import sealed

    key = os.urandom(32)
    content = os.urandom(size)
    view = memoryview(content)
    pieces = [bytes(view[i : i + chunk]) for i in range(0, size, chunk)]
    aead = AESGCM(key)
    nonce, aad = os.urandom(12), os.urandom(60)
    bare_sealed = [aead.encrypt(nonce, piece, aad) for piece in pieces]
    blob = b"".join(sealed.seal_stream(key, pieces, context=b"b", chunk_size=chunk))
    # The reader is handed what storage hands it: pieces of one sealed chunk.
    step = chunk + sealed.TAG
    stored = [blob[: sealed.HEADER]] + [
        blob[i : i + step] for i in range(sealed.HEADER, len(blob), step)
    ]
    work = {
        "bare_seal": lambda: sum(len(aead.encrypt(nonce, p, aad)) for p in pieces),
        "sealed_seal": lambda: sum(
            map(len, sealed.seal_stream(key, pieces, context=b"b", chunk_size=chunk))
        ),
        "bare_open": lambda: sum(len(aead.decrypt(nonce, c, aad)) for c in bare_sealed),
        "sealed_open": lambda: sum(
            map(len, sealed.open_stream(key, stored, context=b"b"))
        ),
    }
    # Each side keeps one chunk at a time, as a stream to storage does.
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        # Interleaved, so a busy moment of the machine falls on both sides.
        for name, job in work.items():
            times[name].append(_timed(job))
    return times


def run(options) -> list[dict]:
    from kreo import sealed

    size = int(os.environ.get("BENCH_SEALED_MB", "256")) * 2**20
    rounds = int(os.environ.get("BENCH_SEALED_ROUNDS", "9"))
    rows = []
    for chunk, use in ((sealed.FILE_CHUNK, "files"), (sealed.BULK_CHUNK, "bulk")):
        times = _measure(size, chunk, rounds)
        mb = size / 2**20
        for op in ("seal", "open"):
            bare = mb / min(times[f"bare_{op}"])
            framed = mb / min(times[f"sealed_{op}"])
            ratio = framed / bare
            rows.append(
                {
                    "case": f"{op}, {chunk // 1024} KiB chunks ({use})",
                    "size_MiB": round(mb),
                    "rounds": rounds,
                    "bare_MiBps": round(bare, 1),
                    "sealed_MiBps": round(framed, 1),
                    "sealed/bare": round(ratio, 3),
                    "budget": f">= {BUDGET:.2f}",
                    "verdict": "PASS" if ratio >= BUDGET else "OVER",
                }
            )
    return rows
