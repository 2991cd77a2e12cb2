"""Encryption of backup artifacts, and the manifest's MAC.

Copy 1 (and copy 3, its offsite twin) uses a streaming AEAD: AES-256-GCM over
1 MiB chunks, each nonce carrying the chunk index and a final-chunk flag, so
a reordered, dropped, or truncated chunk fails authentication. Every file
has its own random salt, from which HKDF derives the file's key; the header
(magic, key id, salt) is authenticated with every chunk.

Copy 2 uses age (X25519) through pyrage: the backup host holds only the
public key and cannot read what it wrote.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from pyrage import x25519

from kreo.streams import IterReader

MAGIC = b"KREOBK1\n"
CHUNK = 1024 * 1024
TAG = 16
SALT = 32
KEY_ID = 8
HEADER = len(MAGIC) + KEY_ID + SALT

WRONG_KEY = (
    "This artifact was encrypted under a different backup key "
    "(BACKUP_ENCRYPTION_KEY); nothing was restored."
)
NOT_AN_ARTIFACT = "This file is not a Kreo backup artifact (bad header)."
CORRUPTED = "The artifact failed authentication at chunk {index}: corrupted."
TRUNCATED = "The artifact is truncated: its final chunk is missing."
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


def _key_id(key: bytes) -> bytes:
    return hmac.new(key, b"kreo-backup-key-id", hashlib.sha256).digest()[:KEY_ID]


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"kreo-backup-v1"
    ).derive(key)
    return AESGCM(derived)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


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


def rechunk(chunks: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Regroup a byte stream into pieces of exactly ``size`` (the last shorter)."""
    buffer = bytearray()
    for piece in chunks:
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    yield bytes(buffer)


def aead_encrypt(chunks: Iterable[bytes], out: BinaryIO, key: bytes) -> None:
    """Encrypt a plaintext stream into ``out`` in authenticated chunks."""
    salt = os.urandom(SALT)
    header = MAGIC + _key_id(key) + salt
    aead = _file_key(key, salt)
    out.write(header)
    pending: bytes | None = None
    index = 0
    for piece in rechunk(chunks):
        if pending is not None:
            out.write(aead.encrypt(_nonce(index, False), pending, header))
            index += 1
        pending = piece
    out.write(aead.encrypt(_nonce(index, True), pending or b"", header))


def aead_decrypt(source: BinaryIO, key: bytes) -> Iterator[bytes]:
    """Yield the plaintext of an artifact, authenticating every chunk.

    Raises ``BackupCryptoError`` on a wrong key, a corrupted chunk, or a
    missing tail; plaintext already yielded must be discarded by the caller.
    """
    header = source.read(HEADER)
    if len(header) < HEADER or not header.startswith(MAGIC):
        raise BackupCryptoError(NOT_AN_ARTIFACT)
    if not hmac.compare_digest(header[len(MAGIC) : len(MAGIC) + KEY_ID], _key_id(key)):
        raise BackupCryptoError(WRONG_KEY)
    aead = _file_key(key, header[-SALT:])
    index = 0
    block = source.read(CHUNK + TAG)
    while True:
        following = source.read(CHUNK + TAG) if len(block) == CHUNK + TAG else b""
        final = not following
        try:
            yield aead.decrypt(_nonce(index, final), block, header)
        except InvalidTag as exc:
            if final and _is_inner_chunk(aead, index, block, header):
                raise BackupCryptoError(TRUNCATED) from exc
            raise BackupCryptoError(CORRUPTED.format(index=index)) from exc
        if final:
            return
        block = following
        index += 1


def _is_inner_chunk(aead: AESGCM, index: int, block: bytes, header: bytes) -> bool:
    try:
        aead.decrypt(_nonce(index, False), block, header)
    except InvalidTag:
        return False
    return True


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


def file_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as source:
        while piece := source.read(size):
            yield piece


def sha256_of(chunks: Iterable[bytes], progress: Callable | None = None) -> str:
    digest = hashlib.sha256()
    for piece in chunks:
        digest.update(piece)
    return digest.hexdigest()
