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

    def close(self) -> None:
        """Close the source too: a generator left half-read (an upload that
        failed in storage) releases what it holds now, not at collection."""
        if not self.closed:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        super().close()

    def readinto(self, target) -> int:
        while not self._left:
            # Only the end of the source ends the stream: an empty piece in
            # the middle is skipped, never taken for the end (data lost).
            piece = next(self._chunks, None)
            if piece is None:
                return 0
            if isinstance(piece, bytearray):
                piece = bytes(piece)  # its producer may change it after yielding
            # A view, so that reading a large chunk piecemeal copies it once.
            self._left = memoryview(piece)
        size = min(len(target), len(self._left))
        target[:size] = self._left[:size]
        self._left = self._left[size:]
        return size
