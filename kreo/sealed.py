"""Kreo's one sealed-object format (``KREOSEAL`` version 1): streaming
authenticated encryption for project files, backup artifacts, audit archives
and data exports.

It is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015)
over AES-256-GCM, with a per-object key derived by HKDF-SHA256 from the
named key and a random salt. docs/FORMATS.md gives every byte, with test
vectors that kreo/tests/test_sealed.py checks; tools/kreo_open.py opens the
format with nothing but ``cryptography``.

Layout (all integers big-endian)::

    header  = "KREOSEAL" (8) | version 0x01 (1) | chunk size (4)
              | key id (8) | salt (32)                          53 bytes
    key id  = HMAC-SHA256(key, "kreo-sealed-key-id")[:8]
    okm     = HKDF-SHA256(ikm=key, salt=salt, info="kreo-sealed-v1", L=39)
    object key = okm[:32]; nonce prefix = okm[32:39]
    chunk i = AES-256-GCM(object key, nonce_i, plaintext_i, aad)  (+16-byte tag)
    nonce_i = nonce prefix (7) | i (4) | final flag (1: 0x01 last, else 0x00)
    aad     = header | context

Each plaintext chunk is ``chunk size`` bytes but the last, which is shorter
or equal and carries the final flag; an empty object is one empty final
chunk (its tag alone). The caller's ``context`` (a file's id, a backup
artifact's set and name, an archive's object key) is not stored: it binds
the object to where it belongs, so an object moved or copied elsewhere does
not open. The header in the associated data binds chunk size, key id and
salt. Together: a chunk altered, reordered, dropped, swapped in from
another object, an object cut at a chunk boundary or extended past its
final chunk, a wrong key or a wrong context each fail with ``SealedError``
naming the object and the chunk.

Both directions stream with memory flat in the object's size: the writer
holds at most one chunk, the reader one sealed chunk and the one after it
(to know which chunk is final without decrypting twice).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"KREOSEAL"
VERSION = 1
KEY_ID = 8
SALT = 32
HEADER = len(MAGIC) + 1 + 4 + KEY_ID + SALT  # 53
TAG = 16
NONCE_PREFIX = 7
KDF_INFO = b"kreo-sealed-v1"
KEY_ID_INFO = b"kreo-sealed-key-id"
MIN_CHUNK = 1024
MAX_CHUNK = 16 * 1024 * 1024
MAX_CHUNKS = 2**32
_COUNTER = struct.Struct(">IB").pack  # big-endian chunk counter, final flag
# Project files (64 KiB: a range read opens little more than it needs) and
# bulk objects (backups, archives, exports: 1 MiB).
FILE_CHUNK = 64 * 1024
BULK_CHUNK = 1024 * 1024

NOT_SEALED = "{name}: not a Kreo sealed object (its first bytes are not KREOSEAL)."
UNKNOWN_VERSION = "{name}: sealed format version {version} is unknown to this reader."
BAD_HEADER = "{name}: the sealed header is cut short or its chunk size is invalid."
WRONG_KEY = (
    "{name}: sealed under another key (key id {found}, this key's is {expected})."
)
TAMPERED = (
    "{name}: chunk {index} failed authentication: altered, cut short, moved "
    "from another object, or opened with the wrong context."
)
TRUNCATED = "{name}: truncated after chunk {index}: the final chunk is missing."
TRAILING = "{name}: data after the final chunk {index}."
TOO_LARGE = "{name}: more than 2**32 chunks in one object."


class SealedError(Exception):
    """A sealed object cannot be opened; the message names it and the chunk."""


def key_id(key: bytes) -> bytes:
    """The 8 bytes that name ``key`` in a header without revealing it."""
    return hmac.new(key, KEY_ID_INFO, hashlib.sha256).digest()[:KEY_ID]


@dataclass(frozen=True)
class Header:
    version: int
    chunk_size: int
    key_id: bytes
    salt: bytes
    raw: bytes


def is_sealed(head: bytes) -> bool:
    """Whether ``head`` (an object's first bytes) starts a sealed object."""
    return head[: len(MAGIC)] == MAGIC


def parse_header(raw: bytes, name: str = "object") -> Header:
    if not is_sealed(raw):
        raise SealedError(NOT_SEALED.format(name=name))
    if len(raw) < len(MAGIC) + 1:
        raise SealedError(BAD_HEADER.format(name=name))
    version = raw[len(MAGIC)]
    if version != VERSION:
        raise SealedError(UNKNOWN_VERSION.format(name=name, version=version))
    if len(raw) < HEADER:
        raise SealedError(BAD_HEADER.format(name=name))
    (chunk_size,) = struct.unpack(">I", raw[9:13])
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise SealedError(BAD_HEADER.format(name=name))
    return Header(version, chunk_size, raw[13:21], raw[21:HEADER], raw[:HEADER])


def sealed_size(size: int, chunk_size: int = FILE_CHUNK) -> int:
    """Bytes a sealed object of ``size`` plaintext bytes takes."""
    chunks = max(1, -(-size // chunk_size))
    return HEADER + size + chunks * TAG


class _Cipher:
    """One object's derived key, nonce prefix and associated data."""

    def __init__(self, key: bytes, header: bytes, salt: bytes, context: bytes):
        if len(key) != 32:
            raise ValueError("a sealing key is 32 bytes")
        okm = HKDF(
            algorithm=hashes.SHA256(),
            length=32 + NONCE_PREFIX,
            salt=salt,
            info=KDF_INFO,
        ).derive(key)
        self.aead = AESGCM(okm[:32])
        self.prefix = okm[32:]
        self.aad = header + bytes(context)
        # Bound once: per chunk, the calls around the cipher are what the
        # framing costs over bare AES-GCM (bench/bench_sealed.py).
        self._encrypt, self._decrypt = self.aead.encrypt, self.aead.decrypt

    def nonce(self, index: int, final: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise SealedError(TOO_LARGE.format(name="object"))
        return self.prefix + _COUNTER(index, 1 if final else 0)

    def seal(self, index: int, data: bytes, final: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise SealedError(TOO_LARGE.format(name="object"))
        return self._encrypt(self.prefix + _COUNTER(index, final), data, self.aad)

    def open(self, index: int, data: bytes, final: bool) -> bytes:
        if index >= MAX_CHUNKS:
            raise SealedError(TOO_LARGE.format(name="object"))
        return self._decrypt(self.prefix + _COUNTER(index, final), data, self.aad)


class Sealer:
    """Seal one object chunk by chunk: ``header``, then ``seal(i, data, final)``.

    For callers that schedule chunks themselves (project files seal batches
    on a worker thread); ``seal_stream`` and ``SealingWriter`` are the usual
    entries.
    """

    def __init__(
        self,
        key: bytes,
        context: bytes,
        *,
        chunk_size: int = FILE_CHUNK,
        salt: bytes | None = None,
    ):
        if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk size {chunk_size} out of range")
        salt = os.urandom(SALT) if salt is None else salt
        if len(salt) != SALT:
            raise ValueError("a salt is 32 bytes")
        self.chunk_size = chunk_size
        self.header = (
            MAGIC
            + bytes([VERSION])
            + struct.pack(">I", chunk_size)
            + key_id(key)
            + salt
        )
        self._cipher = _Cipher(key, self.header, salt, context)
        self.seal = self._cipher.seal


class Opener:
    """Open one object chunk by chunk, given its header."""

    def __init__(self, key: bytes, header: bytes, context: bytes, name: str = "object"):
        self.name = name
        self.info = parse_header(header, name)
        expected = key_id(key)
        if not hmac.compare_digest(self.info.key_id, expected):
            raise SealedError(
                WRONG_KEY.format(
                    name=name, found=self.info.key_id.hex(), expected=expected.hex()
                )
            )
        self.chunk_size = self.info.chunk_size
        self._cipher = _Cipher(key, self.info.raw, self.info.salt, context)

        self.open_chunk = self._cipher.open

    def open(self, index: int, data: bytes, final: bool) -> bytes:
        try:
            return self.open_chunk(index, data, final)
        except InvalidTag:
            raise SealedError(TAMPERED.format(name=self.name, index=index)) from None

    def authentic(self, index: int, data: bytes, final: bool) -> bool:
        try:
            self._cipher.open(index, data, final)
        except InvalidTag:
            return False
        return True


def _pieces(source: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``source`` re-cut into ``size``-byte pieces, the last one shorter."""
    held = bytearray()
    for piece in source:
        if not held and isinstance(piece, bytes) and len(piece) == size:
            yield piece
            continue
        held += piece
        while len(held) >= size:
            yield bytes(held[:size])
            del held[:size]
    if held:
        yield bytes(held)


def seal_stream(
    key: bytes,
    source: Iterable[bytes],
    *,
    context: bytes,
    chunk_size: int = FILE_CHUNK,
    salt: bytes | None = None,
) -> Iterator[bytes]:
    """The sealed object for the plaintext pieces ``source`` (any sizes):
    the header, then one sealed chunk at a time. ``salt`` is for test
    vectors only; leave it out."""
    sealer = Sealer(key, context, chunk_size=chunk_size, salt=salt)
    yield sealer.header
    chunks = _pieces(source, chunk_size)
    current = next(chunks, b"")
    index = 0
    # The cipher call inlined (what Sealer.seal does): per chunk, a Python
    # frame is a measurable share of AES-GCM's time at 64 KiB.
    cipher = sealer._cipher
    encrypt, prefix, aad, counter = cipher._encrypt, cipher.prefix, cipher.aad, _COUNTER
    for following in chunks:
        if index >= MAX_CHUNKS:
            raise SealedError(TOO_LARGE.format(name="object"))
        yield encrypt(prefix + counter(index, 0), current, aad)
        index += 1
        current = following
    yield sealer.seal(index, current, True)


def reader(source: BinaryIO | Iterable[bytes]) -> Callable[[int], bytes]:
    """``read(n)`` over a file object or an iterable of byte strings: exactly
    ``n`` bytes, fewer only where the source ends."""
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

    pieces = iter(source)
    current, position = b"", 0

    def read_iter(size: int) -> bytes:
        # No copy where a piece is exactly what was asked (storage handing
        # over one sealed chunk at a time): the copy would cost as much as
        # the cipher.
        nonlocal current, position
        parts, wanted = [], size
        while wanted:
            if position == len(current):
                piece = next(pieces, None)
                if piece is None:
                    break
                current, position = bytes(piece), 0
                if not parts and len(current) == wanted:
                    position = wanted
                    return current
            take = current[position : position + wanted]
            position += len(take)
            wanted -= len(take)
            parts.append(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    return read_iter


def open_stream(
    key: bytes,
    source: BinaryIO | Iterable[bytes],
    *,
    context: bytes,
    name: str = "object",
) -> Iterator[bytes]:
    """The plaintext of the sealed object ``source``, one chunk at a time.

    Raises ``SealedError`` at the first chunk that does not authenticate, or
    at the end when the final chunk is missing or followed by more bytes:
    a caller writing the plaintext somewhere must treat what it wrote as
    void on that error (write to a temporary name, rename on success).
    """
    read = reader(source)
    head = read(HEADER)
    opener = Opener(key, head, context, name)
    whole = opener.chunk_size + TAG
    current = read(whole)
    index = 0
    cipher = opener._cipher
    decrypt, prefix, aad, counter = cipher._decrypt, cipher.prefix, cipher.aad, _COUNTER
    while True:
        if len(current) < TAG:
            raise SealedError(TRUNCATED.format(name=name, index=index - 1))
        if index >= MAX_CHUNKS:
            raise SealedError(TOO_LARGE.format(name=name))
        following = read(whole) if len(current) == whole else b""
        final = not following
        try:
            # Opener.open inlined, as in seal_stream.
            plain = decrypt(prefix + counter(index, final), current, aad)
        except InvalidTag:
            # Only on the error path: say whether the object was cut at a
            # chunk boundary or extended past its end, rather than altered.
            if opener.authentic(index, current, not final):
                raise SealedError(
                    (TRUNCATED if final else TRAILING).format(name=name, index=index)
                ) from None
            raise SealedError(TAMPERED.format(name=name, index=index)) from None
        yield plain
        if final:
            return
        index += 1
        current = following


def open_bytes(
    key: bytes, sealed: bytes, *, context: bytes, name: str = "object"
) -> bytes:
    return b"".join(open_stream(key, [sealed], context=context, name=name))


def seal_bytes(
    key: bytes, plain: bytes, *, context: bytes, chunk_size: int = FILE_CHUNK
) -> bytes:
    return b"".join(seal_stream(key, [plain], context=context, chunk_size=chunk_size))


class SealingWriter:
    """A write-only file object that seals what is written into ``sink``.

    For producers that write (``pg_dump`` output, archive lines): holds at
    most one chunk, so the last one can be sealed as final on ``close()``.
    ``close()`` must be called for the object to be whole; a writer dropped
    without it leaves an object that fails as truncated, never a short one
    that opens.
    """

    def __init__(
        self,
        sink: BinaryIO,
        key: bytes,
        *,
        context: bytes,
        chunk_size: int = BULK_CHUNK,
    ):
        self.sink = sink
        self._sealer = Sealer(key, context, chunk_size=chunk_size)
        self._held = bytearray()
        self._index = 0
        self.closed = False
        self.plain_size = 0
        sink.write(self._sealer.header)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed SealingWriter")
        size = self._sealer.chunk_size
        self._held += data
        self.plain_size += len(data)
        # Keep the last (possibly full) chunk: it may be the final one.
        while len(self._held) > size:
            self.sink.write(
                self._sealer.seal(self._index, bytes(self._held[:size]), False)
            )
            del self._held[:size]
            self._index += 1
        return len(data)

    def flush(self) -> None:
        if hasattr(self.sink, "flush"):
            self.sink.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.sink.write(self._sealer.seal(self._index, bytes(self._held), True))
        self._held.clear()
        self.closed = True
        self.flush()

    def __enter__(self) -> SealingWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
