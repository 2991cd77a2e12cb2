"""Streaming authenticated encryption of project files (format ``KREOF1``).

A stored file is a header, then chunks of AES-256-GCM under the project's
data key::

    header  = MAGIC (8) | nonce prefix (8, random per file)
    chunk i = AES-256-GCM(plaintext[i*64 KiB:(i+1)*64 KiB]) with its 16-byte tag
    nonce   = nonce prefix | i (4 bytes, big-endian)
    AAD     = header | file id (16) | i (8 bytes) | final flag (1 byte)

The AAD binds every chunk to its file, its position and whether it is the
last one, so a chunk swapped in from another file, reordered, dropped, or a
file cut at a chunk boundary fails authentication. Encryption reads one chunk
ahead to know which chunk is final; both directions hold two chunks at most.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kreo.streams import IterReader

MAGIC = b"KREOF1\x00\x00"
PREFIX = 8
HEADER = len(MAGIC) + PREFIX
CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
MAX_CHUNKS = 2**32

TAMPERED = "The stored file failed authentication at chunk {index}: it was altered."
TRUNCATED = "The stored file is truncated: its final chunk is missing."
NOT_ENCRYPTED = "The stored object is not a Kreo encrypted file (bad header)."


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


def encrypt_chunks(
    key: bytes, file_id: uuid.UUID, source: Iterable[bytes]
) -> Iterator[bytes]:
    """Yield the sealed form of the plaintext chunks ``source`` (any sizes)."""
    aead = AESGCM(key)
    prefix = os.urandom(PREFIX)
    header = MAGIC + prefix
    yield header
    buffer = bytearray()
    index = 0
    for piece in source:
        buffer += piece
        if len(buffer) <= CHUNK:
            continue
        # Seal every whole chunk that is surely not the last one.
        count = (len(buffer) - 1) // CHUNK
        view = memoryview(buffer)
        for offset in range(0, count * CHUNK, CHUNK):
            yield aead.encrypt(
                _nonce(prefix, index),
                view[offset : offset + CHUNK],
                _aad(header, file_id, index, False),
            )
            index += 1
        view.release()
        del buffer[: count * CHUNK]
    yield aead.encrypt(
        _nonce(prefix, index), bytes(buffer), _aad(header, file_id, index, True)
    )


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
            piece = next(stream, b"")
            if not piece:
                break
            buffer.extend(piece)
        out = bytes(buffer[:size])
        del buffer[:size]
        return out

    return read_iter


def decrypt_chunks(key: bytes, file_id: uuid.UUID, source) -> Iterator[bytes]:
    """Yield plaintext chunk by chunk, each only after its tag has verified.

    ``source`` is a binary file object or an iterable of byte strings. Raises
    FileIntegrityError at the first chunk that does not authenticate;
    nothing of that chunk, or after it, is yielded.
    """
    aead = AESGCM(key)
    read = _exact_reader(source)
    header = read(HEADER)
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise FileIntegrityError(NOT_ENCRYPTED)
    prefix = header[len(MAGIC) :]
    index = 0
    current = read(SEALED_CHUNK)
    while True:
        following = read(SEALED_CHUNK) if len(current) == SEALED_CHUNK else b""
        final = not following
        if len(current) < TAG:
            raise FileIntegrityError(TRUNCATED)
        nonce = _nonce(prefix, index)
        try:
            plain = aead.decrypt(nonce, current, _aad(header, file_id, index, final))
        except InvalidTag:
            raise FileIntegrityError(
                TRUNCATED
                if final and _opens(aead, nonce, current, header, file_id, index)
                else TAMPERED.format(index=index)
            ) from None
        yield plain
        if final:
            return
        current, index = following, index + 1


def _opens(aead, nonce, sealed, header, file_id, index) -> bool:
    """Whether ``sealed`` is a genuine non-final chunk (the file was cut after it)."""
    try:
        aead.decrypt(nonce, sealed, _aad(header, file_id, index, False))
    except InvalidTag:
        return False
    return True


def reader(chunks: Iterable[bytes]) -> BinaryIO:
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)
