"""The OpenAPI schema tells the truth: every answer the API gives is documented.

For every operation the URL conf routes, each error a client can provoke
(no credentials, no CSRF token, a role that forbids it, an unknown id, an
Accept or Content-Type the view does not speak, a malformed or oversized body,
too many requests) is sent, and the status, the content type and the body
must all be in the schema for that operation. Requests the schema calls valid
(``PATCH {}``, a minimal POST) must be accepted, and a JSON number sent for a
string field must be refused, not converted.
"""

import socket
import uuid

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from openapi_schema_validator import OAS30Validator

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from conftest import new_key
from kreo.tests.apiworld import WRITE_METHODS, api_operations, make_world
from projects import crypto
from projects.models import Membership, ProjectFile, Role
from projects.tests.factories import PDF
from projects.uploads import KINDS

pytestmark = pytest.mark.django_db

OPERATIONS = api_operations()
SCHEMA_ACCEPT = "application/vnd.oai.openapi+json"


@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def schema(world):
    response = world.client().get("/api/schema/", HTTP_ACCEPT=SCHEMA_ACCEPT)
    assert response.status_code == 200
    return response.json()


def _operation(schema, op) -> dict:
    return schema["paths"][op.path][op.method.lower()]


def _request_types(schema, op) -> set[str]:
    return set(_operation(schema, op).get("requestBody", {}).get("content", {}))


def _validate(schema, fragment: dict, instance) -> None:
    """Check ``instance`` against a schema fragment that may $ref components."""
    OAS30Validator({**fragment, "components": schema["components"]}).validate(instance)


def _documented(schema, op, response, where: str) -> list[str]:
    """What is wrong with ``response`` as an answer the schema documents."""
    documented = _operation(schema, op)["responses"]
    code = str(response.status_code)
    if code not in documented:
        return [f"{op} {where}: {code} is not documented ({sorted(documented)})"]
    content = documented[code].get("content") or {}
    if not content:
        body = (
            b"".join(response.streaming_content)
            if response.streaming
            else response.content
        )
        return [] if not body else [f"{op} {where}: {code} has an undocumented body"]
    media_type = response["Content-Type"].split(";")[0].strip()
    if media_type not in content and "*/*" not in content:
        return [f"{op} {where}: {code} {media_type} not in {sorted(content)}"]
    if media_type == "application/json":
        _validate(schema, content[media_type]["schema"], response.json())
    return []


def _provocations(world, op, schema, settings):
    """(what, response) for each error a client can provoke on ``op``."""
    url = world.url(op.path)
    types = _request_types(schema, op)
    send = Client(raise_request_exception=False).generic
    yield "no credentials", send(op.method, url)
    if op.method in WRITE_METHODS | {"DELETE"}:
        browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
        browser.force_login(world.owner)
        yield "session without CSRF", browser.generic(op.method, url)
        if "{project_id}" in op.path:
            viewer = world.viewer_client(raise_request_exception=False)
            yield "a viewer", viewer.generic(op.method, url, "{}", "application/json")
    if "{" in op.path:
        unknown = world.url(
            op.path, project_id=uuid.uuid4(), file_id=uuid.uuid4(), membership_id=0
        )
        yield "unknown ids", world.client().generic(op.method, unknown)
    owner = world.client(raise_request_exception=False)
    yield "Accept: text/html", owner.generic(op.method, url, HTTP_ACCEPT="text/html")
    if types:
        yield "text/plain body", owner.generic(op.method, url, "x", "text/plain")
    if "application/json" in types:
        yield "malformed JSON", owner.generic(op.method, url, "{", "application/json")
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
        yield (
            "JSON over the limit",
            owner.generic(
                op.method, url, '{"a": "' + "x" * 200 + '"}', "application/json"
            ),
        )
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
    elif "multipart/form-data" in types:
        yield "empty form", owner.post(url, {})
        settings.KREO_MAX_UPLOAD_BYTES = 10
        yield (
            "upload over the limit",
            owner.post(url, {"file": SimpleUploadedFile("big.pdf", PDF)}),
        )
    settings.KREO_API_RATE = "1/minute"
    # Signed in by session only: a first call to revoke cannot revoke a token.
    throttled = Client(raise_request_exception=False)
    throttled.force_login(world.member.user)
    throttled.generic(op.method, url)
    yield "too many requests", throttled.generic(op.method, url)
    settings.KREO_API_RATE = "600/minute"


def test_the_schema_lists_exactly_the_routed_operations(schema):
    """Every routed (path, method) is in the schema, and nothing else is."""
    routed = {(op.path, op.method.lower()) for op in OPERATIONS}
    documented = {
        (path, method) for path, ops in schema["paths"].items() for method in ops
    }
    assert routed == documented


@pytest.mark.parametrize("op", OPERATIONS, ids=str)
def test_every_error_a_client_can_provoke_is_documented(op, world, schema, settings):
    """Status, content type and body of each provoked error are in the schema."""
    wrong, seen = [], set()
    for what, response in _provocations(world, op, schema, settings):
        assert response.status_code < 500, f"{op} {what}: {response.status_code}"
        seen.add(response.status_code)
        wrong += _documented(schema, op, response, what)
    assert not wrong, "\n".join(wrong)
    assert 429 in seen and (401 in seen or 403 in seen)


@pytest.mark.parametrize("op", [op for op in OPERATIONS if op.method == "GET"], ids=str)
def test_every_read_answers_as_documented(op, world, schema):
    """A member's GET: its status, content type and body are in the schema."""
    response = world.client().get(world.url(op.path))
    assert response.status_code == 200
    assert not _documented(schema, op, response, "owner GET")


def test_a_download_is_documented_with_the_files_own_type(world, schema):
    """Each accepted type is served as itself when asked for, and documented."""
    op = next(o for o in OPERATIONS if o.path.endswith("/download/"))
    content = _operation(schema, op)["responses"]["200"]["content"]
    assert "application/octet-stream" not in content
    for kind in KINDS:
        world.file.content_type = kind.content_type
        world.file.save()
        response = world.client().get(world.url(op.path), HTTP_ACCEPT=kind.content_type)
        assert response.status_code == 200, f"Accept: {kind.content_type} refused"
        assert response["Content-Type"] == kind.content_type
        assert kind.content_type in content


def test_a_damaged_file_answers_the_documented_409(world, schema):
    """An altered stored file: 409 JSON, as the schema says."""
    name = world.file.blob.name
    with default_storage.open(name, "rb") as handle:
        stored = bytearray(handle.read())
    stored[crypto.HEADER + 5] ^= 0x01
    default_storage.delete(name)
    default_storage.save(name, SimpleUploadedFile("x", bytes(stored)))
    op = next(o for o in OPERATIONS if o.path.endswith("/download/"))
    response = world.client().get(world.url(op.path))
    assert response.status_code == 409
    assert not _documented(schema, op, response, "damaged file")


def test_a_file_whose_key_is_gone_answers_the_documented_410(world, schema, settings):
    """A file whose key cannot be unwrapped: 410 JSON, as the schema says."""
    settings.KREO_KEYRING = f"other:{new_key()}"
    settings.KREO_ACTIVE_KEY_ID = "other"
    op = next(o for o in OPERATIONS if o.path.endswith("/download/"))
    response = world.client().get(world.url(op.path))
    assert response.status_code == 410
    assert not _documented(schema, op, response, "key gone")


@pytest.mark.parametrize(
    "op", [op for op in OPERATIONS if op.method == "PATCH"], ids=str
)
def test_patch_with_an_empty_object_is_an_accepted_no_op(op, world, schema):
    """No field of a PATCH is required, so {} is accepted and changes nothing."""
    body = schema["components"]["schemas"]
    ref = _operation(schema, op)["requestBody"]["content"]["application/json"]
    request_schema = body[ref["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert not request_schema.get("required"), f"{op} requires a field"
    before = (
        world.project.name,
        world.project.description,
        world.file.name,
        world.member.role,
    )
    response = world.client().patch(world.url(op.path), {}, "application/json")
    assert response.status_code == 200, response.content
    assert not _documented(schema, op, response, "PATCH {}")
    world.project.refresh_from_db()
    after = (
        world.project.name,
        world.project.description,
        ProjectFile.objects.get(pk=world.file.pk).name,
        Membership.objects.get(pk=world.member.pk).role,
    )
    assert after == before
    assert not AuditEvent.objects.filter(
        event_type__in=["project.update", "file.rename", "project.member.role"]
    ).exists()


def _sample(schema, prop: dict, world):
    """A value the schema calls valid, for a required property."""
    if "$ref" in prop:
        prop = schema["components"]["schemas"][prop["$ref"].rsplit("/", 1)[-1]]
    if "enum" in prop:
        return prop["enum"][-1]
    if prop.get("format") == "email":
        return UserFactory().email
    return "Sample"


@pytest.mark.parametrize(
    "op",
    [op for op in OPERATIONS if op.method == "POST"],
    ids=str,
)
def test_a_minimal_schema_valid_post_is_accepted(op, world, schema):
    """A JSON POST with only its required fields, valid per the schema, succeeds."""
    types = _request_types(schema, op)
    if "application/json" not in types:
        pytest.skip(f"{op} takes no JSON body (an upload, or no body at all)")
    ref = _operation(schema, op)["requestBody"]["content"]["application/json"]
    component = schema["components"]["schemas"][ref["schema"]["$ref"].rsplit("/")[-1]]
    body = {
        name: _sample(schema, component["properties"][name], world)
        for name in component.get("required", [])
    }
    _validate(schema, ref["schema"], body)
    response = world.client().post(world.url(op.path), body, "application/json")
    # 202: accepted for later (an invitation, joined only by the invitee).
    assert response.status_code in (200, 201, 202), response.content
    assert not _documented(schema, op, response, "minimal POST")


def _string_fields(schema, op) -> list[str]:
    content = _operation(schema, op).get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return []
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = []
    for field, prop in schema["components"]["schemas"][name]["properties"].items():
        if "$ref" in prop:
            prop = schema["components"]["schemas"][prop["$ref"].rsplit("/", 1)[-1]]
        if prop.get("type") == "string":
            fields.append(field)
    return fields


def _string_field_params() -> list:
    # The schema as /api/schema/ builds it, at collection time (no request).
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return [
        pytest.param(op, field, id=f"{op} {field}")
        for op in OPERATIONS
        if op.method in WRITE_METHODS
        for field in _string_fields(generated, op)
    ]


STRING_FIELDS = _string_field_params()


def test_string_fields_are_found():
    """The walk finds the string fields of the JSON write endpoints."""
    found = {p.id for p in STRING_FIELDS}
    assert "POST /api/projects/ name" in found
    assert "PATCH /api/projects/{project_id}/members/{membership_id}/ role" in found


@pytest.mark.parametrize(("op", "field"), STRING_FIELDS)
def test_a_number_for_a_string_field_is_refused(op, field, world, schema):
    """A JSON number where the schema says string: 400 on that field, nothing saved."""
    assert Membership.objects.filter(role=Role.OWNER).count() == 1
    events = set(AuditEvent.objects.values_list("event_type", flat=True))
    response = world.client().generic(
        op.method, world.url(op.path), f'{{"{field}": 12345}}', "application/json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not _documented(schema, op, response, "number for a string")
    world.project.refresh_from_db()
    assert world.project.name != "12345"
    written = set(AuditEvent.objects.values_list("event_type", flat=True)) - events
    assert written <= {"api.write"}, "a refused write changed something"


@pytest.mark.parametrize(
    ("what", "signed_in", "extra", "status"),
    [
        ("no credentials, YAML asked", False, {"HTTP_ACCEPT": "application/yaml"}, 401),
        ("no credentials", False, {}, 401),
        ("unknown format", True, {"QUERY_STRING": "format=xml"}, 404),
        ("HTML asked", True, {"HTTP_ACCEPT": "text/html"}, 406),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_errors_are_json(world, what, signed_in, extra, status):
    """/api/schema/ answers its errors as JSON with a detail, whatever was asked."""
    client = world.client() if signed_in else Client()
    response = client.get("/api/schema/", **extra)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json()["detail"], str)


def test_schema_throttled_is_json(world, settings):
    """Past the rate, /api/schema/ answers 429 as JSON with Retry-After."""
    settings.KREO_API_RATE = "1/minute"
    client = world.client()
    assert client.get("/api/schema/").status_code == 200
    response = client.get("/api/schema/", HTTP_ACCEPT="application/yaml")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert "throttled" in response.json()["detail"]
    assert int(response["Retry-After"]) > 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "op", [op for op in OPERATIONS if op.method == "DELETE"], ids=str
)
def test_deletes_document_what_they_answer_when_the_ledger_is_down(
    op, ledger_bucket, settings
):
    """With the erasure ledger unreachable, each DELETE's answer is documented."""
    world = make_world()
    schema = world.client().get("/api/schema/", HTTP_ACCEPT=SCHEMA_ACCEPT).json()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.KREO_KEY_LEDGER_S3_ENDPOINT_URL = f"http://127.0.0.1:{closed}"
    response = world.client().delete(world.url(op.path))
    assert response.status_code in (204, 503)
    assert not _documented(schema, op, response, "ledger down")
    # Removing a member or revoking an invitation erases nothing.
    if "{membership_id}" not in op.path and "{invitation_id}" not in op.path:
        assert response.status_code == 503, "an erasure went ahead without its ledger"
