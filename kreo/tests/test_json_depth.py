"""Deeply nested or oversized JSON is a client error on every API write endpoint."""

import logging

import pytest

from audit.models import AuditEvent
from kreo import api, parsers
from kreo.tests.apiworld import WRITE_METHODS, api_operations, make_world

pytestmark = pytest.mark.django_db

WRITES = [op for op in api_operations() if op.method in WRITE_METHODS]
BOMB = "[" * 1000 + "]" * 1000


def _json_bodied(client, op) -> bool:
    """Whether the schema gives ``op`` a JSON request body."""
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"][op.path][op.method.lower()]
    return "application/json" in operation.get("requestBody", {}).get("content", {})


def test_every_write_endpoint_is_enumerated():
    """The walk finds the JSON write endpoints (so the tests below are not empty)."""
    found = {str(op) for op in WRITES}
    assert {
        "POST /api/projects/",
        "PATCH /api/projects/{project_id}/",
        "PATCH /api/projects/{project_id}/files/{file_id}/",
        "POST /api/projects/{project_id}/members/",
        "PATCH /api/projects/{project_id}/members/{membership_id}/",
    } <= found


@pytest.mark.parametrize("op", WRITES, ids=str)
def test_json_nested_1000_deep_is_400_without_traceback(op, caplog):
    """A thousand nested arrays: 400 with a message, no traceback, no system.error."""
    world = make_world()
    client = world.client(raise_request_exception=False)
    json_body = _json_bodied(client, op)
    caplog.set_level(logging.WARNING)
    response = client.generic(
        op.method, world.url(op.path), BOMB, content_type="application/json"
    )
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, f"{op} logged {tracebacks[0].getMessage()}"
    assert not AuditEvent.objects.filter(event_type="system.error").exists()
    assert response.status_code < 500, response.content
    if json_body:
        assert response.status_code == 400
        assert response.json() == {
            "detail": parsers.JSON_TOO_DEEP.format(limit=parsers.MAX_DEPTH)
        }
    elif op.view.parser_classes and response.status_code == 400:
        # An endpoint that takes no JSON (an upload) names what it wants.
        assert response.json()


@pytest.mark.parametrize("op", WRITES, ids=str)
def test_json_body_over_the_memory_limit_is_413(op, settings, caplog):
    """A JSON body past DATA_UPLOAD_MAX_MEMORY_SIZE: 413 naming the limit."""
    world = make_world()
    client = world.client(raise_request_exception=False)
    if not _json_bodied(client, op):
        pytest.skip(f"{op} takes no JSON body")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "' + "x" * 2000 + '"}'
    response = client.generic(
        op.method, world.url(op.path), body, content_type="application/json"
    )
    assert not [r for r in caplog.records if r.exc_info]
    assert response.status_code == 413
    assert response.json() == {"detail": api.BODY_TOO_LARGE.format(limit=1000)}


def test_brackets_inside_strings_do_not_count(client):
    """A name made of brackets and escaped quotes is a name, not nesting."""
    world = make_world()
    name = '\\"' + "[{" * 40 + '\\" ]'
    response = world.client().post(
        "/api/projects/", '{"name": "' + name + '"}', content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["name"] == '"' + "[{" * 40 + '" ]'


def test_nesting_at_the_limit_reaches_the_serializer():
    """Exactly MAX_DEPTH levels parse; the serializer then names the bad field."""
    world = make_world()
    inner = "[" * (parsers.MAX_DEPTH - 1) + "]" * (parsers.MAX_DEPTH - 1)
    response = world.client().post(
        "/api/projects/", '{"name": ' + inner + "}", content_type="application/json"
    )
    assert response.status_code == 400
    assert "name" in response.json()
    deeper = "[" * parsers.MAX_DEPTH + "]" * parsers.MAX_DEPTH
    response = world.client().post(
        "/api/projects/", '{"name": ' + deeper + "}", content_type="application/json"
    )
    assert response.json() == {
        "detail": parsers.JSON_TOO_DEEP.format(limit=parsers.MAX_DEPTH)
    }


def test_unterminated_string_is_a_parse_error_not_a_depth_error():
    """A body whose string never closes is reported as invalid JSON."""
    world = make_world()
    response = world.client().post(
        "/api/projects/", '{"name": "[[[[' + "[" * 100, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")


def test_too_deep_scan():
    """The scan counts open brackets outside strings only."""
    assert parsers.too_deep("[[[]]]", 2)
    assert not parsers.too_deep("[[[]]]", 3)
    assert not parsers.too_deep('["[[[[", {"a": "}}}{{{{"}]', 2)
    assert not parsers.too_deep('["\\"[[[["]', 1)
    assert not parsers.too_deep('["\\\\", "[[[["]', 1), "an escaped backslash"
    assert parsers.too_deep('["\\\\", [[[]]]]', 3)
    assert parsers.too_deep("[]" * 10 + "[" * 33 + "]" * 33, 32)
    assert not parsers.too_deep("[]" * 40 + "[" * 32 + "]" * 32, 32)
    assert not parsers.too_deep('["' + "[" * 40, 32), "unterminated string"
