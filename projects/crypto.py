"""Streaming authenticated encryption of project files and data exports.

New objects are ``KREOSEAL`` (``kreo/sealed.py``, docs/FORMATS.md §1): the
context is the file's UUID (16 raw bytes) or ``kreo-export/<export id>``,
the chunk 64 KiB, the key the project's data key (an export's: derived
from its link token). Objects written before it are ``KREOF1``
(docs/FORMATS.md §6), read by the decoder here and never written again;
``decrypt_chunks`` chooses by the first eight bytes, so everything already
stored still opens until ``storage_reseal`` (``projects.reseal``) has moved
it over.

Both directions hand the cipher a batch of 16 chunks (1 MiB of plaintext)
at a time on a worker thread, a batch ahead of the caller (``_ahead``),
built on ``sealed.Sealer``/``sealed.Opener``. AES-GCM releases the GIL, so
it runs while this thread waits on storage or the client's socket: on S3,
downloads went from about 0.8 to 0.87-0.95 of plain throughput
(bench/bench_encryption.py). Where the machine's cores are already busy
(local disk, client on the same host) the thread neither helps nor hurts;
in memory alone the GIL hand-offs cost more than they save. A stream holds
about three batches (3 MiB) at most, as separate 64 KiB strings. The
reader reads one chunk ahead to know which chunk is final.
"""

from __future__ import annotations

import functools
import io
import itertools
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kreo import sealed
from kreo.streams import IterReader

CHUNK = sealed.FILE_CHUNK
TAG = sealed.TAG
SEALED_CHUNK = CHUNK + TAG
HEADER = sealed.HEADER
MAGIC = sealed.MAGIC
# Chunks sealed or opened per step on the worker thread (1 MiB of plaintext).
BATCH = 16

# The old format, read only (docs/FORMATS.md §6).
LEGACY_MAGIC = b"KREOF1\x00\x00"
LEGACY_PREFIX = 8
LEGACY_HEADER = len(LEGACY_MAGIC) + LEGACY_PREFIX

NOT_ENCRYPTED = "{name}: not a Kreo encrypted object (neither KREOSEAL nor KREOF1)."

T = TypeVar("T")


class FileIntegrityError(Exception):
    """The stored ciphertext does not authenticate; the message says where."""


def sealed_size(size: int) -> int:
    """Bytes in storage for ``size`` bytes of plaintext."""
    return sealed.sealed_size(size, CHUNK)


def file_context(file_id: uuid.UUID) -> bytes:
    return uuid.UUID(str(file_id)).bytes


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
    key: bytes,
    file_id: uuid.UUID,
    source: Iterable[bytes],
    *,
    context: bytes | None = None,
) -> Iterator[bytes]:
    """Yield the ``KREOSEAL`` object for the plaintext pieces ``source``
    (any sizes): the header, then the sealed chunks.

    ``context`` defaults to the file's id; a data export gives its own.
    """
    sealer = sealed.Sealer(
        key, file_context(file_id) if context is None else context, chunk_size=CHUNK
    )
    yield sealer.header

    def seal(chunks: list[bytes], start: int, last: bool) -> list[bytes]:
        final = len(chunks) - 1
        return [
            sealer.seal(start + n, chunk, last and n == final)
            for n, chunk in enumerate(chunks)
        ]

    def jobs() -> Iterator[Callable[[], list[bytes]]]:
        start = 0
        for chunks, last in _batches(source):
            yield functools.partial(seal, chunks, start, last)
            start += len(chunks)

    for batch in _ahead(jobs()):
        yield from batch


class _LegacyOpener:
    """``KREOF1``: AES-256-GCM under the data key itself; nonce = the
    header's random prefix | uint32(i); AAD = header | file id | uint64(i)
    | final flag (docs/FORMATS.md §6)."""

    def __init__(self, key: bytes, header: bytes, file_id: uuid.UUID, name: str):
        self.name = name
        self._aead = AESGCM(key)
        self._header = header
        self._prefix = header[len(LEGACY_MAGIC) :]
        self._file = file_context(file_id)

    def _open(self, index: int, data: bytes, final: bool) -> bytes:
        if index >= sealed.MAX_CHUNKS:
            raise FileIntegrityError(sealed.TOO_LARGE.format(name=self.name))
        nonce = self._prefix + struct.pack(">I", index)
        aad = self._header + self._file + struct.pack(">QB", index, int(final))
        return self._aead.decrypt(nonce, data, aad)

    def open(self, index: int, data: bytes, final: bool) -> bytes:
        try:
            return self._open(index, data, final)
        except InvalidTag:
            raise sealed.SealedError(
                sealed.TAMPERED.format(name=self.name, index=index)
            ) from None

    def authentic(self, index: int, data: bytes, final: bool) -> bool:
        try:
            self._open(index, data, final)
        except InvalidTag:
            return False
        return True


def _opener(key, read, file_id, context, name):
    """The opener for the object ``read`` reads, chosen by its magic bytes."""
    head = read(len(MAGIC))
    if sealed.is_sealed(head):
        header = head + read(HEADER - len(head))
        if context is None:
            context = file_context(file_id)
        return sealed.Opener(key, header, context, name)
    if head == LEGACY_MAGIC:
        header = head + read(LEGACY_PREFIX)
        if len(header) < LEGACY_HEADER:
            raise FileIntegrityError(sealed.BAD_HEADER.format(name=name))
        return _LegacyOpener(key, header, file_id, name)
    raise FileIntegrityError(NOT_ENCRYPTED.format(name=name))


def decrypt_chunks(
    key: bytes,
    file_id: uuid.UUID,
    source: BinaryIO | Iterable[bytes],
    *,
    context: bytes | None = None,
    name: str | None = None,
) -> Iterator[bytes]:
    """Yield plaintext chunk by chunk, each only after its tag has verified.

    ``source`` is a binary file object or an iterable of byte strings, a
    ``KREOSEAL`` object (opened with ``context``, by default the file's id)
    or a ``KREOF1`` one (bound to ``file_id``). Raises FileIntegrityError,
    naming the object and the chunk, at the first chunk that does not
    authenticate, at a missing final chunk or at bytes after it; nothing of
    that chunk, or after it, is yielded. Chunks are read and opened BATCH
    at a time, the next batch opened while this one is yielded.
    """
    name = name or f"file {file_id}"
    read = sealed.reader(source)
    try:
        opener = _opener(key, read, file_id, context, name)
    except sealed.SealedError as exc:
        raise FileIntegrityError(str(exc)) from None
    chunk_size = getattr(opener, "chunk_size", CHUNK)
    whole = chunk_size + TAG
    batch_size = max(1, BATCH * CHUNK // chunk_size)  # about 1 MiB a batch

    def open_(chunks: list[bytes], start: int, last: bool):
        """(plaintexts, error): the chunks that verified, then the failure."""
        plains: list[bytes] = []
        final_n = len(chunks) - 1
        for n, data in enumerate(chunks):
            index, final = start + n, last and n == final_n
            if len(data) < TAG:
                return plains, FileIntegrityError(
                    sealed.TRUNCATED.format(name=name, index=index - 1)
                )
            try:
                plains.append(opener.open(index, data, final))
            except sealed.SealedError as exc:
                message = str(exc)
                # Only on the error path: cut at a chunk boundary, or
                # extended past its end, rather than altered?
                if opener.authentic(index, data, not final):
                    template = sealed.TRUNCATED if final else sealed.TRAILING
                    message = template.format(name=name, index=index)
                return plains, FileIntegrityError(message)
        return plains, None

    def jobs():
        """Batches of sealed chunks, reading one chunk ahead to find the last."""
        start, batch = 0, [read(whole)]
        while True:
            current = batch[-1]
            following = read(whole) if len(current) == whole else b""
            if not following:
                yield functools.partial(open_, batch, start, True)
                return
            if len(batch) == batch_size:
                yield functools.partial(open_, batch, start, False)
                start, batch = start + batch_size, []
            batch.append(following)

    for plains, error in _ahead(jobs()):
        yield from plains
        if error is not None:
            raise error


def is_current(head: bytes) -> bool:
    """Whether an object starting with ``head`` is in the format written now."""
    return sealed.is_sealed(head)


def reader(chunks: Iterable[bytes]) -> BinaryIO:
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)
