"""Streaming authenticated encryption of project files (format ``KREOF1``).

A stored file is a header, then chunks of AES-256-GCM under the project's
data key::

    header  = MAGIC (8) | nonce prefix (8, random per file)
    chunk i = AES-256-GCM(plaintext[i*64 KiB:(i+1)*64 KiB]) with its 16-byte tag
    nonce   = nonce prefix | i (4 bytes, big-endian)
    AAD     = header | file id (16) | i (8 bytes) | final flag (1 byte)

The AAD binds every chunk to its file, its position and whether it is the
last one, so a chunk swapped in from another file, reordered, dropped, or a
file cut at a chunk boundary fails authentication. Both directions read one
chunk ahead to know which chunk is final, and hand the cipher a batch of 16
chunks at a time on a worker thread, a batch ahead of the caller
(``_ahead``). AES-GCM releases the GIL, so it runs while this thread waits
on storage or the client's socket: on S3, downloads went from about 0.8 to
0.87-0.95 of plain throughput (bench/bench_encryption.py). Where the
machine's cores are already busy (local disk, client on the same host) the
thread neither helps nor hurts; in memory alone the GIL hand-offs cost more
than they save. A stream holds about three batches (3 MiB) at most, as
separate 64 KiB strings (small allocations, no page faults on fresh
buffers).
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kreo.streams import IterReader

MAGIC = b"KREOF1\x00\x00"
PREFIX = 8
HEADER = len(MAGIC) + PREFIX
CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
# Chunks sealed or opened per step on the worker thread (1 MiB of plaintext).
BATCH = 16
MAX_CHUNKS = 2**32

TAMPERED = "The stored file failed authentication at chunk {index}: it was altered."
TRUNCATED = "The stored file is truncated: its final chunk is missing."
NOT_ENCRYPTED = "The stored object is not a Kreo encrypted file (bad header)."


T = TypeVar("T")


class FileIntegrityError(Exception):
    """The stored ciphertext does not authenticate; the message says where."""


def sealed_size(size: int) -> int:
    """Bytes in storage for ``size`` bytes of plaintext."""
    chunks = max(1, -(-size // CHUNK))
    return HEADER + size + chunks * TAG


def _aad(header: bytes, file_id: uuid.UUID, index: int, final: bool) -> bytes:
    return header + file_id.bytes + struct.pack(">QB", index, 1 if final else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    if index >= MAX_CHUNKS:
        raise ValueError("file too large for one nonce prefix")
    return prefix + struct.pack(">I", index)


def _ahead(jobs: Iterable[Callable[[], T]]) -> Iterator[T]:
    """Run each job one step ahead of the consumer; results come in order.

    The cipher releases the GIL, so while the worker thread seals or opens
    one batch, this thread reads the next from storage and hands the last
    one on (to storage, or to the client's socket). A stream of one batch
    runs inline: no thread for small files.
    """
    jobs = iter(jobs)
    first = next(jobs, None)
    if first is None:
        return
    second = next(jobs, None)
    if second is None:
        yield first()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kreo-crypto") as pool:
        pending = pool.submit(first)
        for job in itertools.chain([second], jobs):
            following = pool.submit(job)
            yield pending.result()
            pending = following
        yield pending.result()


def _plain_chunks(source: Iterable[bytes]) -> Iterator[bytes]:
    """The bytes of ``source`` as CHUNK-sized pieces, the last one shorter.

    Immutable pieces that already are one chunk (an upload read CHUNK at a
    time) pass through without a copy; anything else is copied, since the
    worker thread seals it later and its producer may reuse a buffer.
    """
    held = bytearray()
    for piece in source:
        if not held and isinstance(piece, bytes) and len(piece) == CHUNK:
            yield piece
            continue
        held += piece
        while len(held) >= CHUNK:
            yield bytes(held[:CHUNK])
            del held[:CHUNK]
    if held:
        yield bytes(held)


def _batches(source: Iterable[bytes]) -> Iterator[tuple[list[bytes], bool]]:
    """Plaintext chunks, BATCH at a time, with whether the batch is the last.

    Reads one chunk ahead, so the final chunk is known as such; an empty
    source is one empty chunk.
    """
    chunks = _plain_chunks(source)
    batch: list[bytes] = [next(chunks, b"")]
    for chunk in chunks:
        if len(batch) == BATCH:
            yield batch, False
            batch = []
        batch.append(chunk)
    yield batch, True


def encrypt_chunks(
    key: bytes, file_id: uuid.UUID, source: Iterable[bytes]
) -> Iterator[bytes | memoryview]:
    """Yield the sealed form of the plaintext chunks ``source`` (any sizes).

    The header, then one read-only-by-convention buffer per batch.
    """
    aead = AESGCM(key)
    prefix = os.urandom(PREFIX)
    header = MAGIC + prefix
    yield header

    def seal(chunks: list[bytes], start: int, last: bool) -> list[bytes]:
        final = len(chunks) - 1
        return [
            aead.encrypt(
                _nonce(prefix, start + n),
                chunk,
                _aad(header, file_id, start + n, last and n == final),
            )
            for n, chunk in enumerate(chunks)
        ]

    def jobs() -> Iterator[Callable[[], list[bytes]]]:
        start = 0
        for chunks, last in _batches(source):
            yield functools.partial(seal, chunks, start, last)
            start += len(chunks)

    for sealed in _ahead(jobs()):
        yield from sealed


def _exact_reader(source) -> Callable[[int], bytes]:
    """``read(n)``: exactly n bytes unless the source ends first."""
    if hasattr(source, "read"):

        def read(size: int) -> bytes:
            data = source.read(size)
            if len(data) in (0, size):
                return data
            parts = [data]
            left = size - len(data)
            while left:
                more = source.read(left)
                if not more:
                    break
                parts.append(more)
                left -= len(more)
            return b"".join(parts)

        return read
    stream = iter(source)
    buffer = bytearray()

    def read_iter(size: int) -> bytes:
        while len(buffer) < size:
            piece = next(stream, None)
            if piece is None:
                break  # the end; an empty piece before it is just skipped
            buffer.extend(piece)
        out = bytes(buffer[:size])
        del buffer[:size]
        return out

    return read_iter


def decrypt_chunks(key: bytes, file_id: uuid.UUID, source) -> Iterator[bytes]:
    """Yield plaintext chunk by chunk, each only after its tag has verified.

    ``source`` is a binary file object or an iterable of byte strings. Raises
    FileIntegrityError at the first chunk that does not authenticate;
    nothing of that chunk, or after it, is yielded. Chunks are read and
    opened BATCH at a time, the next batch opened while this one is yielded.
    """
    aead = AESGCM(key)
    read = _exact_reader(source)
    header = read(HEADER)
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise FileIntegrityError(NOT_ENCRYPTED)
    prefix = header[len(MAGIC) :]

    def open_(sealed_chunks: list[bytes], start: int, last: bool):
        """(plaintexts, error): the chunks that verified, then the failure."""
        plains: list[bytes] = []
        final_n = len(sealed_chunks) - 1
        for n, sealed in enumerate(sealed_chunks):
            index, final = start + n, last and n == final_n
            if len(sealed) < TAG:
                return plains, FileIntegrityError(TRUNCATED)
            nonce = _nonce(prefix, index)
            try:
                plains.append(
                    aead.decrypt(nonce, sealed, _aad(header, file_id, index, final))
                )
            except InvalidTag:
                cut = final and _opens(aead, nonce, sealed, header, file_id, index)
                return plains, FileIntegrityError(
                    TRUNCATED if cut else TAMPERED.format(index=index)
                )
        return plains, None

    def jobs():
        """Batches of sealed chunks, reading one chunk ahead to find the last."""
        start, batch = 0, [read(SEALED_CHUNK)]
        while True:
            current = batch[-1]
            following = read(SEALED_CHUNK) if len(current) == SEALED_CHUNK else b""
            if not following:
                yield functools.partial(open_, batch, start, True)
                return
            if len(batch) == BATCH:
                yield functools.partial(open_, batch, start, False)
                start, batch = start + BATCH, []
            batch.append(following)

    for plains, error in _ahead(jobs()):
        yield from plains
        if error is not None:
            raise error


def _opens(aead, nonce, sealed, header, file_id, index) -> bool:
    """Whether ``sealed`` is a genuine non-final chunk (the file was cut after it)."""
    try:
        aead.decrypt(nonce, sealed, _aad(header, file_id, index, False))
    except InvalidTag:
        return False
    return True


def reader(chunks: Iterable[bytes]) -> BinaryIO:
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)
