"""Encryption of backup artifacts, and the manifest's MAC.

Copy 1 (and copy 3, its offsite twin) is sealed with Kreo's one format,
``KREOSEAL`` (kreo/sealed.py: AES-256-GCM STREAM, 1 MiB chunks), under
``BACKUP_ENCRYPTION_KEY`` with the context ``kreo-backup/<set id>/<name>``:
an artifact moved into another set, or renamed, does not open. Artifacts
written before are ``KREOBK1``, read by a read-only decoder chosen by the
magic bytes (docs/FORMATS.md sections 2 and 6).

Copy 2 uses age (X25519) through pyrage: the backup host holds only the
public key and cannot read what it wrote.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from pyrage import x25519

from kreo import sealed
from kreo.streams import IterReader

CHUNK = sealed.BULK_CHUNK
# The format before KREOSEAL, read only: magic, key id (8), salt (32), then
# 1 MiB chunks sealed with AES-256-GCM under HKDF(key, salt, "kreo-backup-v1").
LEGACY_MAGIC = b"KREOBK1\n"
LEGACY_TAG = 16
LEGACY_SALT = 32
LEGACY_KEY_ID = 8
LEGACY_HEADER = len(LEGACY_MAGIC) + LEGACY_KEY_ID + LEGACY_SALT

WRONG_KEY = (
    "{name}: encrypted under a different backup key "
    "(BACKUP_ENCRYPTION_KEY); nothing was restored."
)
NOT_AN_ARTIFACT = "{name}: not a Kreo backup artifact (neither KREOSEAL nor KREOBK1)."
CORRUPTED = "{name}: chunk {index} failed authentication: corrupted or truncated."
AGE_WRONG_KEY = (
    "The logical copy cannot be decrypted with this age identity "
    "(BACKUP_AGE_IDENTITY_FILE); nothing was restored."
)
AGE_NO_IDENTITY = (
    "No age identity for the logical copy: set BACKUP_AGE_IDENTITY_FILE to the "
    "file holding the AGE-SECRET-KEY of BACKUP_AGE_RECIPIENT."
)
BAD_KEY = "{name} must be 32 bytes in urlsafe base64."
MISSING_KEY = "{name} is not set: backups refuse to run without it (.env.example)."
NO_RECIPIENT = (
    "BACKUP_AGE_RECIPIENT is not set: copy 2 needs the age public key (.env.example)."
)
MANIFEST_FORGED = "The manifest's MAC does not match: it was altered or forged."


class BackupCryptoError(Exception):
    """An artifact cannot be decrypted or authenticated; the message says why."""


def decode_key(text: str, name: str = "BACKUP_ENCRYPTION_KEY") -> bytes:
    raw = (text or "").strip()
    if not raw:
        raise BackupCryptoError(MISSING_KEY.format(name=name))
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError as exc:
        raise BackupCryptoError(BAD_KEY.format(name=name)) from exc
    if len(key) != 32:
        raise BackupCryptoError(BAD_KEY.format(name=name))
    return key


def key_a() -> bytes:
    return decode_key(settings.BACKUP_ENCRYPTION_KEY)


def manifest_key() -> bytes:
    return decode_key(settings.BACKUP_MANIFEST_KEY, "BACKUP_MANIFEST_KEY")


def context(set_id: int, name: str) -> bytes:
    """What binds an artifact to its set and name (docs/FORMATS.md section 2)."""
    return f"kreo-backup/{set_id}/{name}".encode("ascii")


class HashingWriter:
    """Write to a file while counting bytes and computing their SHA-256."""

    def __init__(self, fileobj: BinaryIO):
        self.fileobj = fileobj
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.fileobj.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.fileobj.flush()


class HashingReader(io.RawIOBase):
    """Read a file while counting bytes and computing their SHA-256: an
    artifact is checked against the manifest in the pass that decrypts it."""

    def __init__(self, source: BinaryIO):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def read(self, size=-1) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def seal_artifact(
    chunks: Iterable[bytes], out: BinaryIO, key: bytes, *, set_id: int, name: str
) -> None:
    """Seal a plaintext stream into ``out`` as artifact ``name`` of the set."""
    for piece in sealed.seal_stream(
        key, chunks, context=context(set_id, name), chunk_size=CHUNK
    ):
        out.write(piece)


def open_artifact(
    source: BinaryIO, key: bytes, *, set_id: int, name: str
) -> Iterator[bytes]:
    """Yield the plaintext of artifact ``name`` of the set, every chunk
    authenticated: ``KREOSEAL``, or ``KREOBK1`` written before it.

    Raises ``BackupCryptoError`` (naming the artifact and the chunk) on a wrong
    key, another set's or name's artifact, a corrupted or truncated one;
    plaintext already yielded must then be discarded by the caller.
    """
    label = f"set {set_id} {name}"
    head = source.read(len(sealed.MAGIC))
    if head == LEGACY_MAGIC:
        yield from _legacy_open(source, key, label)
        return
    if not sealed.is_sealed(head):
        raise BackupCryptoError(NOT_AN_ARTIFACT.format(name=label))
    head += source.read(sealed.HEADER - len(head))
    try:
        found = sealed.parse_header(head, label).key_id
        if not hmac.compare_digest(found, sealed.key_id(key)):
            raise BackupCryptoError(WRONG_KEY.format(name=label))
        yield from sealed.open_stream(
            key, _Prefixed(head, source), context=context(set_id, name), name=label
        )
    except sealed.SealedError as exc:
        raise BackupCryptoError(str(exc)) from exc


class _Prefixed:
    """``source`` with its first bytes, already read, put back in front."""

    def __init__(self, head: bytes, source: BinaryIO):
        self.head, self.source = head, source

    def read(self, size: int) -> bytes:
        if not self.head:
            return self.source.read(size)
        data, self.head = self.head[:size], self.head[size:]
        return data + self.source.read(size - len(data)) if len(data) < size else data


def _legacy_key_id(key: bytes) -> bytes:
    return hmac.new(key, b"kreo-backup-key-id", hashlib.sha256).digest()[:LEGACY_KEY_ID]


def _legacy_open(source: BinaryIO, key: bytes, label: str) -> Iterator[bytes]:
    """Read-only decoder of ``KREOBK1`` (docs/FORMATS.md section 6): a chunk
    is final when nothing follows it, as the old writer sealed it."""
    read = sealed.reader(source)
    header = LEGACY_MAGIC + read(LEGACY_HEADER - len(LEGACY_MAGIC))
    if len(header) < LEGACY_HEADER:
        raise BackupCryptoError(NOT_AN_ARTIFACT.format(name=label))
    if not hmac.compare_digest(
        header[len(LEGACY_MAGIC) : len(LEGACY_MAGIC) + LEGACY_KEY_ID],
        _legacy_key_id(key),
    ):
        raise BackupCryptoError(WRONG_KEY.format(name=label))
    derived = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=header[-LEGACY_SALT:],
        info=b"kreo-backup-v1",
    ).derive(key)
    aead = AESGCM(derived)
    whole = CHUNK + LEGACY_TAG
    index, current = 0, read(whole)
    while True:
        following = read(whole) if len(current) == whole else b""
        final = not following
        nonce = index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
        try:
            yield aead.decrypt(nonce, current, header)
        except InvalidTag:
            raise BackupCryptoError(CORRUPTED.format(name=label, index=index)) from None
        if final:
            return
        index, current = index + 1, following


def age_recipient() -> str:
    """The public key copy 2 is encrypted to.

    Without BACKUP_AGE_RECIPIENT (development only: production requires it)
    an identity is generated once into BACKUP_AGE_IDENTITY_FILE.
    """
    if settings.BACKUP_AGE_RECIPIENT:
        return settings.BACKUP_AGE_RECIPIENT
    if not settings.BACKUP_AGE_IDENTITY_FILE:
        raise BackupCryptoError(NO_RECIPIENT)
    path = Path(settings.BACKUP_AGE_IDENTITY_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(str(x25519.Identity.generate()) + "\n")
        path.chmod(0o600)
    return str(age_identity().to_public())


def age_identity() -> x25519.Identity:
    path = Path(settings.BACKUP_AGE_IDENTITY_FILE or "/nonexistent")
    if not path.exists():
        raise BackupCryptoError(AGE_NO_IDENTITY)
    lines = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if not lines:
        raise BackupCryptoError(AGE_NO_IDENTITY)
    return x25519.Identity.from_str(lines[0])


def age_encrypt(chunks: Iterable[bytes], out: BinaryIO, recipient: str) -> None:
    pyrage.encrypt_io(IterReader(chunks), out, [x25519.Recipient.from_str(recipient)])


def age_decrypt(source: BinaryIO) -> Iterator[bytes]:
    """Yield the plaintext of an age file, decrypted in a thread through a pipe."""
    identity = age_identity()
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def pump() -> None:
        with open(write_fd, "wb") as writer:
            try:
                pyrage.decrypt_io(source, writer, [identity])
            except BrokenPipeError:
                pass
            except Exception as exc:  # handed to the reading side
                failure.append(exc)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    with open(read_fd, "rb") as reader:
        try:
            while piece := reader.read(CHUNK):
                yield piece
        finally:
            reader.close()
            thread.join()
    if failure:
        if isinstance(failure[0], pyrage.DecryptError) and "No matching" in str(
            failure[0]
        ):
            raise BackupCryptoError(AGE_WRONG_KEY) from failure[0]
        raise BackupCryptoError(f"age: {failure[0]}") from failure[0]


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def manifest_seal(document: dict) -> bytes:
    """Serialise a manifest with its HMAC-SHA256 under BACKUP_MANIFEST_KEY."""
    mac = hmac.new(manifest_key(), _canonical(document), "sha256")
    return json.dumps(
        {"manifest": document, "hmac_sha256": mac.hexdigest()}, indent=1
    ).encode()


def manifest_open(raw: bytes) -> dict:
    """Return the manifest if its MAC holds; raise ``BackupCryptoError`` if not."""
    try:
        sealed = json.loads(raw)
        document, mac = sealed["manifest"], sealed["hmac_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupCryptoError(MANIFEST_FORGED) from exc
    expected = hmac.new(manifest_key(), _canonical(document), "sha256").hexdigest()
    if not hmac.compare_digest(expected, str(mac)):
        raise BackupCryptoError(MANIFEST_FORGED)
    return document
