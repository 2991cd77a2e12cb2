"""The API as its URL conf declares it, and a project world to call it on.

Tests that must cover every endpoint walk ``api_operations()`` instead of
naming endpoints, so an endpoint added later is covered or fails the test.
"""

from dataclasses import dataclass

from django.test import Client
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.views import SpectacularAPIView
from knox.models import AuthToken

from accounts.tests.factories import UserFactory
from projects.invitations import invitation_create
from projects.models import Role
from projects.tests.factories import MembershipFactory, ProjectFactory, stored_file

WRITE_METHODS = {"POST", "PUT", "PATCH"}


@dataclass(frozen=True)
class Operation:
    path: str  # as in the schema: /api/projects/{project_id}/
    method: str  # upper case
    view: type

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def api_operations() -> list[Operation]:
    """Every (path, method) the URL conf routes to a DRF view (but the schema's)."""
    found = [
        Operation(path, method.upper(), callback.cls)
        for path, _regex, method, callback in EndpointEnumerator().get_api_endpoints()
        if not issubclass(callback.cls, SpectacularAPIView)
    ]
    assert found, "the URL conf routes nothing to the API"
    return found


@dataclass
class World:
    """An owner with a token, a project, a file in it and a second member."""

    owner: object
    token: str
    project: object
    file: object
    member: object
    invitation: object

    def url(self, path: str, **override) -> str:
        values = {
            "project_id": self.project.pk,
            "file_id": self.file.pk,
            "membership_id": self.member.pk,
            "invitation_id": self.invitation.pk,
            **override,
        }
        return path.format(**values)

    def client(self, **kwargs) -> Client:
        """Signed in both ways: the token, and a session for session-only views."""
        return _signed_in(self.owner, **kwargs)

    def viewer_client(self, **kwargs) -> Client:
        """The second member (a viewer), signed in both ways."""
        return _signed_in(self.member.user, **kwargs)


def _signed_in(user, **kwargs) -> Client:
    _, token = AuthToken.objects.create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", **kwargs)
    client.force_login(user)
    return client


def make_world() -> World:
    owner = UserFactory()
    project = ProjectFactory()
    MembershipFactory(project=project, user=owner, role=Role.OWNER)
    member = MembershipFactory(project=project, role=Role.VIEWER)
    item = stored_file(project, uploaded_by=owner)
    _, token = AuthToken.objects.create(user=owner)
    invitation = invitation_create(
        actor=owner, project=project, email="invited@example.test", role=Role.VIEWER
    )
    return World(owner, token, project, item, member, invitation)
