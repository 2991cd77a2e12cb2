"""IterReader: a file object over chunks, for APIs that want a file."""

import io
import threading

from kreo.streams import IterReader
from projects import crypto


def test_reads_any_chunk_sizes_in_order_past_empty_pieces():
    """An empty piece mid-stream is not the end (that would cut the file),
    and a buffer its producer reuses is copied when taken."""
    buffer = bytearray(b"abc")

    def chunks():
        yield b"hello "
        yield memoryview(b"big " * 1000)
        yield buffer
        buffer[:] = b"XYZ"  # the producer reuses its buffer after yielding
        yield b""
        yield b"end"

    reader = io.BufferedReader(IterReader(chunks()), buffer_size=7)
    assert reader.read() == b"hello " + b"big " * 1000 + b"abcend"


def test_closing_the_reader_closes_a_half_read_source():
    """An upload that failed half-way: the sealing generator and its cipher
    thread end when the reader is closed, not at garbage collection."""
    finished = []

    def chunks():
        try:
            while True:
                yield b"x" * 1000
        finally:
            finished.append(True)

    reader = IterReader(chunks())
    reader.readinto(bytearray(10))
    reader.close()
    assert finished == [True]

    plaintext = (b"p" * crypto.CHUNK for _ in range(64))
    sealed = crypto.reader(crypto.encrypt_chunks(bytes(32), uuid(), plaintext))
    sealed.read(3 * crypto.SEALED_CHUNK)
    assert any(t.name.startswith("kreo-crypto") for t in threading.enumerate())
    sealed.close()
    assert not any(t.name.startswith("kreo-crypto") for t in threading.enumerate())


def uuid():
    import uuid as uuid_module

    return uuid_module.uuid4()
