"""The audit trail's keys, derived from secrets in the environment.

``AUDIT_SIGNING_KEY`` seeds the Ed25519 key that signs seals;
``AUDIT_ARCHIVE_KEY`` derives the AES-256-GCM key of archives. Each is any
high-entropy string (``openssl rand -base64 48``); HKDF turns it into key
material, so the same string never serves two purposes.
"""

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


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
