"""Content hashes of events and the signed hash chain of seals.

An event's content hash covers every column but ``id`` and is computed
before insert, so recording an event is one INSERT with no shared state. The
sealer later folds events in id order into seals; each seal lists the
(id, hash) pairs it covers, links to the previous seal's head and is signed.
"""

import hashlib
import json
import struct
from collections.abc import Iterable
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder

HASH_VERSION = "v1"
GENESIS = "0" * 64
DIGEST = struct.Struct(">q32s")

# Columns in the content hash, in this order (never reorder: old hashes use it).
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


def iso(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    return value


def normalise_details(details: dict | None) -> dict:
    """Details as they come back from the database (a JSON round trip)."""
    return json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder))


def canonical(values: dict) -> bytes:
    """The bytes hashed for one event, from a dict of its column values.

    An event written late from the outage spool also hashes ``spooled``
    (only then, so every other event's hash is what it always was): the flag
    that lets it be dated before the events around it cannot be added or
    removed unnoticed.
    """
    row = {name: values.get(name) for name in CONTENT_FIELDS}
    if values.get("spooled"):
        row["spooled"] = True
    row["occurred_at"] = iso(row["occurred_at"])
    if row["actor_id"] is not None:
        row["actor_id"] = str(row["actor_id"])
    return json.dumps(
        [HASH_VERSION, row], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def content_hash(values: dict) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def event_values(event) -> dict:
    values = {name: getattr(event, name) for name in CONTENT_FIELDS}
    if getattr(event, "spooled", False):
        values["spooled"] = True
    return values


def pack_digests(pairs: Iterable[tuple[int, str]]) -> bytes:
    return b"".join(DIGEST.pack(pk, bytes.fromhex(h)) for pk, h in pairs)


def unpack_digests(blob: bytes) -> list[tuple[int, str]]:
    return [(pk, h.hex()) for pk, h in DIGEST.iter_unpack(bytes(blob))]


def next_head(prev_head: str, digests: bytes) -> str:
    inner = hashlib.sha256(bytes(digests)).digest()
    return hashlib.sha256(bytes.fromhex(prev_head) + inner).hexdigest()


def seal_text(seal) -> bytes:
    """What the signature covers: every field a verifier relies on."""
    return (
        f"kreo-audit-seal-{HASH_VERSION}|{seal.seq}|{seal.first_id}|"
        f"{seal.last_id}|{seal.count}|{iso(seal.first_at)}|{iso(seal.last_at)}|"
        f"{seal.prev_head}|{seal.head}|{seal.key_id}"
    ).encode()
