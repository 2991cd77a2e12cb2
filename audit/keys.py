"""The audit trail's keys, derived from secrets in the environment.

``AUDIT_SIGNING_KEY`` seeds the Ed25519 key that signs seals;
``AUDIT_ARCHIVE_KEY`` derives the AES-256-GCM key of archives. Each is any
high-entropy string (``openssl rand -base64 48``); HKDF turns it into key
material, so the same string never serves two purposes.

``AUDIT_EVENT_KEY`` is a ring of event MAC keys, ``id:secret,id2:secret2``,
the first the current one: each event carries the id of the key its
HMAC-SHA256 was made with (audit/chain.py), so a ring that still lists the
old ids verifies events made before a rotation. The database never holds
these keys: a row written with the database's rights alone cannot carry a
valid MAC.
"""

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from kreo.keyformats import event_key_ring


@lru_cache(maxsize=32)
def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"kreo-audit", info=purpose
    ).derive(secret.encode())


def signing_key() -> Ed25519PrivateKey:
    seed = _derive(settings.AUDIT_SIGNING_KEY, b"seal-signing-ed25519-v1")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(key: Ed25519PublicKey | None = None) -> bytes:
    key = key or signing_key().public_key()
    return key.public_bytes(
        encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw
    )


def public_key_b64() -> str:
    """The verifying key as published for auditors (raw 32 bytes, base64)."""
    return base64.b64encode(public_key_bytes()).decode()


def public_key_pem() -> str:
    return (
        signing_key()
        .public_key()
        .public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode()
    )


def key_id(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def verifying_key(published: str = "") -> Ed25519PublicKey:
    """The key seals are checked against: the published one when given.

    An independent verifier passes the published key (``--public-key`` or
    ``AUDIT_VERIFY_PUBLIC_KEY``) so that it never needs the signing secret.
    """
    published = published or settings.AUDIT_VERIFY_PUBLIC_KEY
    if published:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(published))
    return signing_key().public_key()


class EventKeyError(ValueError):
    """AUDIT_EVENT_KEY cannot be read (the message never shows a secret)."""


@lru_cache(maxsize=8)
def _event_ring(text: str) -> tuple[tuple[str, bytes], ...]:
    ring, problem = event_key_ring(text)
    if problem:
        raise EventKeyError(problem)
    return tuple(
        (kid, _derive(secret, b"event-mac-hmac-sha256-v1")) for kid, secret in ring
    )


def event_keys(text: str | None = None) -> dict[str, bytes]:
    """Every event MAC key of the ring by key id (``text`` or AUDIT_EVENT_KEY)."""
    return dict(_event_ring(settings.AUDIT_EVENT_KEY if text is None else text))


def event_key_current() -> tuple[str, bytes]:
    """The (key id, key) new events are MACed with: the ring's first."""
    return _event_ring(settings.AUDIT_EVENT_KEY)[0]


KEY_ID_TAKEN = "Key id {kid!r} is in AUDIT_EVENT_KEY already: choose another."


def event_ring_rotated(*, key_id: str = "", today: str = "") -> tuple[str, str]:
    """A new event key id and the AUDIT_EVENT_KEY ring with it first.

    The old entries stay (events MACed under them still verify); the secret
    is 48 random bytes, URL-safe base64. Nothing is stored: the operator
    puts the ring where the environment comes from.
    """
    ring = list(_event_ring_entries(settings.AUDIT_EVENT_KEY))
    taken = {kid for kid, _ in ring}
    if key_id and key_id in taken:
        raise EventKeyError(KEY_ID_TAKEN.format(kid=key_id))
    if not key_id:
        key_id, n = f"e{today}", 1
        while key_id in taken:
            n += 1
            key_id = f"e{today}-{n}"
    secret = secrets.token_urlsafe(48)
    text = ",".join(f"{kid}:{value}" for kid, value in [(key_id, secret), *ring])
    problem = event_key_ring(text)[1]
    if problem:
        raise EventKeyError(problem)
    return key_id, text


def _event_ring_entries(text: str) -> list[tuple[str, str]]:
    ring, problem = event_key_ring(text)
    if problem:
        raise EventKeyError(problem)
    return ring


def archive_key() -> bytes:
    return _derive(settings.AUDIT_ARCHIVE_KEY, b"archive-aes-256-gcm-v1")


def session_hash(session_key: str) -> str:
    """A keyed hash of a session key: links events of one session, reveals none."""
    if not session_key:
        return ""
    key = _derive(settings.SECRET_KEY, b"session-id-hmac-v1")
    return hmac.new(key, session_key.encode(), hashlib.sha256).hexdigest()


def device_hash(device_cookie: str) -> str:
    if not device_cookie:
        return ""
    key = _derive(settings.SECRET_KEY, b"device-id-hmac-v1")
    return hmac.new(key, device_cookie.encode(), hashlib.sha256).hexdigest()[:32]
