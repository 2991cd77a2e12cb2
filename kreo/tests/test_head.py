"""HEAD is answered wherever GET is, for every URL in the URL conf.

Load balancers, uptime monitors and link checkers send HEAD; a view that
answers GET but refuses HEAD with 405 looks broken to them.
"""

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from kreo.tests.apiworld import make_world

pytestmark = pytest.mark.django_db

# The URL conf's keyword arguments, by name; a new one fails the walk until it
# is given a value here (so no URL is skipped silently).
_PARAMS = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>|\(\?P<(?P<rname>\w+)>[^)]*\)")


def _routes(patterns=None, prefix="") -> list[str]:
    routes = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            routes += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.append(route)
    return routes


def _values(world) -> dict[str, str]:
    return {
        "project_id": str(world.project.pk),
        "file_id": str(world.file.pk),
        "membership_id": str(world.member.pk),
        "invitation_id": "1",
        "page": "1",
        "public_id": "no-such-incident",
        "record_id": "1",
        "export_id": str(world.project.pk),
        "token": "not-a-token",
        "token_id": "0123456789abcdef",
        "uidb64": "MQ",
        "certificate_id": str(world.project.pk),
        "object_id": "1",
        "content_type_id": "1",
        "pk": "1",
        "id": "1",
        "app_label": "projects",
        "url": "nothing-here/",
        "control_id": "backup-age",
    }


def _url(route: str, values: dict[str, str]) -> str:
    def fill(match):
        name = match.group("name") or match.group("rname")
        assert name in values, f"give the URL kwarg {name!r} a value in _values()"
        return values[name]

    return "/" + _PARAMS.sub(fill, route).replace("\\", "")


def test_the_walk_reaches_the_pages_and_the_api():
    """The URL walk sees the health check, sign-in, pages, API and admin."""
    routes = set(_routes())
    assert {"healthz", "accounts/login/", "projects/", "api/projects/"} <= routes
    assert any(route.startswith("admin/") for route in routes)


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
def test_head_is_answered_wherever_get_is(signed_in):
    """Every URL that answers GET answers HEAD with the same status and no body."""
    world = make_world()
    values = _values(world)
    refused = []
    for route in _routes():
        url = _url(route, values)
        # A fresh client per URL: a GET that signs out cannot spoil the next one.
        client = Client(raise_request_exception=False)
        if signed_in:
            client.force_login(world.owner)
        got = client.get(url)
        if got.status_code == 405:
            continue
        head = client.head(url)
        if head.status_code != got.status_code:
            refused.append(f"{url}: GET {got.status_code}, HEAD {head.status_code}")
        elif b"".join(head.streaming_content) if head.streaming else head.content:
            refused.append(f"{url}: HEAD sent a body")
    assert not refused, "\n".join(refused)


def test_healthz_and_sign_in_answer_head():
    """The two URLs monitors probe first answer HEAD with 200."""
    client = Client()
    assert client.head("/healthz").status_code == 200
    assert client.head("/accounts/login/").status_code == 200
