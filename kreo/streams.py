"""Stream helpers shared by the apps that pipe bytes without holding them."""

import io
from collections.abc import Iterable


class IterReader(io.RawIOBase):
    """A read-only file object over an iterator of byte strings.

    Lets a generator of chunks feed APIs that want a file (tarfile, age,
    boto3 uploads) with memory bounded by one chunk.
    """

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._left:
            piece = next(self._chunks, b"")
            if isinstance(piece, bytearray):
                piece = bytes(piece)  # its producer may change it after yielding
            # A view, so that reading a large chunk piecemeal copies it once.
            self._left = memoryview(piece)
            if not self._left:
                return 0
        size = min(len(target), len(self._left))
        target[:size] = self._left[:size]
        self._left = self._left[size:]
        return size
