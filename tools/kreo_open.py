#!/usr/bin/env python3
"""Open and verify Kreo's stored objects without the application.

For an operator recovering from backups or an auditor checking archives:
one file, Python 3.11 and ``cryptography`` only, nothing imported from the
project, so it runs where the application cannot (docs/FORMATS.md, section
7). It implements the reading side of docs/FORMATS.md:

    open            a sealed object (KREOSEAL v1) or one of the older
                    framings (KREOF1, KREOBK1, KREOAUD1), chosen by magic
    backup-verify   a copy-1 backup set folder: manifest MAC, every
                    artifact's size and SHA-256, every artifact opens;
                    ``--out`` writes the plaintexts (the database dump)
    audit-verify    an audit archive: every event's content hash, the seals'
                    hash chain and Ed25519 signatures
    pack-verify     a compliance evidence pack (zip or its unpacked folder):
                    the manifest's Ed25519 signature with the published
                    public key, then every file's size and SHA-256
    audit-verify-folder
                    every archive of a folder copy, each linked to the one
                    before from the genesis head

Plaintext is written under a temporary name and renamed once the last chunk
has opened, so a failure leaves nothing behind. Exit status 1 on any error.
Keys may come from the environment under their application names
(BACKUP_ENCRYPTION_KEY, BACKUP_MANIFEST_KEY, AUDIT_ARCHIVE_KEY), which keeps
them off the command line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import hashlib
import hmac
import json
import os
import struct
import sys
import tempfile
import uuid
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TAG = 16
# KREOSEAL v1 (docs/FORMATS.md section 1).
SEAL_MAGIC = b"KREOSEAL"
SEAL_HEADER = 53
SEAL_MIN_CHUNK, SEAL_MAX_CHUNK = 1024, 16 * 1024 * 1024
MAX_CHUNKS = 2**32
# The older framings, read-only (docs/FORMATS.md section 6).
F1_MAGIC, F1_HEADER, F1_CHUNK = b"KREOF1\x00\x00", 16, 64 * 1024
BK1_MAGIC, BK1_HEADER, BK1_CHUNK = b"KREOBK1\n", 48, 1024 * 1024
AUD1_MAGIC, AUD1_HEADER, AUD1_CHUNK = b"KREOAUD1", 16, 1024 * 1024
MAGICS = {
    SEAL_MAGIC: "KREOSEAL",
    F1_MAGIC: "KREOF1",
    BK1_MAGIC: "KREOBK1",
    AUD1_MAGIC: "KREOAUD1",
}
MANIFEST = "manifest.json"
GENESIS = "0" * 64
DIGEST = struct.Struct(">q32s")
# Columns of an audit event's content hash, in this order (audit/chain.py).
CONTENT_FIELDS = (
    "occurred_at",
    "event_type",
    "outcome",
    "actor_id",
    "actor_label",
    "session_hash",
    "source_ip",
    "source_port",
    "user_agent",
    "device_id",
    "server_host",
    "method",
    "path",
    "status_code",
    "target_type",
    "target_id",
    "release",
    "commit",
    "error_code",
    "error_description",
    "correlation_id",
    "details",
)

UNKNOWN_MAGIC = "{name}: not a Kreo object (magic {magic!r} is none of {known})."
UNKNOWN_VERSION = "{name}: KREOSEAL version {version} is unknown to this tool."
BAD_HEADER = "{name}: the {fmt} header is cut short or its chunk size is invalid."
WRONG_KEY = "{name}: {fmt} under another key (key id {found}, this key's is {mine})."
TAMPERED = (
    "{name}: chunk {index} failed authentication: altered, moved from another "
    "object, wrong key or wrong context."
)
TRUNCATED = "{name}: truncated after chunk {index}: the final chunk is missing."
TRAILING = "{name}: bytes follow the final chunk {index}."
NO_CHUNK = "{name}: truncated: no chunk after the header."
TOO_MANY = "{name}: more than 2^32 chunks."
NEEDS_CONTEXT = "{name}: a {fmt} object needs its context ({what})."
BAD_KEY = "{what}: a key is 32 bytes in base64 (URL-safe or standard)."
NO_KEY = "{what}: give it as an option or in the environment variable {env}."
MANIFEST_FORGED = "{name}: the manifest's MAC does not match: altered or wrong key."
MANIFEST_UNREADABLE = "{name}: not a Kreo backup manifest ({error})."
ARTIFACT_MISSING = "{name}: listed in the manifest, missing from {folder}."
ARTIFACT_DIFFERS = "{name}: {what} differs from the manifest."
ARCHIVE_UNREADABLE = "{name}: the archive's contents are unreadable ({error})."
EVENT_HASH = "event {id}: content does not match its content hash."
EVENT_MAC = "event {id}: MAC does not verify under key id {kid!r} (forged or altered)."
EVENT_MAC_KEY = "event {id}: MAC key id {kid!r} is not in --event-key."
EVENT_NO_MAC = "event {id}: has no MAC but follows keyed events."
EVENT_REJECTED = "event {id}: rejected by seal {seq} (its MAC failed when sealed)."
BAD_EVENT_KEY = (
    "--event-key: AUDIT_EVENT_KEY as the application has it, id:secret[,id:secret...]."
)
NO_EVENT_KEY = "keyed events: MACs not checked (give --event-key or AUDIT_EVENT_KEY)."
EVENT_ORDER = "event {id}: out of order (follows event {previous})."
EVENT_UNSEALED = "event {id}: in no seal of this archive."
SEAL_FOLLOWS = "seal {seq}: does not follow seal {previous} (a seal is missing)."
SEAL_GAP = "seal {seq}: starts at event {first}, seal {previous} ended at {last}."
SEAL_LINK = "seal {seq}: its previous head is not seal {previous}'s head."
SEAL_START = (
    "seal {seq}: its previous head is not the genesis (seal 1: 64 zeros) or "
    "the --prev-head given (the last head of the archive before)."
)
SEAL_EVENTS = (
    "seal {seq} (events {first}..{last}): the archive's events there do not "
    "rebuild its head or count: an event was removed, added or its hash changed."
)
SEAL_TIMES = "seal {seq}: its time range is not that of its events ({found})."
SEAL_SIGNATURE = "seal {seq}: the signature does not verify with the public key."
SEAL_KEY = "seal {seq}: signed by key id {found}, the public key's is {mine}."
SEAL_AT_CUT = "the last seal ({seq}) is not the manifest's seal_at_cut ({cut})."
NO_SEALS = (
    "no seal records (a manifest written before KREOSEAL, or none given with "
    "--manifest): content hashes checked, no signature to check."
)
MANIFEST_RANGE = "event {id}: outside the manifest's range {first}..{last}."
MANIFEST_MISMATCH = "the {field} is {found}, the manifest says {expected}."
MALFORMED = "a manifest or archive line lacks what this format needs ({error})."
BAD_PUBLIC_KEY = "--public-key: the raw Ed25519 key in base64 (audit_public_key)."


class KreoOpenError(Exception):
    """An object cannot be opened or verified; the message names where."""


# -- keys ------------------------------------------------------------------


def decode_key(text: str, what: str) -> bytes:
    raw = (text or "").strip()
    try:
        key = base64.b64decode(
            raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise KreoOpenError(BAD_KEY.format(what=what)) from exc
    if len(key) != 32:
        raise KreoOpenError(BAD_KEY.format(what=what))
    return key


def key_from(value: str | None, path: str | None, env: str, what: str) -> bytes:
    """A 32-byte key from an option, a file (base64 text or 32 raw bytes) or env."""
    if path:
        data = Path(path).read_bytes()
        return data if len(data) == 32 else decode_key(data.decode(), what)
    value = value or os.environ.get(env, "")
    if not value:
        raise KreoOpenError(NO_KEY.format(what=what, env=env))
    return decode_key(value, what)


def audit_archive_key(secret: str) -> bytes:
    """The archive key the application derives from AUDIT_ARCHIVE_KEY."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"kreo-audit",
        info=b"archive-aes-256-gcm-v1",
    ).derive(secret.encode())


def audit_event_keys(ring: str) -> dict[str, bytes]:
    """The event MAC keys the application derives from AUDIT_EVENT_KEY, by id."""
    keys = {}
    for entry in ring.split(","):
        if not entry.strip():
            continue
        kid, colon, secret = entry.strip().partition(":")
        if not colon or not kid.strip() or not secret.strip():
            raise KreoOpenError(BAD_EVENT_KEY)
        keys[kid.strip()] = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"kreo-audit",
            info=b"event-mac-hmac-sha256-v1",
        ).derive(secret.strip().encode())
    if not keys:
        raise KreoOpenError(BAD_EVENT_KEY)
    return keys


# -- opening ---------------------------------------------------------------


def _read_exact(source: BinaryIO, size: int) -> bytes:
    data = source.read(size)
    while 0 < len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _pieces(source: BinaryIO, size: int) -> Iterator[tuple[int, bytes, bool]]:
    """(index, sealed chunk, is final) reading one chunk ahead; a piece shorter
    than ``size`` or one followed by the end is the final one."""
    index, piece = 0, _read_exact(source, size)
    while True:
        following = _read_exact(source, size) if len(piece) == size else b""
        yield index, piece, not following
        if not following:
            return
        piece, index = following, index + 1


def _open_final(aead: AESGCM, name: str, index: int, sealed: bytes, nonce_aad):
    """Open the last chunk; if it opens only as an inner one, the object was cut."""
    nonce, aad = nonce_aad(index, True)
    try:
        return aead.decrypt(nonce, sealed, aad)
    except InvalidTag as exc:
        inner_nonce, inner_aad = nonce_aad(index, False)
        try:
            aead.decrypt(inner_nonce, sealed, inner_aad)
        except InvalidTag:
            raise KreoOpenError(TAMPERED.format(name=name, index=index)) from exc
        raise KreoOpenError(TRUNCATED.format(name=name, index=index)) from exc


def _open_chunks(
    source: BinaryIO,
    name: str,
    aead: AESGCM,
    size: int,
    nonce_aad: Callable[[int, bool], tuple[bytes, bytes]],
) -> Iterator[bytes]:
    """Open fixed-size chunks (KREOSEAL, KREOF1, KREOBK1) in order."""
    for index, sealed, final in _pieces(source, size + TAG):
        if index >= MAX_CHUNKS:
            raise KreoOpenError(TOO_MANY.format(name=name))
        if not sealed and index == 0:
            raise KreoOpenError(NO_CHUNK.format(name=name))
        if final:
            yield _open_final(aead, name, index, sealed, nonce_aad)
            return
        nonce, aad = nonce_aad(index, False)
        try:
            yield aead.decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise KreoOpenError(TAMPERED.format(name=name, index=index)) from exc


def open_sealed(source: BinaryIO, key: bytes, context: bytes, name: str):
    """KREOSEAL v1: docs/FORMATS.md section 1."""
    header = _read_exact(source, SEAL_HEADER)
    if len(header) >= 9 and header[8] != 1:
        raise KreoOpenError(UNKNOWN_VERSION.format(name=name, version=header[8]))
    if len(header) < SEAL_HEADER:
        raise KreoOpenError(BAD_HEADER.format(name=name, fmt="KREOSEAL"))
    (size,) = struct.unpack(">I", header[9:13])
    if not SEAL_MIN_CHUNK <= size <= SEAL_MAX_CHUNK:
        raise KreoOpenError(BAD_HEADER.format(name=name, fmt="KREOSEAL"))
    mine = hmac.new(key, b"kreo-sealed-key-id", hashlib.sha256).digest()[:8]
    if not hmac.compare_digest(mine, header[13:21]):
        raise KreoOpenError(
            WRONG_KEY.format(
                name=name, fmt="KREOSEAL", found=header[13:21].hex(), mine=mine.hex()
            )
        )
    okm = HKDF(
        algorithm=hashes.SHA256(), length=39, salt=header[21:53], info=b"kreo-sealed-v1"
    ).derive(key)
    prefix, aad = okm[32:39], header + context

    def nonce_aad(index: int, final: bool) -> tuple[bytes, bytes]:
        return prefix + struct.pack(">IB", index, int(final)), aad

    count = 0
    for plain in _open_chunks(source, name, AESGCM(okm[:32]), size, nonce_aad):
        yield plain
        count += 1
    if source.read(1):
        raise KreoOpenError(TRAILING.format(name=name, index=count - 1))


def open_f1(source: BinaryIO, key: bytes, context: bytes, name: str):
    """KREOF1 project files: the context is the file's id (16 raw bytes)."""
    header = _read_exact(source, F1_HEADER)
    if len(header) < F1_HEADER:
        raise KreoOpenError(BAD_HEADER.format(name=name, fmt="KREOF1"))
    if len(context) != 16:
        raise KreoOpenError(
            NEEDS_CONTEXT.format(name=name, fmt="KREOF1", what="the file's UUID")
        )
    prefix = header[8:]

    def nonce_aad(index: int, final: bool) -> tuple[bytes, bytes]:
        return prefix + struct.pack(">I", index), header + context + struct.pack(
            ">QB", index, int(final)
        )

    yield from _open_chunks(source, name, AESGCM(key), F1_CHUNK, nonce_aad)


def open_bk1(source: BinaryIO, key: bytes, context: bytes, name: str):
    """KREOBK1 backup artifacts: HKDF per file, the header is the AAD."""
    header = _read_exact(source, BK1_HEADER)
    if len(header) < BK1_HEADER:
        raise KreoOpenError(BAD_HEADER.format(name=name, fmt="KREOBK1"))
    mine = hmac.new(key, b"kreo-backup-key-id", hashlib.sha256).digest()[:8]
    if not hmac.compare_digest(mine, header[8:16]):
        raise KreoOpenError(
            WRONG_KEY.format(
                name=name, fmt="KREOBK1", found=header[8:16].hex(), mine=mine.hex()
            )
        )
    file_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=header[16:], info=b"kreo-backup-v1"
    ).derive(key)

    def nonce_aad(index: int, final: bool) -> tuple[bytes, bytes]:
        return index.to_bytes(11, "big") + bytes([final]), header

    yield from _open_chunks(source, name, AESGCM(file_key), BK1_CHUNK, nonce_aad)


def open_aud1(source: BinaryIO, key: bytes, context: bytes, name: str):
    """KREOAUD1 audit archives: length-prefixed chunks, the object key in the AAD."""
    header = _read_exact(source, AUD1_HEADER)
    if len(header) < AUD1_HEADER:
        raise KreoOpenError(BAD_HEADER.format(name=name, fmt="KREOAUD1"))
    if not context:
        raise KreoOpenError(
            NEEDS_CONTEXT.format(name=name, fmt="KREOAUD1", what="its S3 object key")
        )
    prefix, aead = header[8:], AESGCM(key)

    def nonce_aad(index: int, final: bool) -> tuple[bytes, bytes]:
        aad = AUD1_MAGIC + context + struct.pack(">IB", index, int(final))
        return prefix + struct.pack(">I", index), aad

    index, length = 0, _read_exact(source, 4)
    if not length:
        raise KreoOpenError(NO_CHUNK.format(name=name))
    while length:
        if len(length) != 4:
            raise KreoOpenError(TAMPERED.format(name=name, index=index))
        (size,) = struct.unpack(">I", length)
        if size > AUD1_CHUNK + TAG:  # the writer's chunks: at most 1 MiB
            raise KreoOpenError(TAMPERED.format(name=name, index=index))
        sealed = _read_exact(source, size)
        length = _read_exact(source, 4)
        if length:
            nonce, aad = nonce_aad(index, False)
            try:
                yield aead.decrypt(nonce, sealed, aad)
            except InvalidTag as exc:
                raise KreoOpenError(TAMPERED.format(name=name, index=index)) from exc
        else:
            yield _open_final(aead, name, index, sealed, nonce_aad)
        index += 1


OPENERS = {
    SEAL_MAGIC: open_sealed,
    F1_MAGIC: open_f1,
    BK1_MAGIC: open_bk1,
    AUD1_MAGIC: open_aud1,
}


class _Peeked:
    """A binary source whose first bytes were already read (to see the magic)."""

    def __init__(self, head: bytes, source: BinaryIO):
        self.head, self.source = head, source

    def read(self, size: int) -> bytes:
        if self.head:
            out, self.head = self.head[:size], self.head[size:]
            return out + (self.source.read(size - len(out)) if size > len(out) else b"")
        return self.source.read(size)


def format_of(head: bytes, name: str) -> str:
    for magic, label in MAGICS.items():
        if head.startswith(magic):
            return label
    raise KreoOpenError(
        UNKNOWN_MAGIC.format(
            name=name, magic=head[:8], known=", ".join(MAGICS.values())
        )
    )


def open_object(
    source: BinaryIO, key: bytes, context: bytes, name: str
) -> Iterator[bytes]:
    """The plaintext chunks of any Kreo object, its framing chosen by magic."""
    head = _read_exact(source, 8)
    format_of(head, name)
    return OPENERS[head](_Peeked(head, source), key, context, name)


def write_atomic(target: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write under a temporary name, rename once every chunk has opened.

    Return (size, SHA-256) of what was written; on any error nothing is left.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial", dir=target.parent
    )
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(descriptor, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def context_bytes(args) -> bytes:
    if args.context_hex:
        return bytes.fromhex(args.context_hex)
    if args.context_uuid:
        return uuid.UUID(args.context_uuid).bytes
    return (args.context or "").encode()


def cmd_open(args) -> int:
    if args.archive_key:
        key = audit_archive_key(args.archive_key)
    else:
        key = key_from(args.key_b64, args.key_file, "KREO_OPEN_KEY", "the key")
    name = args.name or str(args.input)
    with open(args.input, "rb") as source:
        size, digest = write_atomic(
            Path(args.output), open_object(source, key, context_bytes(args), name)
        )
    _say(f"{name}: opened, {size} bytes written to {args.output} (SHA-256 {digest})")
    return 0


# -- backup sets -----------------------------------------------------------


def read_manifest(folder: Path, key: bytes) -> dict:
    """The copy's manifest, its HMAC-SHA256 checked (docs/FORMATS.md section 2)."""
    path = folder / MANIFEST
    try:
        sealed = json.loads(path.read_bytes())
        document, mac = sealed["manifest"], sealed["hmac_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KreoOpenError(MANIFEST_UNREADABLE.format(name=path, error=exc)) from exc
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    expected = hmac.new(key, canonical, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(mac)):
        raise KreoOpenError(MANIFEST_FORGED.format(name=path))
    return document


class HashingReader:
    """Read a file while counting its bytes and computing their SHA-256."""

    def __init__(self, source: BinaryIO):
        self.source, self.sha256, self.size = source, hashlib.sha256(), 0

    def read(self, size: int) -> bytes:
        data = self.source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1024 * 1024):
            pass


def verify_artifact(
    folder: Path, set_id: int, name: str, entry: dict, key: bytes, out: Path | None
) -> str:
    """Check one artifact's size and SHA-256 while opening it; return a summary."""
    path = folder / name
    if not path.is_file():
        raise KreoOpenError(ARTIFACT_MISSING.format(name=name, folder=folder))
    context = f"kreo-backup/{set_id}/{name}".encode()
    with open(path, "rb") as raw:
        source = HashingReader(raw)
        head = _read_exact(source, 8)
        fmt = format_of(head, str(path))
        plain = OPENERS[head](_Peeked(head, source), key, context, str(path))

        def checked() -> Iterator[bytes]:
            yield from plain
            source.drain()  # the SHA-256 covers every byte of the file
            if (source.sha256.hexdigest(), source.size) != (
                entry.get("sha256"),
                entry.get("size"),
            ):
                raise KreoOpenError(
                    ARTIFACT_DIFFERS.format(name=name, what="SHA-256 or size")
                )

        if out is not None:
            target = out / (name.removesuffix(".enc"))
            size, plain_sha = write_atomic(target, checked())
        else:
            plain_sha, size = hashlib.sha256(), 0
            for chunk in checked():
                plain_sha.update(chunk)
                size += len(chunk)
            plain_sha = plain_sha.hexdigest()
    if entry.get("plain_sha256") and entry["plain_sha256"] != plain_sha:
        if out is not None:
            target.unlink()
        raise KreoOpenError(
            ARTIFACT_DIFFERS.format(name=name, what="the plaintext's SHA-256")
        )
    where = f" -> {target}" if out is not None else ""
    return f"{name}: {fmt}, {size} bytes of plaintext, SHA-256 matches{where}"


def cmd_backup_verify(args) -> int:
    folder = Path(args.set_dir)
    manifest_key = key_from(
        args.manifest_key, args.manifest_key_file, "BACKUP_MANIFEST_KEY", "manifest key"
    )
    key = key_from(
        args.encryption_key,
        args.encryption_key_file,
        "BACKUP_ENCRYPTION_KEY",
        "encryption key",
    )
    manifest = read_manifest(folder, manifest_key)
    set_id = manifest["set_id"]
    _say(
        f"backup set {set_id} ({manifest.get('engine')}, "
        f"{manifest.get('created_at')}): manifest MAC verified"
    )
    out = Path(args.out) if args.out else None
    failed = 0
    for name, entry in sorted(manifest["copies"]["1"]["artifacts"].items()):
        try:
            _say(verify_artifact(folder, set_id, name, entry, key, out))
        except (KreoOpenError, OSError) as exc:
            _complain(str(exc))
            failed += 1
    if failed:
        _complain(f"backup set {set_id}: {failed} artifact(s) failed")
        return 1
    _say(f"backup set {set_id}: copy 1 verified")
    return 0


# -- audit archives --------------------------------------------------------


def canonical(row: dict) -> bytes:
    """An event's canonical form (docs/FORMATS.md section 3): ``v1``, or
    ``v2`` with its event uid and MAC key id for a keyed event."""
    values = {name: row.get(name) for name in CONTENT_FIELDS}
    if row.get("spooled"):
        values["spooled"] = True
    if values["actor_id"] is not None:
        values["actor_id"] = str(values["actor_id"])
    version = "v1"
    if row.get("event_uid"):
        version = "v2"
        values["event_uid"] = str(row["event_uid"])
        values["mac_key_id"] = row.get("mac_key_id") or ""
    return json.dumps(
        [version, values], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def content_hash(row: dict) -> str:
    """SHA-256 of an event's canonical form."""
    return hashlib.sha256(canonical(row)).hexdigest()


def is_keyed(row: dict) -> bool:
    return bool(row.get("event_uid") or row.get("mac_key_id") or row.get("mac"))


def mac_problem(row: dict, keys: dict[str, bytes]) -> str | None:
    """Why a keyed event's HMAC-SHA256 fails under ``keys``, or None."""
    pk, kid = row["id"], row.get("mac_key_id") or ""
    if kid not in keys:
        return EVENT_MAC_KEY.format(id=pk, kid=kid)
    made = hmac.new(keys[kid], canonical(row), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(made, row.get("mac") or ""):
        return EVENT_MAC.format(id=pk, kid=kid)
    return None


def seal_text(seal: dict) -> bytes:
    text = (
        f"kreo-audit-seal-v1|{seal['seq']}|{seal['first_id']}|{seal['last_id']}|"
        f"{seal['count']}|{seal['first_at']}|{seal['last_at']}|"
        f"{seal['prev_head']}|{seal['head']}|{seal['key_id']}"
    )
    if seal.get("keyed"):
        text += "|keyed|rejected=" + ",".join(map(str, seal.get("rejected") or []))
    return text.encode()


def archive_rows(chunks: Iterable[bytes], name: str) -> Iterator[dict]:
    """The JSON lines of a gzip stream."""
    unzip, tail = zlib.decompressobj(31), b""
    try:
        for chunk in chunks:
            tail += unzip.decompress(chunk)
            *lines, tail = tail.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
        tail += unzip.flush()
        if not unzip.eof:
            raise ValueError("the gzip stream is cut short")
        if tail.strip():
            yield json.loads(tail)
    except (zlib.error, ValueError) as exc:
        raise KreoOpenError(ARCHIVE_UNREADABLE.format(name=name, error=exc)) from exc


class ArchiveCheck:
    """An archive's events against its seal records (docs/FORMATS.md section 4,
    "Verifying an archive on its own"). Events are kept as packed (id, hash)
    pairs, 40 bytes each, so a million-event archive needs about 50 MB."""

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        raw_public: bytes,
        event_keys: dict[str, bytes] | None = None,
    ):
        self.public_key = public_key
        # Without the event keys, keyed events' MACs are counted, not checked.
        self.event_keys = event_keys
        self.keyed = False
        self.macs = 0
        self.unchecked = 0
        self.legacy = 0
        self.key_id = hashlib.sha256(raw_public).hexdigest()[:16]
        self.ids = array("q")
        self.times: list[datetime] = []
        self.digests = bytearray()
        self.seals: list[dict] = []
        self.problems: list[str] = []
        self.prev_head = ""

    def add(self, row: dict) -> None:
        pk = int(row["id"])
        if content_hash(row) != row.get("content_hash"):
            self.problems.append(EVENT_HASH.format(id=pk))
        self._check_mac(pk, row)
        if self.ids and pk <= self.ids[-1]:
            self.problems.append(EVENT_ORDER.format(id=pk, previous=self.ids[-1]))
        self.ids.append(pk)
        self.times.append(datetime.fromisoformat(row["occurred_at"]))
        self.digests += DIGEST.pack(pk, bytes.fromhex(row["content_hash"]))

    def _check_mac(self, pk: int, row: dict) -> None:
        if not is_keyed(row):
            if self.keyed:
                self.problems.append(EVENT_NO_MAC.format(id=pk))
            else:
                self.legacy += 1
            return
        self.keyed = True
        if self.event_keys is None:
            self.unchecked += 1
            return
        self.macs += 1
        problem = mac_problem(row, self.event_keys)
        if problem:
            self.problems.append(problem)

    def finish(self) -> None:
        for seal in self.seals:
            for pk in seal.get("rejected") or []:
                self.problems.append(EVENT_REJECTED.format(id=pk, seq=seal["seq"]))
        previous = None
        covered = 0
        for seal in self.seals:
            seq = int(seal["seq"])
            if previous is None:
                if seal["prev_head"] != (GENESIS if seq == 1 else self.prev_head):
                    if seq == 1 or self.prev_head:
                        self.problems.append(SEAL_START.format(seq=seq))
            elif seq != int(previous["seq"]) + 1:
                self.problems.append(
                    SEAL_FOLLOWS.format(seq=seq, previous=previous["seq"])
                )
            else:
                if int(seal["first_id"]) != int(previous["last_id"]) + 1:
                    self.problems.append(
                        SEAL_GAP.format(
                            seq=seq,
                            first=seal["first_id"],
                            previous=previous["seq"],
                            last=previous["last_id"],
                        )
                    )
                if seal["prev_head"] != previous["head"]:
                    self.problems.append(
                        SEAL_LINK.format(seq=seq, previous=previous["seq"])
                    )
            covered += self._check_seal(seal)
            previous = seal
        if self.seals and covered != len(self.ids):
            ranges = [(int(s["first_id"]), int(s["last_id"])) for s in self.seals]
            for pk in self.ids:
                if not any(first <= pk <= last for first, last in ranges):
                    self.problems.append(EVENT_UNSEALED.format(id=pk))
                    break

    def _check_seal(self, seal: dict) -> int:
        """Rebuild the seal's head from the events in its range; return their
        number."""
        seq, first, last = int(seal["seq"]), int(seal["first_id"]), int(seal["last_id"])
        start = bisect.bisect_left(self.ids, first)
        end = bisect.bisect_right(self.ids, last)
        packed = bytes(self.digests[start * DIGEST.size : end * DIGEST.size])
        inner = hashlib.sha256(packed).digest()
        head = hashlib.sha256(bytes.fromhex(seal["prev_head"]) + inner).hexdigest()
        if head != seal["head"] or end - start != int(seal["count"]):
            self.problems.append(SEAL_EVENTS.format(seq=seq, first=first, last=last))
        elif end > start:
            span = (min(self.times[start:end]), max(self.times[start:end]))
            said = tuple(
                map(datetime.fromisoformat, (seal["first_at"], seal["last_at"]))
            )
            if span != said:
                found = f"{span[0].isoformat()}..{span[1].isoformat()}"
                self.problems.append(SEAL_TIMES.format(seq=seq, found=found))
        if seal["key_id"] != self.key_id:
            self.problems.append(
                SEAL_KEY.format(seq=seq, found=seal["key_id"], mine=self.key_id)
            )
        try:
            self.public_key.verify(bytes.fromhex(seal["signature"]), seal_text(seal))
        except (InvalidSignature, ValueError):
            self.problems.append(SEAL_SIGNATURE.format(seq=seq))
        return end - start


def compare_manifest(manifest: dict, check: ArchiveCheck, size: int, sha: str):
    """The manifest's claims against what was read: digest, size, count, range,
    the seal at the cut."""
    found = {"sha256": sha, "size": size, "count": len(check.ids)}
    for field, value in found.items():
        if field in manifest and manifest[field] != value:
            check.problems.append(
                MANIFEST_MISMATCH.format(
                    field=field, found=value, expected=manifest[field]
                )
            )
    first, last = manifest.get("first_id"), manifest.get("last_id")
    if first is not None and last is not None:
        for pk in check.ids:
            if not first <= pk <= last:
                check.problems.append(
                    MANIFEST_RANGE.format(id=pk, first=first, last=last)
                )
                break
    cut = manifest.get("seal_at_cut") or {}
    if check.seals and cut:
        end = check.seals[-1]
        if (int(end["seq"]), end["head"], end["signature"]) != (
            cut.get("seq"),
            cut.get("head"),
            cut.get("signature"),
        ):
            check.problems.append(
                SEAL_AT_CUT.format(seq=end["seq"], cut=cut.get("seq"))
            )


def cmd_audit_verify_folder(args) -> int:
    """Every archive of a folder copy, in id order, each linked to the one
    before (its first seal's prev head is the previous archive's last head;
    the first archive starts at the genesis head)."""
    folder = Path(args.folder)
    found = []
    for path in sorted(folder.rglob("*.manifest.json")):
        manifest = json.loads(path.read_bytes())
        found.append((int(manifest["first_id"]), path, manifest))
    if not found:
        raise KreoOpenError(f"{folder}: no *.manifest.json found")
    failed, prev_head = 0, GENESIS
    for _, path, manifest in sorted(found, key=lambda item: item[0]):
        one = argparse.Namespace(**vars(args))
        one.manifest = str(path)
        one.archive = str(path.parent / Path(manifest["object"]).name)
        one.context = None
        one.prev_head = prev_head
        failed += cmd_audit_verify(one)
        cut = manifest.get("seal_at_cut") or {}
        prev_head = cut.get("head") or prev_head
    _say(f"{folder}: {len(found)} archives, {failed} NOT verified")
    return 1 if failed else 0


def cmd_audit_verify(args) -> int:
    try:
        raw_public = base64.b64decode(args.public_key, validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(raw_public)
    except (binascii.Error, ValueError) as exc:
        raise KreoOpenError(BAD_PUBLIC_KEY) from exc
    secret = args.archive_key or os.environ.get("AUDIT_ARCHIVE_KEY", "")
    if not secret:
        raise KreoOpenError(NO_KEY.format(what="archive key", env="AUDIT_ARCHIVE_KEY"))
    manifest = json.loads(Path(args.manifest).read_bytes()) if args.manifest else {}
    path = Path(args.archive)
    object_key = args.context or manifest.get("object") or ""
    name = object_key or path.name
    ring = args.event_key or os.environ.get("AUDIT_EVENT_KEY", "")
    check = ArchiveCheck(
        public_key, raw_public, audit_event_keys(ring) if ring else None
    )
    check.seals = sorted(manifest.get("seal_records") or [], key=lambda s: s["seq"])
    check.prev_head = args.prev_head or ""
    with open(path, "rb") as raw:
        source = HashingReader(raw)
        chunks = open_object(
            source, audit_archive_key(secret), object_key.encode(), name
        )
        for row in archive_rows(chunks, name):
            check.add(row)
        source.drain()
    check.finish()
    if manifest:
        compare_manifest(manifest, check, source.size, source.sha256.hexdigest())
    ids, seqs = check.ids, [int(s["seq"]) for s in check.seals]
    _say(
        f"{name}: {len(ids)} events"
        + (f" (ids {ids[0]}..{ids[-1]})" if ids else "")
        + f", {len(seqs)} seals"
        + (f" (seq {seqs[0]}..{seqs[-1]})" if seqs else "")
        + f", public key id {check.key_id}"
    )
    _say(
        f"{name}: {check.macs} event MACs checked, {check.legacy} legacy events "
        "(written before event MACs)"
    )
    if check.unchecked:
        _say(f"{name}: {check.unchecked} {NO_EVENT_KEY}")
    if not seqs:
        _say(f"{name}: {NO_SEALS}")
    for problem in check.problems:
        _complain(f"{name}: {problem}")
    if check.problems:
        _complain(f"{name}: {len(check.problems)} problem(s): NOT verified")
        return 1
    _say(f"{name}: verified" + (" (signatures checked)" if seqs else ""))
    return 0


# -- evidence packs (compliance/pack.py) -------------------------------------

PACK_MANIFEST, PACK_SIGNATURE = "manifest.json", "manifest.sig"
PACK_FORMAT = "kreo-evidence-pack-v1"
PACK_UNREADABLE = "{name}: not an evidence pack zip or folder ({error})."
PACK_NO_MEMBER = "{name}: holds no {member}: not an evidence pack, or cut short."
PACK_SIGNATURE_BAD = (
    "manifest.json: the signature (manifest.sig) does not verify with the public "
    "key (key id {mine}; the manifest names {named}): the manifest was altered "
    "or signed by another key."
)
PACK_FORMAT_UNKNOWN = "manifest.json: format {found!r} is unknown to this tool."
PACK_MISSING = "{member}: listed in the manifest, missing from the pack."
PACK_DIFFERS = (
    "{member}: SHA-256 {found} differs from the manifest's {expected}: altered."
)
PACK_SIZE = "{member}: {found} bytes, the manifest says {expected}: altered."
PACK_BROKEN = "{member}: unreadable in the archive ({error}): altered or damaged."
PACK_EXTRA = "{member}: in the pack but not in the manifest (added)."
PACK_BAD_NAME = "manifest.json: file name {member!r} is not a plain relative path."


def _public_key_arg(args) -> tuple[Ed25519PublicKey, bytes]:
    """The published key: --public-key (raw, base64) or --public-key-file (PEM)."""
    from cryptography.hazmat.primitives import serialization

    try:
        if args.public_key_file:
            key = serialization.load_pem_public_key(
                Path(args.public_key_file).read_bytes()
            )
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
        else:
            key = Ed25519PublicKey.from_public_bytes(
                base64.b64decode(args.public_key or "", validate=True)
            )
    except (binascii.Error, ValueError, TypeError) as exc:
        raise KreoOpenError(BAD_PUBLIC_KEY) from exc
    raw = key.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )
    return key, raw


class _PackSource:
    """A pack's members by name, from its zip or from the folder it was
    unpacked into."""

    def __init__(self, path: Path):
        import zipfile

        self.path, self.name = path, path.name
        self.zip = None
        if not path.is_dir():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise KreoOpenError(
                    PACK_UNREADABLE.format(name=self.name, error=exc)
                ) from exc

    def names(self) -> set[str]:
        if self.zip is not None:
            return {i.filename for i in self.zip.infolist() if not i.is_dir()}
        return {
            p.relative_to(self.path).as_posix()
            for p in self.path.rglob("*")
            if p.is_file()
        }

    def read(self, member: str) -> bytes:
        """The member's bytes; ``KeyError`` if absent, ``ValueError`` if its
        stored form is damaged (a zip CRC or deflate error)."""
        import zipfile

        if self.zip is None:
            target = self.path / member
            if not target.is_file():
                raise KeyError(member)
            return target.read_bytes()
        try:
            return self.zip.read(member)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ValueError(str(exc) or type(exc).__name__) from exc


def _pack_member_problem(source: _PackSource, entry: dict) -> str | None:
    member = entry["name"]
    if member.startswith("/") or ".." in member.split("/"):
        return PACK_BAD_NAME.format(member=member)
    try:
        data = source.read(member)
    except KeyError:
        return PACK_MISSING.format(member=member)
    except ValueError as exc:
        return PACK_BROKEN.format(member=member, error=exc)
    found = hashlib.sha256(data).hexdigest()
    if found != entry["sha256"]:
        return PACK_DIFFERS.format(member=member, found=found, expected=entry["sha256"])
    if len(data) != int(entry["size"]):
        return PACK_SIZE.format(member=member, found=len(data), expected=entry["size"])
    return None


def cmd_pack_verify(args) -> int:
    public_key, raw_public = _public_key_arg(args)
    mine = hashlib.sha256(raw_public).hexdigest()[:16]
    source = _PackSource(Path(args.pack))
    name = source.name
    try:
        manifest_bytes = source.read(PACK_MANIFEST)
        signature = source.read(PACK_SIGNATURE)
    except KeyError as exc:
        raise KreoOpenError(
            PACK_NO_MEMBER.format(name=name, member=exc.args[0])
        ) from exc
    except ValueError as exc:
        raise KreoOpenError(PACK_UNREADABLE.format(name=name, error=exc)) from exc
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        try:
            named = json.loads(manifest_bytes).get("key_id", "none")
        except (ValueError, AttributeError):
            named = "none (unreadable)"
        _complain(f"{name}: " + PACK_SIGNATURE_BAD.format(mine=mine, named=named))
        _complain(f"{name}: NOT verified")
        return 1
    manifest = json.loads(manifest_bytes)
    if manifest.get("format") != PACK_FORMAT:
        raise KreoOpenError(PACK_FORMAT_UNKNOWN.format(found=manifest.get("format")))
    period = manifest["period"]
    _say(
        f"{name}: manifest signature verified (Ed25519, key id {mine}); "
        f"period {period['from']} to {period['to']}, made {manifest['created_at']}"
    )
    problems = [
        problem
        for entry in manifest["files"]
        if (problem := _pack_member_problem(source, entry)) is not None
    ]
    listed = {entry["name"] for entry in manifest["files"]}
    extra = source.names() - listed - {PACK_MANIFEST, PACK_SIGNATURE}
    problems += [PACK_EXTRA.format(member=member) for member in sorted(extra)]
    for problem in problems:
        _complain(f"{name}: {problem}")
    if problems:
        _complain(f"{name}: {len(problems)} problem(s): NOT verified")
        return 1
    _say(f"{name}: {len(listed)} files, every size and SHA-256 matches: verified")
    return 0


# -- command line ----------------------------------------------------------


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")


def _complain(text: str) -> None:
    sys.stderr.write(f"kreo_open: {text}\n")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="kreo_open.py",
        description="Open and verify Kreo objects without the application "
        "(docs/FORMATS.md section 7).",
    )
    sub = top.add_subparsers(dest="command", required=True)

    opener = sub.add_parser("open", help="open one sealed object into a file")
    opener.add_argument("--key-b64", help="the 32-byte key, base64 (or KREO_OPEN_KEY)")
    opener.add_argument("--key-file", help="a file holding the key (base64 or raw)")
    opener.add_argument(
        "--archive-key",
        help="an audit archive: AUDIT_ARCHIVE_KEY, derived as the app does",
    )
    opener.add_argument("--context", help="the context, as text (UTF-8)")
    opener.add_argument("--context-hex", help="the context, as hex bytes")
    opener.add_argument("--context-uuid", help="the context: a file id (16 bytes)")
    opener.add_argument("--name", help="the object's name in messages")
    opener.add_argument("input")
    opener.add_argument("output")
    opener.set_defaults(run=cmd_open)

    backup = sub.add_parser("backup-verify", help="verify (and open) a copy-1 set")
    backup.add_argument("--manifest-key", help="BACKUP_MANIFEST_KEY (or env)")
    backup.add_argument("--manifest-key-file")
    backup.add_argument("--encryption-key", help="BACKUP_ENCRYPTION_KEY (or env)")
    backup.add_argument("--encryption-key-file")
    backup.add_argument("--out", help="write each artifact's plaintext here")
    backup.add_argument("set_dir", help="the set's folder in copy 1 (e.g. 00000042)")
    backup.set_defaults(run=cmd_backup_verify)

    audit = sub.add_parser("audit-verify", help="verify an audit archive object")
    audit.add_argument(
        "--public-key", required=True, help="manage.py audit_public_key (base64)"
    )
    audit.add_argument("--archive-key", help="AUDIT_ARCHIVE_KEY (or env)")
    audit.add_argument(
        "--event-key",
        help="AUDIT_EVENT_KEY (or env): id:secret[,id:secret...], every key id "
        "the archive's events name; checks each event's MAC",
    )
    audit.add_argument(
        "--manifest", help="the archive's .manifest.json: seal records, digest, count"
    )
    audit.add_argument(
        "--context", help="the archive's S3 object key (default: the manifest's)"
    )
    audit.add_argument(
        "--prev-head", help="the head of the archive before (its seal_at_cut head)"
    )
    audit.add_argument("archive")
    audit.set_defaults(run=cmd_audit_verify)

    pack = sub.add_parser(
        "pack-verify", help="verify a compliance evidence pack (zip or folder)"
    )
    key = pack.add_mutually_exclusive_group(required=True)
    key.add_argument("--public-key", help="manage.py audit_public_key (base64)")
    key.add_argument("--public-key-file", help="the same key as PEM")
    pack.add_argument("pack", help="the pack's .zip, or the folder it was unpacked in")
    pack.set_defaults(run=cmd_pack_verify)

    every = sub.add_parser(
        "audit-verify-folder",
        help="verify every audit archive of a folder copy, chained in id order",
    )
    every.add_argument("--public-key", required=True, help="base64")
    every.add_argument("--archive-key", help="AUDIT_ARCHIVE_KEY (or env)")
    every.add_argument("--event-key", help="AUDIT_EVENT_KEY (or env)")
    every.add_argument("folder", help="a copy of the archive prefix")
    every.set_defaults(run=cmd_audit_verify_folder)
    return top


# Options whose value may start with "-" (a URL-safe base64 key often does),
# which argparse would otherwise take for an option of its own.
VALUED = frozenset(
    {
        "--key-b64",
        "--archive-key",
        "--event-key",
        "--manifest-key",
        "--encryption-key",
        "--public-key",
        "--context",
        "--context-hex",
        "--prev-head",
    }
)


def _glued(argv: list[str]) -> list[str]:
    """``--option value`` as ``--option=value`` for the options in VALUED."""
    out, items = [], iter(argv)
    for item in items:
        value = next(items, None) if item in VALUED else None
        out.append(item if value is None else f"{item}={value}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(_glued(sys.argv[1:] if argv is None else argv))
    try:
        return args.run(args)
    except (KreoOpenError, OSError, ValueError) as exc:
        _complain(str(exc))
        return 1
    except (KeyError, TypeError) as exc:  # a manifest without a member it needs
        _complain(MALFORMED.format(error=repr(exc)))
        return 1


if __name__ == "__main__":
    sys.exit(main())
