"""Content hashes and MACs of events, and the signed hash chain of seals.

An event's content hash covers every column but ``id`` (and the MAC) and is
computed before insert, so recording an event is one INSERT with no shared
state. A keyed event (every event since ``v2``) also carries a unique
``event_uid`` and the MAC (HMAC-SHA256 under the ``AUDIT_EVENT_KEY`` ring's
key ``mac_key_id``) of the same canonical bytes, which include both. The
sealer later folds events in id order into seals; each seal lists the
(id, hash) pairs it covers, links to the previous seal's head and is signed.
"""

import hashlib
import hmac
import json
import json.encoder as _json_encoder
import os
import struct
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder

HASH_VERSION = "v1"
KEYED_VERSION = "v2"
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


def canonical_reference(values: dict) -> bytes:
    """``canonical`` as first written (one ``json.dumps``): the definition,
    kept to test the fast path against."""
    row = {name: values.get(name) for name in CONTENT_FIELDS}
    if values.get("spooled"):
        row["spooled"] = True
    row["occurred_at"] = iso(row["occurred_at"])
    if row["actor_id"] is not None:
        row["actor_id"] = str(row["actor_id"])
    version = HASH_VERSION
    if values.get("event_uid"):
        version = KEYED_VERSION
        row["event_uid"] = str(values["event_uid"])
        row["mac_key_id"] = values.get("mac_key_id") or ""
    return json.dumps(
        [version, row], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
_QUOTE = _json_encoder.encode_basestring_ascii


def _layout(keyed: bool, spooled: bool) -> tuple:
    names = list(CONTENT_FIELDS)
    if spooled:
        names.append("spooled")
    if keyed:
        names += ["event_uid", "mac_key_id"]
    version = KEYED_VERSION if keyed else HASH_VERSION
    names.sort()
    # Every key with the text before its value: '["v2",{"actor_id":' ...
    heads = [
        ("," if i else f'["{version}",{{') + f'"{n}":' for i, n in enumerate(names)
    ]
    return tuple(zip(names, heads, strict=True))


_LAYOUTS = {(k, s): _layout(k, s) for k in (False, True) for s in (False, True)}


def _json(value) -> str:
    kind = type(value)
    if kind is str:
        return _QUOTE(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def canonical(values: dict) -> bytes:
    """The bytes hashed for one event, from a dict of its column values: the
    JSON of ``[version, row]`` with sorted keys, compact, ASCII.

    An event written late from the outage spool also hashes ``spooled``
    (only then, so every other event's hash is what it always was): the flag
    that lets it be dated before the events around it cannot be added or
    removed unnoticed. Keyed events also hash the unique id and the key id
    (an exact copy under a new uid fails the MAC).

    Built field by field (the fixed keys in their sorted order, each value as
    ``json.dumps`` writes it), a third of one ``json.dumps`` of the whole; the
    bytes are those of ``canonical_reference``.
    """
    uid = values.get("event_uid")
    spooled = bool(values.get("spooled"))
    parts = []
    for name, head in _LAYOUTS[(bool(uid), spooled)]:
        if name == "occurred_at":
            value = iso(values.get(name))
        elif name == "actor_id":
            value = values.get(name)
            value = None if value is None else str(value)
        elif name == "spooled":
            value = True
        elif name == "event_uid":
            value = str(uid)
        elif name == "mac_key_id":
            value = values.get(name) or ""
        else:
            value = values.get(name)
        parts.append(head)
        parts.append(_json(value))
    parts.append("}]")
    return "".join(parts).encode()


# A keyed event's canonical keys, sorted: the order the hot store is read in
# for verification (audit/verify.py), so that a fetched row is its canonical
# dict by one ``zip``.
KEYED_NAMES = tuple(sorted((*CONTENT_FIELDS, "event_uid", "mac_key_id")))


def _row_encoder():
    """``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=True)`` as one call into the C encoder, made once (the
    public path builds the encoder again on every call)."""
    make = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the same bytes, slower
        return _ENCODER.encode
    encode = make(None, _ENCODER.default, _QUOTE, None, ":", ",", True, False, True)
    return lambda value: "".join(encode(value, 0))


encode_json = _row_encoder()


def canonical_row(row: dict, spooled: bool = False) -> bytes:
    """``canonical`` of a row whose values are already as its JSON holds them
    (``occurred_at`` as its ISO text, ``actor_id`` and ``event_uid`` as text,
    ``mac_key_id`` never None, ``details`` parsed), keyed by ``KEYED_NAMES``.

    The verifier's path: one C call encodes the whole row (nested ``details``
    sorted too), a fraction of ``canonical``'s field by field. A row without
    ``event_uid`` is a legacy event, hashed without the two keyed columns,
    exactly as ``canonical`` decides. ``row`` is changed in place.
    """
    version = KEYED_VERSION
    if not row["event_uid"]:
        version = HASH_VERSION
        del row["event_uid"], row["mac_key_id"]
    if spooled:
        row["spooled"] = True
    return encode_json([version, row]).encode()


def content_hash(values: dict) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def event_values(event) -> dict:
    values = {name: getattr(event, name) for name in CONTENT_FIELDS}
    if getattr(event, "spooled", False):
        values["spooled"] = True
    if getattr(event, "event_uid", None):
        values["event_uid"] = event.event_uid
        values["mac_key_id"] = event.mac_key_id
    return values


_entropy = threading.local()


def _forget_entropy() -> None:
    # A forked child must never reuse its parent's bytes (duplicate uids).
    global _entropy
    _entropy = threading.local()


os.register_at_fork(after_in_child=_forget_entropy)


def _random10() -> bytes:
    """10 bytes from ``os.urandom``, drawn 4 KiB at a time per thread (one
    system call per 409 events instead of one each)."""
    pool = getattr(_entropy, "pool", b"")
    if len(pool) < 10:
        pool = os.urandom(4090)
    _entropy.pool = pool[10:]
    return pool[:10]


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit ms time, 74 random bits.

    Hand-written because the standard library has it only from Python 3.14.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(_random10())
    value = value & ~(0xF << 76) | (7 << 76)  # version
    value = value & ~(0x3 << 62) | (0x2 << 62)  # variant
    return uuid.UUID(int=value)


def mac(key: bytes, body: bytes) -> str:
    # hmac.digest: the one-shot C path, a third of hmac.new's cost.
    return hmac.digest(key, body, "sha256").hex()


def sign_event(event, key_id: str, key: bytes) -> None:
    """Give ``event`` its uid (once), key id, content hash and MAC."""
    if not event.event_uid:
        event.event_uid = uuid7()
    event.mac_key_id = key_id
    body = canonical(event_values(event))
    event.content_hash = hashlib.sha256(body).hexdigest()
    event.mac = mac(key, body)


NO_MAC = "has no MAC but follows keyed events (written without the event key)"
UNKNOWN_KEY = "MAC key id {kid!r} is not in the AUDIT_EVENT_KEY ring"
BAD_MAC = "MAC does not verify under key id {kid!r} (forged or altered)"
BAD_HASH = "content does not match its content hash"


def mac_problem(
    values: dict, ring: dict[str, bytes], body: bytes | None = None
) -> str | None:
    """Why a keyed event's MAC fails under ``ring``, or None when it holds
    (its content hash is checked apart); ``body``: its canonical bytes, when
    the caller has them already."""
    kid = values.get("mac_key_id") or ""
    key = ring.get(kid)
    if key is None:
        return UNKNOWN_KEY.format(kid=kid)
    body = canonical(values) if body is None else body
    if not hmac.compare_digest(mac(key, body), values.get("mac") or ""):
        return BAD_MAC.format(kid=kid)
    return None


class MacCheck:
    """``mac_problem`` for many events under one ring: each key's HMAC state
    is made once and copied per event (a third cheaper than ``hmac.digest``
    starting over), for the verifier's loop."""

    def __init__(self, ring: dict[str, bytes]):
        self.states = {
            kid: hmac.new(key, digestmod=hashlib.sha256) for kid, key in ring.items()
        }

    def problem(self, kid: str, body: bytes, given: str) -> str | None:
        state = self.states.get(kid)
        if state is None:
            return UNKNOWN_KEY.format(kid=kid)
        state = state.copy()
        state.update(body)
        if not hmac.compare_digest(state.hexdigest(), given or ""):
            return BAD_MAC.format(kid=kid)
        return None


def is_keyed(values: dict) -> bool:
    return bool(
        values.get("event_uid") or values.get("mac_key_id") or values.get("mac")
    )


def pack_digests(pairs: Iterable[tuple[int, str]]) -> bytes:
    return b"".join(DIGEST.pack(pk, bytes.fromhex(h)) for pk, h in pairs)


def unpack_digests(blob: bytes) -> list[tuple[int, str]]:
    return [(pk, h.hex()) for pk, h in DIGEST.iter_unpack(bytes(blob))]


def next_head(prev_head: str, digests: bytes) -> str:
    inner = hashlib.sha256(bytes(digests)).digest()
    return hashlib.sha256(bytes.fromhex(prev_head) + inner).hexdigest()


def seal_text(seal) -> bytes:
    """What the signature covers: every field a verifier relies on.

    A seal made once events are keyed also covers that, and the ids it
    rejected (their MAC failed): neither can be dropped without breaking
    the signature. Earlier seals keep their text.
    """
    text = (
        f"kreo-audit-seal-{HASH_VERSION}|{seal.seq}|{seal.first_id}|"
        f"{seal.last_id}|{seal.count}|{iso(seal.first_at)}|{iso(seal.last_at)}|"
        f"{seal.prev_head}|{seal.head}|{seal.key_id}"
    )
    if getattr(seal, "keyed", False):
        text += "|keyed|rejected=" + ",".join(str(pk) for pk in seal.rejected or [])
    return text.encode()
