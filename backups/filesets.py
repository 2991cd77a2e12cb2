"""The project files of a set, as a tar stream read from and written to the
default storage (local disk or S3) through the storage API, in chunks."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.core.files import File
from django.core.files.storage import default_storage

from kreo.streams import IterReader

BLOCK = tarfile.BLOCKSIZE
PIECE = 1024 * 1024
NOT_A_TAR = "The files archive of this copy is not a readable tar stream."


@dataclass
class FilesSummary:
    """What the manifest says about the files: count, bytes, a set digest."""

    count: int = 0
    bytes: int = 0
    total: int = 0
    missing: list[str] = field(default_factory=list)

    def add(self, name: str, content_sha256: str, size: int) -> None:
        self.count += 1
        self.bytes += size
        row = hashlib.sha256(f"{name}\n{content_sha256}".encode()).digest()
        self.total += int.from_bytes(row, "big")

    def as_dict(self) -> dict:
        return {
            "count": self.count,
            "bytes": self.bytes,
            "checksum": format(self.total % (1 << 256), "064x"),
            "missing": self.missing,
        }


def file_names(using: str) -> Iterator[str]:
    """Storage keys of every project file in the snapshot, and of its
    thumbnail where it has one (a restored row names it)."""
    from projects.models import ProjectFile

    return (
        name
        for pair in ProjectFile._base_manager.using(using)
        .order_by()
        .values_list("blob", "thumbnail")
        .iterator(chunk_size=2000)
        for name in pair
        if name
    )


def tar_stream(names: Iterable[str], summary: FilesSummary) -> Iterator[bytes]:
    """Yield a tar of the named storage files; record each in ``summary``.

    The tar is written by hand (header, data, padding) so that no file is
    ever held whole in memory: ``tarfile.addfile`` copies in one call.
    """
    storage = default_storage
    for name in names:
        if not storage.exists(name):
            summary.missing.append(name)
            continue
        size = storage.size(name)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o600
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        digest, written = hashlib.sha256(), 0
        with storage.open(name, "rb") as source:
            while written < size:
                piece = source.read(min(PIECE, size - written))
                if not piece:
                    raise OSError(f"{name} shrank while being backed up")
                digest.update(piece)
                written += len(piece)
                yield piece
        if size % BLOCK:
            yield b"\0" * (BLOCK - size % BLOCK)
        summary.add(name, digest.hexdigest(), size)
    yield b"\0" * (BLOCK * 2)


def _digest_reader(fileobj, digest):
    class Reader(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, target) -> int:
            data = fileobj.read(len(target))
            digest.update(data)
            target[: len(data)] = data
            return len(data)

    return io.BufferedReader(Reader(), PIECE)


def tar_summary(chunks: Iterable[bytes]) -> FilesSummary:
    """Read a files tar stream and summarise it, writing nothing."""
    return _walk(chunks, write=False)


def tar_restore(chunks: Iterable[bytes]) -> FilesSummary:
    """Write every file of a tar stream back to the default storage, same keys."""
    return _walk(chunks, write=True)


def _walk(chunks: Iterable[bytes], write: bool) -> FilesSummary:
    summary = FilesSummary()
    storage = default_storage
    try:
        archive = tarfile.open(  # noqa: S202 - members go to storage by key
            fileobj=io.BufferedReader(IterReader(chunks), PIECE), mode="r|"
        )
    except tarfile.ReadError as exc:
        raise ValueError(NOT_A_TAR) from exc
    with archive:
        for member in archive:
            if not member.isfile():
                continue
            source = archive.extractfile(member)
            digest = hashlib.sha256()
            reader = _digest_reader(source, digest)
            if write:
                if storage.exists(member.name):
                    storage.delete(member.name)
                content = File(reader, name=member.name)
                content.size = member.size
                saved = storage.save(member.name, content)
                if saved != member.name:
                    raise OSError(f"storage renamed {member.name} to {saved}")
            else:
                while reader.read(PIECE):
                    pass
            summary.add(member.name, digest.hexdigest(), member.size)
    return summary
