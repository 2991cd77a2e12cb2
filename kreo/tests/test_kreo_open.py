"""tools/kreo_open.py, the recovery tool, run as an operator would: in a
virtualenv holding only ``cryptography``, from a folder outside the project,
in Python's isolated mode, on objects the application wrote (a backup set,
an audit archive downloaded from S3, a project file) and on the documented
vectors. Altered objects, wrong keys and forged events make it fail."""

import ast
import base64
import gzip
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tarfile
import uuid
import venv
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from kreo import sealed

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "kreo_open.py"
DOC = REPO / "docs" / "FORMATS.md"
VECTOR_KEY = bytes(range(32))
VECTOR_SALT = bytes(range(100, 132))


def _pin(package: str) -> str:
    for line in (REPO / "requirements.txt").read_text().splitlines():
        found = re.match(rf"{package}==(\S+)", line.strip())
        if found:
            return found.group(1)
    raise AssertionError(f"{package} is not pinned in requirements.txt")


@pytest.fixture(scope="session")
def tool_python(tmp_path_factory):
    """A virtualenv with only ``cryptography`` (and what it needs), built once."""
    folder = tmp_path_factory.mktemp("kreo-open-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"cryptography=={_pin('cryptography')}"],
        check=True,
        capture_output=True,
    )
    return python


@pytest.fixture
def run_tool(tool_python, tmp_path_factory):
    """Run the tool in that virtualenv, isolated mode, from a folder outside the
    repository, with no project settings in its environment."""
    outside = tmp_path_factory.mktemp("operator")

    def run(*args, env=None):
        clean = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **(env or {})}
        return subprocess.run(
            [tool_python, "-I", TOOL, *map(str, args)],
            cwd=outside,
            env=clean,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


# -- the tool stands alone --------------------------------------------------


def test_the_tool_imports_only_the_standard_library_and_cryptography():
    """Every import of the tool is a standard module or ``cryptography``."""
    tree = ast.parse(TOOL.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_the_virtualenv_has_cryptography_and_no_django(tool_python, run_tool):
    """The tool's virtualenv cannot import the project or Django: it holds
    cryptography and its own dependencies only."""
    listed = subprocess.run(
        [tool_python, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert names <= {"cryptography", "cffi", "pycparser", "pip", "setuptools"}
    assert "cryptography" in names
    probe = subprocess.run(
        [tool_python, "-I", "-c", "import django"], capture_output=True, text=True
    )
    assert probe.returncode != 0 and "No module named 'django'" in probe.stderr
    helped = run_tool("--help")
    assert helped.returncode == 0, helped.stderr
    assert "backup-verify" in helped.stdout and "audit-verify" in helped.stdout


# -- the documented vectors --------------------------------------------------


def documented(name: str) -> str:
    found = re.search(
        rf"<!-- vector:{name} -->\s*```\s*([0-9a-f\s]+?)```", DOC.read_text()
    )
    assert found, f"vector {name} not in docs/FORMATS.md"
    return "".join(found.group(1).split())


@pytest.mark.parametrize(
    ("vector", "plain"),
    [
        ("empty", b""),
        ("short", b"Kreo sealed object test vector."),
        ("three-chunks", bytes(i % 251 for i in range(2500))),
    ],
)
def test_the_tool_opens_the_documented_vectors(vector, plain, run_tool, tmp_path):
    """Each vector of docs/FORMATS.md section 1 opens to its plaintext (the
    three-chunk one is given by its SHA-256: rebuilt, checked, then opened)."""
    if vector == "three-chunks":
        blob = b"".join(
            sealed.seal_stream(
                VECTOR_KEY,
                [plain],
                context=b"kreo-vector",
                chunk_size=1024,
                salt=VECTOR_SALT,
            )
        )
        assert hashlib.sha256(blob).hexdigest() == documented(vector)
    else:
        blob = bytes.fromhex(documented(vector))
    (tmp_path / "in").write_bytes(blob)
    out = tmp_path / "out"
    key = ("--key-b64", b64(VECTOR_KEY))
    done = run_tool("open", *key, "--context", "kreo-vector", tmp_path / "in", out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == plain
    wrong = run_tool("open", *key, "--context", "kreo-vectoR", tmp_path / "in", out)
    assert wrong.returncode == 1
    assert f"{tmp_path / 'in'}: chunk 0 failed authentication" in wrong.stderr


def test_a_key_that_starts_with_a_dash_is_taken_as_a_value(run_tool, tmp_path):
    """A URL-safe base64 key often starts with "-": pasted after its option it
    is the key, not an unknown option (argparse alone answered exit 2)."""
    from kreo import sealed

    key = bytes([0xF8]) + bytes(range(31))
    text = base64.urlsafe_b64encode(key).decode()
    assert text.startswith("-")
    (tmp_path / "in").write_bytes(sealed.seal_bytes(key, b"plan", context=b"c"))
    out = tmp_path / "out"
    done = run_tool("open", "--key-b64", text, "--context", "c", tmp_path / "in", out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"plan"


def test_a_cut_or_extended_vector_is_refused_and_nothing_written(run_tool, tmp_path):
    """An object cut at a chunk boundary, a flipped bit, an added byte, chunks
    reordered or swapped in from another object, a bad header: exit 1, the
    object and chunk named, no output file and no temporary left behind."""
    plain = bytes(i % 251 for i in range(2500))

    def seal() -> bytes:
        return b"".join(
            sealed.seal_stream(VECTOR_KEY, [plain], context=b"c", chunk_size=1024)
        )

    blob, other = seal(), seal()
    chunk = [blob[53 + i * 1040 : 53 + (i + 1) * 1040] for i in range(3)]
    cases = {
        "cut": (blob[: 53 + 2 * 1040], "truncated after chunk 1"),
        "flipped": (blob[:1200] + bytes([blob[1200] ^ 1]) + blob[1201:], "chunk 1"),
        "extended": (blob + b"\0", "chunk 2 failed authentication"),
        "reordered": (
            blob[:53] + chunk[1] + chunk[0] + chunk[2],
            "chunk 0 failed authentication",
        ),
        "swapped": (
            blob[: 53 + 1040] + other[53 + 1040 : 53 + 2080] + chunk[2],
            "chunk 1 failed authentication",
        ),
        "header-cut": (blob[:40], "header is cut short"),
        "no-chunk": (blob[:53], "no chunk after the header"),
        "version": (blob[:8] + b"\x02" + blob[9:], "KREOSEAL version 2 is unknown"),
        "magic": (b"KREOSEAM" + blob[8:], "not a Kreo object"),
    }
    for label, (bad, message) in cases.items():
        source = tmp_path / f"{label}.sealed"
        source.write_bytes(bad)
        out = tmp_path / "out" / f"{label}.plain"
        done = run_tool(
            "open", "--key-b64", b64(VECTOR_KEY), "--context", "c", source, out
        )
        assert done.returncode == 1, label
        assert f"{source}: " in done.stderr and message in done.stderr, done.stderr
        assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []


# -- the older formats, from the fixtures their writers left ------------------

LEGACY = {
    "KREOF1": REPO / "projects" / "tests" / "fixtures" / "legacy",
    "KREOBK1": REPO / "backups" / "tests" / "fixtures" / "legacy",
    "KREOAUD1": REPO / "audit" / "tests" / "fixtures" / "legacy",
}


def _legacy(label: str) -> Path:
    folder = LEGACY[label]
    if not folder.is_dir():
        pytest.skip(
            f"no {label} fixtures yet ({folder}: committed by its app's change)"
        )
    return folder


def test_the_tool_opens_kreof1_project_files(run_tool, tmp_path):
    """Project files written by the KREOF1 writer open to their plaintext."""
    folder = _legacy("KREOF1")
    spec = json.loads((folder / "fixtures.json").read_text())
    key = b64(bytes.fromhex(spec["data_key_hex"]))
    for name, entry in spec["files"].items():
        out = tmp_path / name
        done = run_tool(
            "open",
            "--key-b64",
            key,
            "--context-uuid",
            spec["file_id"],
            folder / entry["object"],
            out,
        )
        assert done.returncode == 0, done.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == entry["sha256"]
    other = ("--context-uuid", uuid.uuid4(), folder / entry["object"], tmp_path / "x")
    done = run_tool("open", "--key-b64", key, *other)
    assert done.returncode == 1 and "chunk 0 failed authentication" in done.stderr


def test_the_tool_opens_kreobk1_backup_artifacts(run_tool, tmp_path):
    """Backup artifacts written by the KREOBK1 writer open; the cut one fails."""
    folder = _legacy("KREOBK1")
    key = (folder / "key.txt").read_text().strip()
    out = tmp_path / "small"
    done = run_tool("open", "--key-b64", key, folder / "small.kreobk1", out)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == (folder / "small.plain").read_bytes()
    cut = folder / "small-truncated.kreobk1"
    done = run_tool("open", "--key-b64", key, cut, tmp_path / "cut")
    assert done.returncode == 1 and f"{cut}: chunk 0" in done.stderr
    assert not (tmp_path / "cut").exists()


def test_the_tool_verifies_a_kreoaud1_archive_with_its_seal(run_tool, tmp_path):
    """A KREOAUD1 archive verifies against its seal and the public key."""
    folder = _legacy("KREOAUD1")
    spec = json.loads((folder / "kreoaud1-archive.json").read_text())
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "object": spec["object_key"],
                "sha256": spec["sha256"],
                "size": spec["size"],
                "count": len(spec["rows"]),
                "seal_records": [spec["seal"]],
            }
        )
    )
    args = ("--public-key", spec["public_key"], "--manifest", manifest)
    env = {"AUDIT_ARCHIVE_KEY": spec["AUDIT_ARCHIVE_KEY"]}
    done = run_tool("audit-verify", *args, folder / "kreoaud1-archive.bin", env=env)
    assert done.returncode == 0, done.stderr
    assert f"{len(spec['rows'])} events" in done.stdout and "1 seals" in done.stdout
    assert "verified (signatures checked)" in done.stdout


# -- a project file ----------------------------------------------------------


@pytest.mark.django_db
def test_the_tool_opens_a_project_file_the_app_stored(run_tool, tmp_path):
    """A stored project file opens with its project's data key and its id."""
    from projects import keys
    from projects.tests.factories import ProjectFactory, stored_file

    content = b"%PDF-1.7\n" + os.urandom(150_000)
    item = stored_file(ProjectFactory(), content=content)
    with default_storage.open(item.blob.name, "rb") as handle:
        (tmp_path / "blob").write_bytes(handle.read())
    key = b64(keys.data_key_get(item.project_id))
    out = tmp_path / "plan.pdf"
    args = ("--key-b64", key, "--context-uuid", item.id, tmp_path / "blob", out)
    done = run_tool("open", *args)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == content
    other = run_tool(
        "open", "--key-b64", key, "--context-uuid", uuid.uuid4(), *args[4:]
    )
    assert other.returncode == 1 and "chunk 0" in other.stderr
    assert out.read_bytes() == content  # a failed run leaves the old file alone


# -- backup copy 1 -----------------------------------------------------------


@pytest.fixture
def backup_set(transactional_db, backup_settings):
    """A set taken by the application from a database with projects and files."""
    from accounts.tests.factories import UserFactory
    from backups.services import backup_create
    from projects.tests.factories import ProjectFactory, stored_file

    owner = UserFactory()
    for index in range(3):
        project = ProjectFactory(name=f"Depot {index}", created_by=owner)
        stored_file(project, name=f"d{index}.pdf", content=os.urandom(90_000))
    taken = backup_create()
    assert taken.state in ("good", "incomplete"), taken.error
    folder = Path(settings.BACKUP_COPY1_DIR) / f"{taken.pk:08d}"
    return {
        "set": taken,
        "folder": folder,
        "env": {
            "BACKUP_ENCRYPTION_KEY": settings.BACKUP_ENCRYPTION_KEY,
            "BACKUP_MANIFEST_KEY": settings.BACKUP_MANIFEST_KEY,
        },
    }


def _db_artifact(folder: Path) -> Path:
    (found,) = [p for p in folder.iterdir() if p.name.startswith("db.")]
    return found


def test_backup_copy1_verifies_and_the_dump_restores(backup_set, run_tool, tmp_path):
    """backup-verify checks the manifest and every artifact, then writes the
    plaintexts: pg_restore lists the PostgreSQL dump (SQLite: the database
    opens and holds the projects), the files tar holds every stored file."""
    out = tmp_path / "recovered"
    done = run_tool(
        "backup-verify", "--out", out, backup_set["folder"], env=backup_set["env"]
    )
    assert done.returncode == 0, done.stderr
    set_id = backup_set["set"].pk
    assert (
        f"backup set {set_id}" in done.stdout and "manifest MAC verified" in done.stdout
    )
    assert f"backup set {set_id}: copy 1 verified" in done.stdout
    with tarfile.open(out / "files.tar") as tar:
        assert len(tar.getnames()) == 3
    if connection.vendor == "postgresql":
        listing = subprocess.run(
            ["pg_restore", "--list", out / "db.pgdump"],
            capture_output=True,
            text=True,
        )
        assert listing.returncode == 0, listing.stderr
        assert "TABLE DATA public projects_project" in listing.stdout
    else:
        with sqlite3.connect(out / "db.sqlite3") as db:
            (count,) = db.execute("SELECT count(*) FROM projects_project").fetchone()
        assert count == 3


def test_backup_keys_may_be_given_as_options(backup_set, run_tool):
    """The keys on the command line work as well as in the environment."""
    env = backup_set["env"]
    done = run_tool(
        "backup-verify",
        "--manifest-key",
        env["BACKUP_MANIFEST_KEY"],
        "--encryption-key",
        env["BACKUP_ENCRYPTION_KEY"],
        backup_set["folder"],
    )
    assert done.returncode == 0, done.stderr


def test_a_corrupted_backup_artifact_fails_naming_it(backup_set, run_tool, tmp_path):
    """A byte flipped in the database artifact: exit 1, the artifact and chunk
    named, and no plaintext of it left in the output folder."""
    artifact = _db_artifact(backup_set["folder"])
    raw = bytearray(artifact.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    artifact.write_bytes(bytes(raw))
    out = tmp_path / "recovered"
    done = run_tool(
        "backup-verify", "--out", out, backup_set["folder"], env=backup_set["env"]
    )
    assert done.returncode == 1
    assert (
        f"{artifact}: chunk " in done.stderr and "failed authentication" in done.stderr
    )
    assert "1 artifact(s) failed" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["files.tar"]


def test_a_swapped_artifact_fails(backup_set, run_tool):
    """The files archive copied over the database artifact is refused."""
    artifact = _db_artifact(backup_set["folder"])
    artifact.write_bytes((backup_set["folder"] / "files.tar.enc").read_bytes())
    done = run_tool("backup-verify", backup_set["folder"], env=backup_set["env"])
    assert done.returncode == 1
    assert artifact.name in done.stderr


def test_wrong_backup_keys_fail(backup_set, run_tool):
    """Another encryption key or manifest key: exit 1 with the reason."""
    env = backup_set["env"]
    wrong = {**env, "BACKUP_ENCRYPTION_KEY": b64(os.urandom(32))}
    done = run_tool("backup-verify", backup_set["folder"], env=wrong)
    assert done.returncode == 1 and "under another key" in done.stderr
    forged = {**env, "BACKUP_MANIFEST_KEY": b64(os.urandom(32))}
    done = run_tool("backup-verify", backup_set["folder"], env=forged)
    assert done.returncode == 1 and "manifest's MAC does not match" in done.stderr


def test_an_altered_manifest_fails(backup_set, run_tool):
    """A manifest edited to match a replaced artifact no longer authenticates."""
    path = backup_set["folder"] / "manifest.json"
    sealed_manifest = json.loads(path.read_bytes())
    sealed_manifest["manifest"]["copies"]["1"]["artifacts"]["files.tar.enc"][
        "size"
    ] += 1
    path.write_text(json.dumps(sealed_manifest))
    done = run_tool("backup-verify", backup_set["folder"], env=backup_set["env"])
    assert done.returncode == 1 and "manifest's MAC does not match" in done.stderr


# -- audit archives ----------------------------------------------------------


def _old_events(count: int) -> None:
    """Events dated past retention (the archive run takes only those)."""
    from audit.tests.conftest import make_old_events

    make_old_events(count, details=lambda i: {"i": i, "note": "é"})


@pytest.fixture
def archived(transactional_db, settings, s3_client, tmp_path):
    """One archive written by the application's run to the S3 server, and its
    manifest, downloaded as an auditor would."""
    from audit import archive, keys
    from audit.models import AuditArchive
    from audit.services import audit_seal
    from conftest import REGION, S3_ENDPOINT, make_bucket

    bucket = make_bucket(s3_client, f"kreo-audit-{uuid.uuid4().hex[:12]}")
    settings.AUDIT_ARCHIVE_S3_BUCKET = bucket
    settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL = S3_ENDPOINT
    settings.AUDIT_ARCHIVE_S3_REGION = REGION
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    settings.AUDIT_SEAL_BATCH = 100
    _old_events(450)
    audit_seal()
    archive.run()
    item = AuditArchive.objects.get()
    path, manifest = tmp_path / "archive.bin", tmp_path / "archive.manifest.json"
    for key, target in ((item.key, path), (item.manifest_key, manifest)):
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        target.write_bytes(body)
    return {
        "item": item,
        "path": path,
        "manifest": manifest,
        "args": ("--public-key", keys.public_key_b64(), "--context", item.key),
        "env": {"AUDIT_ARCHIVE_KEY": settings.AUDIT_ARCHIVE_KEY},
        "key": keys.archive_key(),
    }


def _rewritten(archived, tmp_path, change) -> Path:
    """The archive's lines changed by ``change``, gzipped and sealed again under
    the archive key and its context: only the content is forged."""
    lines = [
        json.loads(line)
        for line in gzip.decompress(_opened_archive(archived, tmp_path)).splitlines()
    ]
    lines = change(lines)
    data = gzip.compress(
        b"".join(json.dumps(row, sort_keys=True).encode() + b"\n" for row in lines)
    )
    forged = tmp_path / "forged.bin"
    forged.write_bytes(
        sealed.seal_bytes(
            archived["key"],
            data,
            context=archived["item"].key.encode(),
            chunk_size=sealed.BULK_CHUNK,
        )
    )
    return forged


def _opened_archive(archived, tmp_path) -> bytes:
    plain = tmp_path / "archive.gz"
    key_args = ("--key-b64", b64(archived["key"]), "--context", archived["item"].key)
    done = subprocess.run(
        [sys.executable, "-I", TOOL, "open", *key_args, archived["path"], plain],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return plain.read_bytes()


def _events(lines):
    return [row for row in lines if "content_hash" in row]


def test_an_archive_the_app_wrote_verifies(archived, run_tool):
    """audit-verify opens the downloaded archive, checks every event's hash,
    the seals it carries and the manifest, and prints the summary."""
    item = archived["item"]
    done = run_tool(
        "audit-verify",
        *archived["args"],
        "--manifest",
        archived["manifest"],
        archived["path"],
        env=archived["env"],
    )
    assert done.returncode == 0, done.stderr
    summary = re.search(
        rf"{item.key}: (\d+) events \(ids (\d+)\.\.(\d+)\)", done.stdout
    )
    assert summary, done.stdout
    count, first, last = map(int, summary.groups())
    assert count == item.count == 450
    assert item.first_id <= first <= last <= item.last_id
    assert f"{item.key}: verified" in done.stdout


def test_an_archive_with_a_flipped_byte_fails_naming_the_chunk(
    archived, run_tool, tmp_path
):
    """One bit changed in the downloaded object: its chunk is named."""
    raw = bytearray(archived["path"].read_bytes())
    raw[100] ^= 1
    archived["path"].write_bytes(bytes(raw))
    done = run_tool(
        "audit-verify", *archived["args"], archived["path"], env=archived["env"]
    )
    assert done.returncode == 1
    assert f"{archived['item'].key}: chunk 0 failed authentication" in done.stderr


def test_an_archive_with_a_wrong_key_or_context_fails(archived, run_tool):
    """Another AUDIT_ARCHIVE_KEY, or the object under another S3 key: refused."""
    wrong = {"AUDIT_ARCHIVE_KEY": "not the archive key"}
    done = run_tool("audit-verify", *archived["args"], archived["path"], env=wrong)
    assert done.returncode == 1 and archived["item"].key in done.stderr
    moved = (*archived["args"][:3], "audit/elsewhere.jsonl.gz.aes")
    done = run_tool("audit-verify", *moved, archived["path"], env=archived["env"])
    assert done.returncode == 1 and "chunk 0 failed authentication" in done.stderr


def test_an_edited_event_fails_naming_it(archived, run_tool, tmp_path):
    """An event whose content was changed (its stored hash kept) is named."""
    target = {}

    def edit(lines):
        row = _events(lines)[123]
        row["actor_label"] = "someone-else@example.test"
        target["id"] = row["id"]
        return lines

    forged = _rewritten(archived, tmp_path, edit)
    done = run_tool("audit-verify", *archived["args"], forged, env=archived["env"])
    assert done.returncode == 1
    assert f"event {target['id']}: content does not match its content hash" in (
        done.stderr
    )
    assert "NOT verified" in done.stderr


def test_a_removed_event_fails(archived, run_tool, tmp_path):
    """An event removed whole (hash and all) is caught by the seal that covers
    it, or by the manifest's count when the archive carries no seals."""
    removed = {}

    def drop(lines):
        row = _events(lines)[200]
        removed["id"] = row["id"]
        return [line for line in lines if line is not row]

    forged = _rewritten(archived, tmp_path, drop)
    done = run_tool(
        "audit-verify",
        *archived["args"],
        "--manifest",
        archived["manifest"],
        forged,
        env=archived["env"],
    )
    assert done.returncode == 1
    assert "the count is 449, the manifest says 450" in done.stderr


def test_seals_in_the_manifest_are_checked_against_the_public_key(
    archived, run_tool, tmp_path
):
    """Where the manifest carries the seal records (archives written as
    KREOSEAL): they verify with the public key; another public key, a forged
    seal record or a removed event fail."""
    manifest = json.loads(archived["manifest"].read_bytes())
    if not manifest.get("seal_records"):
        pytest.skip("manifests written by this version carry no seal records")
    item, env = archived["item"], archived["env"]
    args = (*archived["args"], "--manifest", archived["manifest"])
    done = run_tool("audit-verify", *args, archived["path"], env=env)
    assert done.returncode == 0, done.stderr
    seals = item.last_seal - item.first_seal + 1
    assert f"{seals} seals (seq {item.first_seal}..{item.last_seal})" in done.stdout
    assert "verified (signatures checked)" in done.stdout

    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    wrong = ("--public-key", base64.b64encode(other).decode(), *args[2:])
    done = run_tool("audit-verify", *wrong, archived["path"], env=env)
    assert done.returncode == 1
    assert f"seal {item.first_seal}: the signature does not verify" in done.stderr

    records = manifest["seal_records"]
    records[0]["count"] += 1
    forged = tmp_path / "forged.manifest.json"
    forged.write_text(json.dumps(manifest))
    done = run_tool("audit-verify", *args[:-1], forged, archived["path"], env=env)
    assert done.returncode == 1
    assert f"seal {records[0]['seq']}: the signature does not verify" in done.stderr

    def drop(lines):
        row = _events(lines)[200]
        return [line for line in lines if line is not row]

    cut = _rewritten(archived, tmp_path, drop)
    done = run_tool("audit-verify", *args, cut, env=env)
    assert done.returncode == 1
    assert "an event was removed, added or its hash changed" in done.stderr


def test_event_macs_are_checked_with_the_event_key(archived, run_tool, settings):
    """With AUDIT_EVENT_KEY (or --event-key) every event's MAC is checked;
    without it the tool says how many it could not check."""
    key = archived["item"].key
    done = run_tool(
        "audit-verify",
        *archived["args"],
        "--event-key",
        settings.AUDIT_EVENT_KEY,
        archived["path"],
        env=archived["env"],
    )
    assert done.returncode == 0, done.stderr
    assert f"{key}: 450 event MACs checked, 0 legacy events" in done.stdout
    done = run_tool(
        "audit-verify", *archived["args"], archived["path"], env=archived["env"]
    )
    assert done.returncode == 0, done.stderr
    assert f"{key}: 450 keyed events: MACs not checked" in done.stdout


def test_an_event_rewritten_with_its_hash_fails_its_mac(
    archived, run_tool, tmp_path, settings
):
    """Whoever holds the archive key and rewrites an event with a correct
    SHA-256 still fails its MAC; a ring without the event's key id names it."""
    from audit import chain

    target = {}

    def edit(lines):
        row = _events(lines)[7]
        row["event_type"] = "auth.login.success"
        row["content_hash"] = chain.content_hash(row)
        target["id"] = row["id"]
        return lines

    forged = _rewritten(archived, tmp_path, edit)
    env = {**archived["env"], "AUDIT_EVENT_KEY": settings.AUDIT_EVENT_KEY}
    done = run_tool("audit-verify", *archived["args"], forged, env=env)
    assert done.returncode == 1
    kid = settings.AUDIT_EVENT_KEY.split(":")[0]
    assert (
        f"event {target['id']}: MAC does not verify under key id '{kid}' "
        "(forged or altered)."
    ) in done.stderr
    other = {**archived["env"], "AUDIT_EVENT_KEY": "k2:" + "z" * 40}
    done = run_tool("audit-verify", *archived["args"], archived["path"], env=other)
    assert done.returncode == 1
    assert f"MAC key id '{kid}' is not in --event-key." in done.stderr
