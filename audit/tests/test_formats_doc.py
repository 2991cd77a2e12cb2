"""docs/FORMATS.md sections 3 and 4 are exact: their vectors match the code,
and an archive the application wrote verifies by the document alone
(hashlib, json, zlib and ``cryptography``; no project code)."""

import base64
import hashlib
import hmac
import json
import re
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from audit import archive, chain, keys, serialise
from audit.models import AuditArchive
from audit.services import audit_seal
from audit.tests.conftest import make_old_events

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMATS.md"
FIXTURE = Path(__file__).parent / "fixtures" / "legacy" / "kreoaud1-archive.json"
GENESIS = "0" * 64


def block(kind: str, name: str) -> str:
    """The fenced block after ``<!-- kind:name -->`` in docs/FORMATS.md."""
    found = re.search(
        rf"<!-- {kind}:{name} -->\s*```\n(.*?)```", DOC.read_text(), re.DOTALL
    )
    assert found, f"{kind} {name} not in docs/FORMATS.md"
    text = found.group(1)
    return "".join(text.split()) if kind == "vector" else text.rstrip("\n")


@pytest.fixture
def fixture_keys(settings):
    meta = json.loads(FIXTURE.read_text())
    settings.AUDIT_ARCHIVE_KEY = meta["AUDIT_ARCHIVE_KEY"]
    settings.AUDIT_SIGNING_KEY = meta["AUDIT_SIGNING_KEY"]
    return meta


def test_event_and_seal_vectors_match_the_code(fixture_keys):
    """The hashed text, content hash, seal text, signature and derived keys
    printed in the document are what the code computes."""
    row, seal = fixture_keys["rows"][0], fixture_keys["seal"]
    assert chain.canonical(row).decode() == block("text", "audit-event-canonical")
    assert chain.content_hash(row) == block("vector", "audit-event-hash")
    assert row["content_hash"] == block("vector", "audit-event-hash")
    assert chain.seal_text(SimpleNamespace(**seal)).decode() == block(
        "text", "audit-seal-text"
    )
    assert seal["signature"] == block("vector", "audit-seal-signature")
    assert keys.archive_key().hex() == block("vector", "audit-archive-key")
    seed = keys.signing_key().private_bytes_raw()
    assert seed.hex() == block("vector", "audit-signing-seed")
    assert keys.public_key_b64() == fixture_keys["public_key"]
    assert f"`{fixture_keys['public_key']}`" in DOC.read_text()
    assert serialise.jsonl_line(row).strip() in DOC.read_text()


def test_keyed_event_vectors_match_the_code(settings):
    """The keyed (v2) text, hash, event key and MAC printed in the document
    are what the code computes for event 1 of the fixture made keyed."""
    settings.AUDIT_EVENT_KEY = "k1:fixture-event-key-TEST-ONLY-not-a-secret-0001"
    row = dict(json.loads(FIXTURE.read_text())["rows"][0])
    row.update(event_uid="0192f7a0-3c5e-7abc-8def-0123456789ab", mac_key_id="k1")
    body = chain.canonical(row)
    assert body.decode() == block("text", "audit-event-canonical-v2")
    assert chain.content_hash(row) == block("vector", "audit-event-hash-v2")
    key = keys.event_keys()["k1"]
    assert key.hex() == block("vector", "audit-event-key")
    assert chain.mac(key, body) == block("vector", "audit-event-mac")
    row.update(content_hash=block("vector", "audit-event-hash-v2"))
    row["mac"] = block("vector", "audit-event-mac")
    assert chain.mac_problem(row, keys.event_keys()) is None


# What follows implements sections 1, 3 and 4 from the text alone.


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _open_sealed(key: bytes, blob: bytes, context: bytes) -> bytes:
    header = blob[:53]
    assert header[:9] == b"KREOSEAL\x01"
    (size,) = struct.unpack(">I", header[9:13])
    key_id = hmac.new(key, b"kreo-sealed-key-id", hashlib.sha256).digest()[:8]
    assert header[13:21] == key_id
    okm = _hkdf(key, header[21:53], b"kreo-sealed-v1", 39)
    aead, prefix = AESGCM(okm[:32]), okm[32:]
    body = blob[53:]
    pieces = [body[i : i + size + 16] for i in range(0, len(body), size + 16)]
    plain = b""
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        nonce = prefix + struct.pack(">IB", index, int(final))
        plain += aead.decrypt(nonce, piece, header + context)
    return plain


def _hashed_text(row: dict) -> bytes:
    hashed = {k: v for k, v in row.items() if k not in ("id", "content_hash", "mac")}
    if hashed.pop("spooled"):
        hashed["spooled"] = True
    version = "v2" if hashed.get("event_uid") else "v1"
    if version == "v1":
        for name in ("event_uid", "mac_key_id"):
            hashed.pop(name, None)
    return json.dumps(
        [version, hashed], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def _event_keys(ring: str) -> dict[str, bytes]:
    pairs = (entry.split(":", 1) for entry in ring.split(","))
    return {
        kid: _hkdf(secret.encode(), b"kreo-audit", b"event-mac-hmac-sha256-v1", 32)
        for kid, secret in pairs
    }


def verify_as_documented(
    blob, manifest, secret: str, public_b64: str, prev_head, ring: str = ""
):
    """Section 4, "Verifying an archive on its own"; returns the last head."""
    assert hashlib.sha256(blob).hexdigest() == manifest["sha256"]
    assert len(blob) == manifest["size"]
    key = _hkdf(secret.encode(), b"kreo-audit", b"archive-aes-256-gcm-v1", 32)
    plain = zlib.decompress(_open_sealed(key, blob, manifest["object"].encode()), 31)
    rows = [json.loads(line) for line in plain.splitlines()]
    assert len(rows) == manifest["count"]
    event_keys = _event_keys(ring) if ring else {}
    for row in rows:
        assert hashlib.sha256(_hashed_text(row)).hexdigest() == row["content_hash"]
        if ring and row.get("event_uid"):
            made = hmac.new(
                event_keys[row["mac_key_id"]], _hashed_text(row), hashlib.sha256
            )
            assert made.hexdigest() == row["mac"]
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    key_id = hashlib.sha256(public.public_bytes_raw()).hexdigest()[:16]
    previous = None
    for seal in manifest["seal_records"]:
        if previous:
            assert seal["seq"] == previous["seq"] + 1
            assert seal["first_id"] == previous["last_id"] + 1
        assert seal["prev_head"] == prev_head
        mine = [r for r in rows if seal["first_id"] <= r["id"] <= seal["last_id"]]
        assert len(mine) == seal["count"]
        assert min(r["occurred_at"] for r in mine) == seal["first_at"]
        assert max(r["occurred_at"] for r in mine) == seal["last_at"]
        digests = b"".join(
            struct.pack(">q", r["id"]) + bytes.fromhex(r["content_hash"]) for r in mine
        )
        inner = hashlib.sha256(digests).digest()
        head = hashlib.sha256(bytes.fromhex(prev_head) + inner).hexdigest()
        assert head == seal["head"] and seal["key_id"] == key_id
        text = "|".join(
            str(seal[f])
            for f in (
                "seq",
                "first_id",
                "last_id",
                "count",
                "first_at",
                "last_at",
                "prev_head",
                "head",
                "key_id",
            )
        )
        if seal.get("keyed"):
            assert seal["rejected"] == []
            text += "|keyed|rejected="
        public.verify(
            bytes.fromhex(seal["signature"]), f"kreo-audit-seal-v1|{text}".encode()
        )
        previous, prev_head = seal, head
    assert sum(s["count"] for s in manifest["seal_records"]) == len(rows)
    assert previous["seq"] == manifest["seal_at_cut"]["seq"]
    return prev_head


@pytest.mark.django_db(transaction=True)
def test_archives_verify_from_the_document_alone(archive_bucket, s3_client, settings):
    """Two archives (two seals each) written by the application open and
    verify, seal chain included, following the document only; under another
    object key (context) the object does not open."""
    make_old_events(2000)
    audit_seal()
    archive.run()
    head = GENESIS
    items = list(AuditArchive.objects.order_by("first_id"))
    assert len(items) == 2
    for item in items:
        blob = s3_client.get_object(Bucket=archive_bucket, Key=item.key)["Body"]
        manifest = s3_client.get_object(Bucket=archive_bucket, Key=item.manifest_key)
        manifest = json.loads(manifest["Body"].read())
        assert len(manifest["seal_records"]) == 2
        raw = blob.read()
        head = verify_as_documented(
            raw,
            manifest,
            settings.AUDIT_ARCHIVE_KEY,
            keys.public_key_b64(),
            head,
            settings.AUDIT_EVENT_KEY,
        )
        assert all(record["keyed"] for record in manifest["seal_records"])
    key = _hkdf(
        settings.AUDIT_ARCHIVE_KEY.encode(),
        b"kreo-audit",
        b"archive-aes-256-gcm-v1",
        32,
    )
    with pytest.raises(InvalidTag):
        _open_sealed(key, raw, items[0].key.encode())
