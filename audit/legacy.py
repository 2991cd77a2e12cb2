"""Read-only decoder of ``KREOAUD1``, the audit archive framing written
before ``KREOSEAL`` (docs/FORMATS.md section 6): archives already in S3 still
read back, verify and export. Nothing writes this format any more.

Layout: ``"KREOAUD1" | nonce prefix (8)`` then chunks of
``length (4, big-endian) | AES-256-GCM ciphertext and tag``. Chunk ``i``
(plaintext at most 1 MiB) is sealed with nonce ``prefix | uint32(i)`` and
associated data ``"KREOAUD1" | object key (UTF-8) | uint32(i) | final (1)``,
under ``audit.keys.archive_key()`` directly.
"""

import struct
from collections.abc import Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"KREOAUD1"
PREFIX = 8
LENGTH = struct.Struct(">I")
# A chunk is at most 1 MiB of plaintext and its 16-byte tag.
MAX_SEALED = 1024 * 1024 + 16

TRUNCATED = "{name}: KREOAUD1 archive truncated after chunk {index}."
TAMPERED = "{name}: KREOAUD1 chunk {index} fails authentication."
TOO_LONG = "{name}: KREOAUD1 chunk {index} claims {length} bytes (corrupt length)."


class LegacyError(Exception):
    """A KREOAUD1 archive cannot be read; the message names it and the chunk."""


def _aad(name: str, index: int, final: bool) -> bytes:
    return MAGIC + name.encode() + struct.pack(">IB", index, int(final))


def open_stream(
    key: bytes, read: Callable[[int], bytes], *, object_key: str
) -> Iterator[bytes]:
    """The plaintext chunks of a KREOAUD1 object whose magic was read already.

    ``read(n)`` returns exactly ``n`` bytes, fewer only at the end; the
    object key is the associated data the chunks were sealed with.
    """
    prefix = read(PREFIX)
    aead = AESGCM(key)
    index = 0
    length = read(LENGTH.size)
    while length:
        if len(length) != LENGTH.size or len(prefix) != PREFIX:
            raise LegacyError(TRUNCATED.format(name=object_key, index=index - 1))
        (size,) = LENGTH.unpack(length)
        if size > MAX_SEALED:
            raise LegacyError(
                TOO_LONG.format(name=object_key, index=index, length=size)
            )
        sealed = read(size)
        length = read(LENGTH.size)
        final = not length
        nonce = prefix + struct.pack(">I", index)
        try:
            yield aead.decrypt(nonce, sealed, _aad(object_key, index, final))
        except InvalidTag:
            raise LegacyError(TAMPERED.format(name=object_key, index=index)) from None
        index += 1
    if index == 0:
        raise LegacyError(TRUNCATED.format(name=object_key, index=-1))
