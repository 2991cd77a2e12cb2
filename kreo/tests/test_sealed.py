"""The sealed-object format: the documented vectors, an independent reading
of docs/FORMATS.md, and the attacks a stored object meets (truncation,
reordering, swaps between objects, bit flips, wrong key or context)."""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import struct
import tracemalloc
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kreo import sealed

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMATS.md"
KEY = bytes(range(32))
SALT = bytes(range(100, 132))
CONTEXT = b"kreo-vector"
THREE = bytes(i % 251 for i in range(2500))


def documented(name: str) -> str:
    """The hex block after ``<!-- vector:name -->`` in docs/FORMATS.md."""
    found = re.search(
        rf"<!-- vector:{name} -->\s*```\s*([0-9a-f\s]+?)```", DOC.read_text()
    )
    assert found, f"vector {name} not in docs/FORMATS.md"
    return "".join(found.group(1).split())


def vector(plain: bytes) -> bytes:
    return b"".join(
        sealed.seal_stream(KEY, [plain], context=CONTEXT, chunk_size=1024, salt=SALT)
    )


def test_the_documented_vectors_are_what_the_code_writes():
    assert vector(b"").hex() == documented("empty")
    assert vector(b"Kreo sealed object test vector.").hex() == documented("short")
    assert hashlib.sha256(vector(THREE)).hexdigest() == documented("three-chunks")


def _open_as_documented(key: bytes, blob: bytes, context: bytes) -> bytes:
    """docs/FORMATS.md section 1, read with cryptography alone."""
    assert blob[:8] == b"KREOSEAL" and blob[8] == 1
    (chunk,) = struct.unpack(">I", blob[9:13])
    header, salt = blob[:53], blob[21:53]
    assert blob[13:21] == hmac.new(key, b"kreo-sealed-key-id", "sha256").digest()[:8]
    okm = HKDF(
        algorithm=hashes.SHA256(), length=39, salt=salt, info=b"kreo-sealed-v1"
    ).derive(key)
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    body = blob[53:]
    pieces = [body[i : i + chunk + 16] for i in range(0, len(body), chunk + 16)]
    out = []
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        nonce = prefix + struct.pack(">IB", index, int(final))
        out.append(aead.decrypt(nonce, piece, header + context))
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 2048, 2500, 10_000])
def test_an_independent_reader_of_the_document_opens_what_the_code_seals(size):
    plain = bytes(i % 253 for i in range(size))
    blob = sealed.seal_bytes(KEY, plain, context=b"file-1", chunk_size=1024)
    assert _open_as_documented(KEY, blob, b"file-1") == plain
    assert len(blob) == sealed.sealed_size(size, 1024)
    assert sealed.open_bytes(KEY, blob, context=b"file-1") == plain


def _chunks(blob: bytes, chunk: int = 1024) -> tuple[bytes, list[bytes]]:
    body = blob[sealed.HEADER :]
    step = chunk + sealed.TAG
    return blob[: sealed.HEADER], [
        body[i : i + step] for i in range(0, len(body), step)
    ]


def _open(blob: bytes, *, key=KEY, context=b"ctx") -> bytes:
    return b"".join(
        sealed.open_stream(key, io.BytesIO(blob), context=context, name="obj")
    )


SEALED = sealed.seal_bytes(KEY, THREE, context=b"ctx", chunk_size=1024)


def test_round_trip_from_a_file_object_and_from_pieces():
    assert _open(SEALED) == THREE
    pieces = [SEALED[i : i + 7] for i in range(0, len(SEALED), 7)]
    assert b"".join(sealed.open_stream(KEY, pieces, context=b"ctx")) == THREE


def test_truncated_at_a_chunk_boundary_is_refused_as_truncated():
    header, chunks = _chunks(SEALED)
    with pytest.raises(sealed.SealedError, match=r"obj: truncated after chunk 1"):
        _open(header + b"".join(chunks[:2]))
    with pytest.raises(sealed.SealedError, match="truncated"):
        _open(header)


def test_cut_inside_a_chunk_is_refused():
    with pytest.raises(sealed.SealedError, match="chunk 2"):
        _open(SEALED[:-5])


def test_bytes_after_the_final_chunk_are_refused():
    with pytest.raises(sealed.SealedError, match="chunk 2"):
        _open(SEALED + b"\x00" * 20)
    exact = sealed.seal_bytes(KEY, b"x" * 2048, context=b"ctx", chunk_size=1024)
    header, chunks = _chunks(exact)
    other = sealed.seal_bytes(KEY, b"y" * 3072, context=b"ctx", chunk_size=1024)
    with pytest.raises(sealed.SealedError, match="data after the final chunk 1"):
        _open(exact + _chunks(other)[1][2])


def test_reordered_chunks_are_refused():
    header, chunks = _chunks(SEALED)
    with pytest.raises(sealed.SealedError, match="obj: chunk 0 failed"):
        _open(header + chunks[1] + chunks[0] + chunks[2])


def test_a_chunk_swapped_in_from_another_object_is_refused():
    other = sealed.seal_bytes(KEY, THREE, context=b"ctx", chunk_size=1024)
    header, chunks = _chunks(SEALED)
    _, theirs = _chunks(other)
    with pytest.raises(sealed.SealedError, match="chunk 1 failed"):
        _open(header + chunks[0] + theirs[1] + chunks[2])


def test_a_flipped_bit_anywhere_is_refused():
    for offset in (sealed.HEADER + 3, sealed.HEADER + 1040 + 500, len(SEALED) - 1):
        flipped = bytearray(SEALED)
        flipped[offset] ^= 0x01
        with pytest.raises(sealed.SealedError, match="failed authentication"):
            _open(bytes(flipped))
    salt_flip = bytearray(SEALED)
    salt_flip[30] ^= 0x80
    with pytest.raises(sealed.SealedError, match="chunk 0 failed"):
        _open(bytes(salt_flip))


def test_wrong_key_wrong_context_unknown_magic_or_version():
    with pytest.raises(sealed.SealedError, match="sealed under another key"):
        _open(SEALED, key=bytes(32))
    with pytest.raises(sealed.SealedError, match="chunk 0 failed"):
        _open(SEALED, context=b"another file")
    with pytest.raises(sealed.SealedError, match="not a Kreo sealed object"):
        _open(b"KREOF1\x00\x00" + SEALED[8:])
    with pytest.raises(sealed.SealedError, match="version 2 is unknown"):
        _open(SEALED[:8] + b"\x02" + SEALED[9:])
    with pytest.raises(sealed.SealedError, match="cut short"):
        _open(SEALED[:20])
    bad_size = SEALED[:9] + struct.pack(">I", 7) + SEALED[13:]
    with pytest.raises(sealed.SealedError, match="chunk size is invalid"):
        _open(bad_size)


def test_the_writer_seals_what_the_stream_seals_and_can_be_written_piecemeal():
    for size in (0, 1024, 3000):
        plain = bytes(i % 7 for i in range(size))
        sink = io.BytesIO()
        with sealed.SealingWriter(sink, KEY, context=b"w", chunk_size=1024) as writer:
            for i in range(0, size, 333):
                writer.write(plain[i : i + 333])
        blob = sink.getvalue()
        assert len(blob) == sealed.sealed_size(size, 1024)
        assert sealed.open_bytes(KEY, blob, context=b"w") == plain


def test_a_writer_left_unclosed_leaves_an_object_that_does_not_open():
    sink = io.BytesIO()
    writer = sealed.SealingWriter(sink, KEY, context=b"w", chunk_size=1024)
    writer.write(b"a" * 5000)
    with pytest.raises(sealed.SealedError, match="truncated"):
        sealed.open_bytes(KEY, sink.getvalue(), context=b"w")


def test_memory_stays_flat_in_the_object_size():
    """Sealing then opening 32 MiB in 1 MiB chunks peaks at a few chunks."""
    chunk = sealed.BULK_CHUNK
    piece = b"\x5a" * chunk

    def source():
        for _ in range(32):
            yield piece

    tracemalloc.start()
    try:
        stream = sealed.seal_stream(KEY, source(), context=b"m", chunk_size=chunk)
        total = 0
        for plain in sealed.open_stream(KEY, stream, context=b"m"):
            total += len(plain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 32 * chunk
    assert peak < 8 * chunk, f"peak {peak} bytes for a 32 MiB object"
