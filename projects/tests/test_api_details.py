"""API and page details: control characters, sandboxed downloads, schema-valid calls."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from audit.models import AuditEvent
from kreo.tests.apiworld import make_world
from projects import downloads, services, uploads, validators
from projects.models import Project

pytestmark = pytest.mark.django_db

# Controls a name must not carry: NUL aside (Django refuses it itself), a C0
# control, DEL, a C1 control, the right-to-left override, a zero-width space's
# cousin (U+2060 word joiner, format), a private-use character.
CONTROLS = ["\x07", "\x1b[31m", "\x7f", "\x85", "\u202e", "\u2060", "\ue000"]


@pytest.fixture
def world():
    return make_world()


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
def test_api_refuses_control_characters_in_project_names(world, control):
    """POST and PATCH: a name with a control character is a 400 naming the field."""
    api = world.client()
    response = api.post(
        "/api/projects/",
        {"name": f"Bridge{control}deck"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"name": [validators.PROJECT_NAME_CONTROL]}
    assert not Project.objects.filter(name__startswith="Bridge").exists()
    response = api.patch(
        world.url("/api/projects/{project_id}/"),
        {"name": f"Re{control}named"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"name": [validators.PROJECT_NAME_CONTROL]}
    world.project.refresh_from_db()
    assert not world.project.name.startswith("Re")


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
def test_api_refuses_control_characters_in_descriptions(world, control):
    """A description with a control character is refused; nothing is changed."""
    before = world.project.description
    response = world.client().patch(
        world.url("/api/projects/{project_id}/"),
        {"description": f"Line{control}one"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"description": [validators.DESCRIPTION_CONTROL]}
    world.project.refresh_from_db()
    assert world.project.description == before


def test_descriptions_keep_line_breaks_and_tabs(world):
    """Free text may span lines: CR, LF and tab are not refused."""
    text = "Ground floor\r\nFirst floor\n\tstairs"
    response = world.client().patch(
        world.url("/api/projects/{project_id}/"),
        {"description": text},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["description"] == text


def test_pages_refuse_control_characters_with_the_same_text(world):
    """The create and edit forms show the same message as the API, and save nothing."""
    client = Client()
    client.force_login(world.owner)
    response = client.post(
        reverse("projects:create"), {"name": "Depot\u202egpj.exe", "description": ""}
    )
    assert response.status_code == 400
    assert escape(validators.PROJECT_NAME_CONTROL).encode() in response.content
    response = client.post(
        reverse("projects:edit", args=[world.project.pk]),
        {"name": world.project.name, "description": "bell\x07"},
    )
    assert response.status_code == 400
    assert escape(validators.DESCRIPTION_CONTROL).encode() in response.content
    assert Project.objects.count() == 1
    world.project.refresh_from_db()
    assert "\x07" not in world.project.description


def test_file_names_use_the_same_definition(world):
    """A file rename with the right-to-left override is refused as before."""
    response = world.client().patch(
        world.url("/api/projects/{project_id}/files/{file_id}/"),
        {"name": "plan\u202efdp.pdf"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert uploads.NAME_CONTROL in str(response.json())


def test_services_refuse_control_characters_for_every_caller(world):
    """Commands and tasks call the service: it refuses too, on the field."""
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        services.project_create(actor=world.owner, name="a\x1bb")
    assert caught.value.message_dict == {"name": [validators.PROJECT_NAME_CONTROL]}


def test_api_download_is_sandboxed_like_the_page_download(world):
    """The API and the page send the file with the same sandboxing CSP."""
    client = world.client()
    page = client.get(
        reverse("projects:file-download", args=[world.project.pk, world.file.pk])
    )
    api = client.get(world.url("/api/projects/{project_id}/files/{file_id}/download/"))
    assert page.status_code == api.status_code == 200
    assert api["Content-Security-Policy"] == page["Content-Security-Policy"]
    assert api["Content-Security-Policy"] == downloads.DOWNLOAD_CSP
    assert "sandbox" in api["Content-Security-Policy"]
    assert api["Content-Type"] == world.file.content_type
    assert AuditEvent.objects.filter(event_type="file.download").count() == 2
