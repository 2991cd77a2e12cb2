"""The REST API: token and session auth, the same rules as the pages, clear 4xx."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from knox.models import AuthToken

from accounts.tests.factories import UserFactory
from projects import uploads
from projects.models import Project, ProjectFile
from projects.tests.factories import PDF, PNG

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return UserFactory()


@pytest.fixture
def token(user):
    _, raw = AuthToken.objects.create(user=user)
    return raw


@pytest.fixture
def api(token):
    """A client that authenticates with the token alone (no session)."""
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def test_token_lifecycle(client, user):
    """A signed-in user gets a token once; it works; revoked, it stops working."""
    client.force_login(user)
    response = client.post(reverse("api:token-create"))
    assert response.status_code == 201
    raw = response.json()["token"]
    assert not AuthToken.objects.filter(digest__contains=raw).exists(), (
        "the token is stored in plain text"
    )
    api = Client(HTTP_AUTHORIZATION=f"Token {raw}")
    assert api.get(reverse("api:project-list")).status_code == 200
    assert api.post(reverse("api:token-revoke")).status_code == 204
    response = api.get(reverse("api:project-list"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_forged_token_is_refused(api, token):
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    response = Client(HTTP_AUTHORIZATION=f"Token {forged}").get("/api/projects/")
    assert response.status_code == 401


def test_project_and_file_round_trip(api, user):
    response = api.post(
        "/api/projects/", {"name": "Bridge deck"}, content_type="application/json"
    )
    assert response.status_code == 201
    project_id = response.json()["id"]
    assert response.json()["role"] == "owner"
    response = api.post(
        f"/api/projects/{project_id}/files/",
        {"file": SimpleUploadedFile("deck.pdf", PDF)},
    )
    assert response.status_code == 201, response.content
    item = response.json()
    assert item["name"] == "deck.pdf" and item["size"] == len(PDF)
    response = api.get(item["download_url"])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PDF
    listing = api.get(f"/api/projects/{project_id}/files/").json()
    assert [f["name"] for f in listing] == ["deck.pdf"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": ["not", "a", "string"]}, "name"),
    ],
)
def test_malformed_project_payload_is_400_with_the_field(api, body, field):
    response = api.post("/api/projects/", body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Project.objects.exists()


def test_invalid_json_is_400(api):
    response = api.post("/api/projects/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


@pytest.fixture
def project(api):
    response = api.post(
        "/api/projects/", {"name": "Site"}, content_type="application/json"
    )
    return response.json()["id"]


def test_upload_errors_name_the_problem(api, project, settings):
    url = f"/api/projects/{project}/files/"
    response = api.post(url, {"file": SimpleUploadedFile("a.pdf", PNG)})
    assert response.status_code == 400
    assert response.json() == [uploads.TYPE_MISMATCH.format(expected="PDF")]
    response = api.post(
        url, {"file": SimpleUploadedFile("a.pdf", PDF), "name": "../../x.pdf"}
    )
    assert response.status_code == 400
    assert response.json() == [uploads.NAME_PATH]
    response = api.post(url, {})
    assert response.status_code == 400
    assert "file" in response.json()
    response = api.post(url, {"file": "not a file"})
    assert response.status_code == 400
    settings.KREO_MAX_UPLOAD_BYTES = 10
    response = api.post(url, {"file": SimpleUploadedFile("a.pdf", PDF)})
    assert response.status_code == 413
    assert "larger than the" in response.json()["detail"]
    assert not ProjectFile.objects.exists()


def test_member_payload_errors(api, project):
    url = f"/api/projects/{project}/members/"
    response = api.post(
        url,
        {"email": "ghost@example.test", "role": "viewer"},
        content_type="application/json",
    )
    assert response.status_code == 202  # an invitation, account or not
    response = api.post(
        url, {"email": "not-an-email", "role": "boss"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()) == {"email", "role"}


def test_session_writes_need_the_csrf_token(user):
    """A signed-in browser cannot be made to call the API cross-site."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(
        "/api/projects/", {"name": "CSRF"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Project.objects.exists()


def test_schema_describes_every_endpoint(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/api/projects/{project_id}/files/{file_id}/download/" in paths
    assert "/api/projects/{project_id}/members/{membership_id}/" in paths
    assert set(paths["/api/projects/{project_id}/"]) >= {"get", "patch", "delete"}


def test_schema_needs_authentication(client):
    assert client.get("/api/schema/").status_code == 401
