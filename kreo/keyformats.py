"""The format of every key Kreo is handed in the environment.

Production settings refuse to start when a key is malformed, naming the
variable (a key that backups or uploads would reject hours later, at run
time, is found at start instead), and ``check --deploy`` reports the same
problems as errors with ids (kreo.checks). Imported by the settings, so it
imports nothing of Django.

The rules are those of the code that uses each key; kreo/tests/
test_keyformats.py holds them to it:

- BACKUP_ENCRYPTION_KEY, BACKUP_MANIFEST_KEY (AES-256-GCM key, HMAC-SHA256
  key): URL-safe base64 of exactly 32 bytes, padding optional
  (backups.crypto.decode_key);
- BACKUP_AGE_RECIPIENT: an age X25519 public key, ``age1...`` (pyrage);
- KREO_KEYRING: ``id:base64`` entries of 32 bytes each, comma-separated, and
  KREO_ACTIVE_KEY_ID one of the ids (projects.keys.parse_keyring);
- AUDIT_SIGNING_KEY, AUDIT_ARCHIVE_KEY: secrets HKDF turns into the Ed25519
  seed and the archive key (audit.keys), so any string, but at least 32
  characters and not the same string twice;
- AUDIT_EVENT_KEY: the ring of audit event MAC keys, ``id:secret`` entries,
  comma-separated, the first the current one (audit.keys.event_keys); ids of
  1 to 16 letters, digits, ``.``, ``_`` or ``-``, each once; each secret at
  least 32 characters;
- AUDIT_VERIFY_PUBLIC_KEY (optional): base64 of a 32-byte Ed25519 public key;
- DJANGO_SECRET_KEY: Django's own rule (security.W009), at least 50
  characters, 5 different ones, not a generated "django-insecure-" key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping

KEY_BYTES = 32
MIN_SECRET_CHARS = 32

MAKE_B64_KEY = (
    "python -c 'import base64,os; "
    "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
)
NOT_32_BYTES = (
    "{name} is not 32 bytes of URL-safe base64 (43 or 44 characters): "
    f"make one with {MAKE_B64_KEY}."
)
NOT_AGE_RECIPIENT = (
    "{name} is not an age public key (age1... as printed by `age-keygen`): {reason}."
)
BAD_KEYRING_ENTRY = (
    "{name} entry {entry} is not id:base64 of 32 bytes "
    "(id:KEY[,id:KEY...]; KEY from {make})."
)
EMPTY_KEYRING = "{name} is empty: set it to id:base64key[,id:base64key...]."
ACTIVE_NOT_IN_RING = "{name} {value!r} is not an id in KREO_KEYRING."
SHORT_SECRET = (
    "{name} is too short ({length} characters): use at least "
    f"{MIN_SECRET_CHARS} random ones, e.g. `openssl rand -base64 48`."
)
REUSED_KEY = (
    "{name} is the same string as AUDIT_SIGNING_KEY: each audit key must be a "
    "secret of its own."
)
BAD_EVENT_KEY = (
    "{name} entry {entry} is not id:secret (id: 1 to 16 letters, digits, . _ -; "
    f"secret: at least {MIN_SECRET_CHARS} random characters, e.g. "
    "`openssl rand -base64 48`)."
)
DUPLICATE_EVENT_KEY_ID = "{name} lists key id {kid!r} twice."
EMPTY_EVENT_KEY = "{name} is empty: set it to id:secret[,id:secret...]."
EVENT_KEY_ID_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
)
NOT_ED25519_PUBLIC = (
    "{name} is not a base64 Ed25519 public key (32 bytes), as printed by "
    "`manage.py audit_public_key`."
)

WEAK_DJANGO_KEY = (
    "{name} is too weak for production: use at least 50 random characters, "
    "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
)

# Check ids, one per rule (kreo.checks reports them as kreo.E1xx).
IDS = {
    "BACKUP_ENCRYPTION_KEY": "kreo.E101",
    "BACKUP_MANIFEST_KEY": "kreo.E102",
    "BACKUP_AGE_RECIPIENT": "kreo.E103",
    "KREO_KEYRING": "kreo.E104",
    "KREO_ACTIVE_KEY_ID": "kreo.E105",
    "AUDIT_SIGNING_KEY": "kreo.E106",
    "AUDIT_ARCHIVE_KEY": "kreo.E107",
    "AUDIT_VERIFY_PUBLIC_KEY": "kreo.E108",
    "AUDIT_EVENT_KEY": "kreo.E110",
    "DJANGO_SECRET_KEY": "kreo.E109",  # nosec B105 - a check id, not a secret
}
# The setting each variable ends up in, where the names differ.
SETTING_NAMES = {"DJANGO_SECRET_KEY": "SECRET_KEY"}  # nosec B105 - setting names


def urlsafe_key(text: str) -> bytes | None:
    """The 32 bytes of ``text`` as backups.crypto.decode_key reads it, or None."""
    raw = text.strip()
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


def _keyring_material(raw: str) -> bytes:
    """A keyring entry's key as projects.keys reads it (either alphabet)."""
    raw = raw.strip()
    try:
        if "-" in raw or "_" in raw:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _b64_key(name: str, value: str) -> str | None:
    return None if urlsafe_key(value) else NOT_32_BYTES.format(name=name)


def _age_recipient(name: str, value: str) -> str | None:
    from pyrage import x25519

    value = value.strip()
    if not value.startswith("age1"):
        return NOT_AGE_RECIPIENT.format(name=name, reason="it does not start age1")
    try:
        x25519.Recipient.from_str(value)
    except Exception as exc:  # pyrage raises its own error types
        return NOT_AGE_RECIPIENT.format(name=name, reason=str(exc) or "unreadable")
    return None


def keyring_ids(value: str) -> tuple[list[str], str | None]:
    """The ids of a KREO_KEYRING value, and the problem with it (or None)."""
    ids = []
    for number, entry in enumerate(value.split(","), start=1):
        if not entry.strip():
            continue
        kid, colon, material = entry.strip().partition(":")
        if not kid or len(_keyring_material(material)) != KEY_BYTES:
            # The id names the entry; without one, its position does (never
            # the key material itself: messages end up in logs).
            shown = repr(kid) if colon and kid else f"number {number}"
            return ids, BAD_KEYRING_ENTRY.format(
                name="KREO_KEYRING", entry=shown, make=MAKE_B64_KEY
            )
        ids.append(kid)
    if not ids:
        return ids, EMPTY_KEYRING.format(name="KREO_KEYRING")
    return ids, None


def event_key_ring(
    value: str, name: str = "AUDIT_EVENT_KEY"
) -> tuple[list[tuple[str, str]], str | None]:
    """The (id, secret) entries of an AUDIT_EVENT_KEY ring, first = current,
    and the problem with it (or None)."""
    ring: list[tuple[str, str]] = []
    for number, entry in enumerate(value.split(","), start=1):
        if not entry.strip():
            continue
        kid, colon, secret = entry.strip().partition(":")
        kid, secret = kid.strip(), secret.strip()
        if (
            not colon
            or not 0 < len(kid) <= 16
            or not set(kid) <= EVENT_KEY_ID_CHARS
            or len(secret) < MIN_SECRET_CHARS
        ):
            # Named by position, never by its secret (messages reach logs).
            return ring, BAD_EVENT_KEY.format(name=name, entry=f"number {number}")
        if any(kid == known for known, _ in ring):
            return ring, DUPLICATE_EVENT_KEY_ID.format(name=name, kid=kid)
        ring.append((kid, secret))
    if not ring:
        return ring, EMPTY_EVENT_KEY.format(name=name)
    return ring, None


def _event_key(name: str, value: str) -> str | None:
    return event_key_ring(value, name)[1]


def _secret(name: str, value: str) -> str | None:
    if len(value) < MIN_SECRET_CHARS:
        return SHORT_SECRET.format(name=name, length=len(value))
    return None


def _ed25519_public(name: str, value: str) -> str | None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return NOT_ED25519_PUBLIC.format(name=name)
    return None


def _django_secret(name: str, value: str) -> str | None:
    weak = (
        len(value) < 50 or len(set(value)) < 5 or value.startswith("django-insecure-")
    )
    return WEAK_DJANGO_KEY.format(name=name) if weak else None


SINGLE: dict[str, Callable[[str, str], str | None]] = {
    "DJANGO_SECRET_KEY": _django_secret,
    "BACKUP_ENCRYPTION_KEY": _b64_key,
    "BACKUP_MANIFEST_KEY": _b64_key,
    "BACKUP_AGE_RECIPIENT": _age_recipient,
    "AUDIT_SIGNING_KEY": _secret,
    "AUDIT_ARCHIVE_KEY": _secret,
    "AUDIT_VERIFY_PUBLIC_KEY": _ed25519_public,
    "AUDIT_EVENT_KEY": _event_key,
}


def problems(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, message) for each malformed key among ``values``.

    A variable that is unset or blank is not checked here: whether it is
    required is the settings' business.
    """
    found: list[tuple[str, str]] = []

    def given(name: str) -> str:
        return (values.get(name) or "").strip()

    for name, check in SINGLE.items():
        if given(name):
            message = check(name, given(name))
            if message:
                found.append((name, message))
    signing, archive = given("AUDIT_SIGNING_KEY"), given("AUDIT_ARCHIVE_KEY")
    if signing and signing == archive:
        found.append(("AUDIT_ARCHIVE_KEY", REUSED_KEY.format(name="AUDIT_ARCHIVE_KEY")))
    if given("KREO_KEYRING"):
        ids, message = keyring_ids(given("KREO_KEYRING"))
        if message:
            found.append(("KREO_KEYRING", message))
        elif given("KREO_ACTIVE_KEY_ID") and given("KREO_ACTIVE_KEY_ID") not in ids:
            found.append(
                (
                    "KREO_ACTIVE_KEY_ID",
                    ACTIVE_NOT_IN_RING.format(
                        name="KREO_ACTIVE_KEY_ID", value=given("KREO_ACTIVE_KEY_ID")
                    ),
                )
            )
    return found
