"""Project files as stored: KREOSEAL written and read, KREOF1 (the format
before it) still read, and every change to the stored bytes caught,
whatever the sizes and batch boundaries.

Both formats are rebuilt here by hand from their documentation
(docs/FORMATS.md §1 and §6) with the bare primitives, so a change to the
code that changed the bytes on disk, and with it every file already stored,
fails these tests. The KREOF1 objects under fixtures/legacy/ were written by
the KREOF1 writer itself before it was removed.
"""

import hashlib
import hmac
import io
import json
import os
import random
import struct
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kreo import sealed as kreo_sealed
from projects import crypto

LEGACY = Path(__file__).parent / "fixtures" / "legacy"

KEY = bytes(range(32))
FILE_ID = uuid.UUID("0b9e4f5c-6f4a-4c61-9a35-2d7d43c1e0aa")
BATCH_BYTES = crypto.BATCH * crypto.CHUNK
# Around the chunk and batch boundaries, where a cut is easiest to get wrong.
SIZES = [
    0,
    1,
    crypto.CHUNK - 1,
    crypto.CHUNK,
    crypto.CHUNK + 1,
    BATCH_BYTES - 1,
    BATCH_BYTES,
    BATCH_BYTES + 1,
    2 * BATCH_BYTES + crypto.CHUNK,
    3 * BATCH_BYTES + 12345,
]


def _pieces(plaintext: bytes) -> list[bytes]:
    return [
        plaintext[i : i + crypto.CHUNK]
        for i in range(0, max(len(plaintext), 1), crypto.CHUNK)
    ]


def sealed_by_hand(plaintext: bytes, salt: bytes) -> bytes:
    """KREOSEAL as documented, context the file id, 64 KiB chunks."""
    key_id = hmac.new(KEY, b"kreo-sealed-key-id", hashlib.sha256).digest()[:8]
    header = b"KREOSEAL\x01" + struct.pack(">I", crypto.CHUNK) + key_id + salt
    okm = HKDF(hashes.SHA256(), 39, salt, b"kreo-sealed-v1").derive(KEY)
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    pieces = _pieces(plaintext)
    out = [header]
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        nonce = prefix + struct.pack(">IB", index, int(final))
        out.append(aead.encrypt(nonce, piece, header + FILE_ID.bytes))
    return b"".join(out)


def legacy_by_hand(plaintext: bytes, prefix: bytes) -> bytes:
    """KREOF1 as documented: header, then AES-256-GCM per 64 KiB chunk."""
    header = crypto.LEGACY_MAGIC + prefix
    pieces = _pieces(plaintext)
    out = [header]
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        nonce = prefix + struct.pack(">I", index)
        aad = header + FILE_ID.bytes + struct.pack(">QB", index, int(final))
        out.append(AESGCM(KEY).encrypt(nonce, piece, aad))
    return b"".join(out)


def sealed(plaintext: bytes, pieces: int | None = None) -> bytes:
    """encrypt_chunks over ``plaintext`` fed in random-sized pieces."""
    rng = random.Random(len(plaintext))

    def feed():
        offset = 0
        while offset < len(plaintext):
            size = pieces or rng.choice([1, 999, crypto.CHUNK, 70_000, 2**20])
            yield plaintext[offset : offset + size]
            offset += size

    return b"".join(crypto.encrypt_chunks(KEY, FILE_ID, feed()))


def opened(stored: bytes) -> bytes:
    return b"".join(crypto.decrypt_chunks(KEY, FILE_ID, io.BytesIO(stored)))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("form", ["KREOSEAL", "KREOF1"])
def test_files_sealed_by_the_documented_format_open(size, form):
    """A file as either format describes it opens to its plaintext, from a
    file object and from an iterator."""
    plaintext = os.urandom(size)
    if form == "KREOSEAL":
        stored = sealed_by_hand(plaintext, os.urandom(32))
    else:
        stored = legacy_by_hand(plaintext, os.urandom(crypto.LEGACY_PREFIX))
    assert opened(stored) == plaintext
    pieces = [
        stored[:7],
        b"",  # an empty piece is not the end of the source
        stored[7 : crypto.HEADER + 5],
        stored[crypto.HEADER + 5 :],
    ]
    assert b"".join(crypto.decrypt_chunks(KEY, FILE_ID, pieces)) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_sealing_writes_exactly_the_documented_format(size):
    """Whatever the piece sizes fed in, the bytes written are the documented
    format under the file's own random nonce prefix."""
    plaintext = os.urandom(size)
    for pieces in (None, crypto.CHUNK, 3):
        if pieces == 3 and size > BATCH_BYTES:
            continue  # byte-sized pieces of megabytes only slow the suite
        stored = sealed(plaintext, pieces)
        salt = stored[crypto.HEADER - 32 : crypto.HEADER]
        assert stored == sealed_by_hand(plaintext, salt)
        assert len(stored) == crypto.sealed_size(size)


def test_a_producer_reusing_its_buffer_cannot_corrupt_the_file():
    """The cipher runs a batch behind on another thread: a producer that
    refills one buffer must not change what gets sealed."""
    plaintext = os.urandom(3 * BATCH_BYTES + 100)

    def reused():
        buffer = bytearray(crypto.CHUNK)
        for offset in range(0, len(plaintext), crypto.CHUNK):
            piece = plaintext[offset : offset + crypto.CHUNK]
            buffer[: len(piece)] = piece
            yield buffer if len(piece) == crypto.CHUNK else bytearray(piece)

    stored = b"".join(crypto.encrypt_chunks(KEY, FILE_ID, reused()))
    assert opened(stored) == plaintext


@pytest.mark.parametrize("chunk", [0, 5, crypto.BATCH - 1, crypto.BATCH, 40])
def test_a_flipped_byte_stops_the_stream_exactly_at_its_chunk(chunk):
    """Chunks before the altered one come out (each verified); the error
    names the chunk; nothing of it or after it is yielded. In every batch."""
    plaintext = os.urandom(3 * BATCH_BYTES)
    stored = bytearray(sealed(plaintext))
    stored[crypto.HEADER + chunk * crypto.SEALED_CHUNK + 100] ^= 0x01
    received = bytearray()
    with pytest.raises(crypto.FileIntegrityError, match=f"chunk {chunk} failed"):
        for piece in crypto.decrypt_chunks(KEY, FILE_ID, io.BytesIO(stored)):
            received += piece
    assert bytes(received) == plaintext[: chunk * crypto.CHUNK]


@pytest.mark.parametrize("chunks_kept", [1, crypto.BATCH - 1, crypto.BATCH, 33])
def test_a_file_cut_at_any_chunk_boundary_is_refused_as_truncated(chunks_kept):
    """Cut after whole chunks, on a batch boundary or inside a batch: the
    last chunk left was not sealed as final, so the file is truncated."""
    stored = sealed(os.urandom(3 * BATCH_BYTES))
    cut = stored[: crypto.HEADER + chunks_kept * crypto.SEALED_CHUNK]
    with pytest.raises(crypto.FileIntegrityError, match="truncated"):
        opened(cut)


def test_chunks_moved_across_a_batch_boundary_are_refused():
    """Swapping the last chunk of one batch with the first of the next."""
    stored = bytearray(sealed(os.urandom(2 * BATCH_BYTES + 10)))
    a = crypto.HEADER + (crypto.BATCH - 1) * crypto.SEALED_CHUNK
    b = a + crypto.SEALED_CHUNK
    size = crypto.SEALED_CHUNK
    stored[a : a + size], stored[b : b + size] = (
        stored[b : b + size],
        stored[a : a + size],
    )
    with pytest.raises(
        crypto.FileIntegrityError, match=f"chunk {crypto.BATCH - 1} failed"
    ):
        opened(bytes(stored))


def test_bytes_after_the_final_chunk_are_refused():
    stored = sealed(os.urandom(2 * crypto.CHUNK))
    extra = stored[crypto.HEADER : crypto.HEADER + crypto.SEALED_CHUNK]
    with pytest.raises(crypto.FileIntegrityError, match="data after the final"):
        opened(stored + extra)


def test_the_wrong_key_or_file_id_opens_nothing():
    stored = sealed(os.urandom(BATCH_BYTES + 1))
    with pytest.raises(crypto.FileIntegrityError, match="sealed under another key"):
        next(crypto.decrypt_chunks(os.urandom(32), FILE_ID, io.BytesIO(stored)))
    with pytest.raises(crypto.FileIntegrityError, match="chunk 0 failed"):
        next(crypto.decrypt_chunks(KEY, uuid.uuid4(), io.BytesIO(stored)))


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(crypto.FileIntegrityError, match="neither KREOSEAL nor"):
        opened(b"%PDF-1.7 plaintext" + bytes(100))
    with pytest.raises(crypto.FileIntegrityError, match="version 2 is unknown"):
        opened(b"KREOSEAL\x02" + bytes(100))


def _legacy_fixtures():
    about = json.loads((LEGACY / "fixtures.json").read_text())
    key, file_id = bytes.fromhex(about["data_key_hex"]), uuid.UUID(about["file_id"])
    for name, spec in about["files"].items():
        yield name, key, file_id, (LEGACY / spec["object"]).read_bytes(), spec


@pytest.mark.parametrize("name", ["empty", "short", "two-chunks"])
def test_kreof1_files_written_by_the_old_writer_still_open(name):
    """The committed objects written by the removed KREOF1 writer open to
    their plaintext; under another file's id, or cut short, they do not."""
    [(_, key, file_id, stored, spec)] = [f for f in _legacy_fixtures() if f[0] == name]
    assert stored.startswith(crypto.LEGACY_MAGIC)
    plain = b"".join(crypto.decrypt_chunks(key, file_id, io.BytesIO(stored)))
    assert len(plain) == spec["size"]
    assert hashlib.sha256(plain).hexdigest() == spec["sha256"]
    with pytest.raises(crypto.FileIntegrityError, match="chunk 0 failed"):
        b"".join(crypto.decrypt_chunks(key, uuid.uuid4(), [stored]))
    with pytest.raises(crypto.FileIntegrityError):
        b"".join(crypto.decrypt_chunks(key, file_id, [stored[:-1]]))


def test_kreof1_cut_at_a_chunk_boundary_is_refused_as_truncated():
    stored = legacy_by_hand(os.urandom(3 * crypto.CHUNK), os.urandom(8))
    cut = stored[: crypto.LEGACY_HEADER + 2 * crypto.SEALED_CHUNK]
    with pytest.raises(crypto.FileIntegrityError, match="truncated after chunk 1"):
        opened(cut)


def test_an_abandoned_stream_leaves_no_thread_behind():
    """A client that hangs up mid-download closes the generator: the worker
    thread ends with it."""
    stored = sealed(os.urandom(4 * BATCH_BYTES))
    before = {t.ident for t in threading.enumerate()}
    stream = crypto.decrypt_chunks(KEY, FILE_ID, io.BytesIO(stored))
    next(stream)
    next(stream)
    assert any(t.name.startswith("kreo-crypto") for t in threading.enumerate())
    stream.close()
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert left == []


def test_an_object_sealed_with_another_chunk_size_opens_by_its_header():
    """The chunk size is the header's: a 1 MiB-chunk object (as the bulk
    writers make) opens too, batches kept to about 1 MiB."""
    plaintext = os.urandom(3 * 2**20 + 5)
    stored = kreo_sealed.seal_bytes(
        KEY, plaintext, context=FILE_ID.bytes, chunk_size=2**20
    )
    assert opened(stored) == plaintext
    cut = stored[: kreo_sealed.HEADER + 2 * (2**20 + crypto.TAG)]
    with pytest.raises(crypto.FileIntegrityError, match="truncated after chunk 1"):
        opened(cut)
