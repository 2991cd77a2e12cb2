"""Who may open which project page or API endpoint, built from the URL configuration.

Every URL of the ``projects`` and ``api`` namespaces must have a row in
``CASES``: a new URL without one fails ``test_every_url_has_a_case``. Each
case runs once per actor against a fresh project with a file and one member of
each role; a refused request must leave the data exactly as it was.
"""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.tests.factories import UserFactory
from projects.models import Invitation, Membership, Project, Role
from projects.tests.factories import PDF, MembershipFactory, ProjectFactory, stored_file

ANON, NONMEMBER, STAFF = "anonymous", "non-member", "staff"
VIEWER, EDITOR, OWNER = Role.VIEWER.value, Role.EDITOR.value, Role.OWNER.value
ACTORS = [ANON, NONMEMBER, STAFF, VIEWER, EDITOR, OWNER]
MEMBERS = [VIEWER, EDITOR, OWNER]

NAMESPACES = ("projects", "api")


def page(ok_roles, ok=200):
    """Expected statuses of a project page: members in ``ok_roles`` get ``ok``."""
    statuses = {ANON: 302, NONMEMBER: 404, STAFF: 404}
    statuses.update({role: ok if role in ok_roles else 403 for role in MEMBERS})
    return statuses


def api(ok_roles, ok=200):
    statuses = {ANON: 401, NONMEMBER: 404, STAFF: 404}
    statuses.update({role: ok if role in ok_roles else 403 for role in MEMBERS})
    return statuses


def everyone(status, anon):
    return {actor: (anon if actor == ANON else status) for actor in ACTORS}


def _upload():
    return {"file": SimpleUploadedFile("new.pdf", PDF, "application/pdf")}


# url name -> method -> (kwargs builder, payload builder or None, statuses)
CASES = {
    "projects:list": {"GET": (None, None, everyone(200, 302))},
    "projects:create": {
        "GET": (None, None, everyone(200, 302)),
        "POST": (None, lambda w: {"name": "New estimate"}, everyone(302, 302)),
    },
    "projects:detail": {"GET": ("project", None, page(MEMBERS))},
    "projects:edit": {
        "GET": ("project", None, page([OWNER])),
        "POST": ("project", lambda w: {"name": "Renamed"}, page([OWNER], 302)),
    },
    "projects:delete": {
        "GET": ("project", None, page([OWNER])),
        "POST": ("project", lambda w: {}, page([OWNER], 302)),
    },
    "projects:file-upload": {
        "POST": ("project", lambda w: _upload(), page([EDITOR, OWNER], 302)),
    },
    "projects:file-download": {"GET": ("file", None, page(MEMBERS))},
    "projects:file-preview": {"GET": ("file", None, page(MEMBERS))},
    "projects:file-thumbnail": {"GET": ("image", None, page(MEMBERS))},
    "projects:file-rename": {
        "GET": ("file", None, page([EDITOR, OWNER])),
        "POST": ("file", lambda w: {"name": "renamed.pdf"}, page([EDITOR, OWNER], 302)),
    },
    "projects:file-delete": {
        "GET": ("file", None, page([OWNER])),
        "POST": ("file", lambda w: {}, page([OWNER], 302)),
    },
    "projects:members": {
        "GET": ("project", None, page([OWNER])),
        "POST": (
            "project",
            lambda w: {"email": w["outsider"].email, "role": VIEWER},
            page([OWNER], 302),
        ),
    },
    "projects:member-role": {
        "POST": ("member", lambda w: {"role": EDITOR}, page([OWNER], 302)),
    },
    "projects:member-remove": {
        "POST": ("member", lambda w: {}, page([OWNER], 302)),
    },
    "projects:invitation-revoke": {
        "POST": ("invitation", lambda w: {}, page([OWNER], 302)),
    },
    # A made-up link is refused the same to everyone, signed in or not.
    "projects:invitation-accept": {
        "GET": ("token", None, everyone(400, 400)),
        "POST": ("token", lambda w: {}, everyone(400, 400)),
    },
    "api:token-create": {"POST": (None, None, everyone(201, 403))},
    "api:token-revoke": {"POST": (None, None, everyone(204, 401))},
    "api:project-list": {
        "GET": (None, None, everyone(200, 401)),
        "POST": (None, lambda w: {"name": "New estimate"}, everyone(201, 401)),
    },
    "api:project-detail": {
        "GET": ("project", None, api(MEMBERS)),
        "PATCH": ("project", lambda w: {"name": "Renamed"}, api([OWNER])),
        "DELETE": ("project", None, api([OWNER], 204)),
    },
    "api:file-list": {
        "GET": ("project", None, api(MEMBERS)),
        "POST": ("project", lambda w: _upload(), api([EDITOR, OWNER], 201)),
    },
    "api:file-detail": {
        "GET": ("file", None, api(MEMBERS)),
        "PATCH": ("file", lambda w: {"name": "renamed.pdf"}, api([EDITOR, OWNER])),
        "DELETE": ("file", None, api([OWNER], 204)),
    },
    "api:file-download": {"GET": ("file", None, api(MEMBERS))},
    "api:member-list": {
        "GET": ("project", None, api(MEMBERS)),
        "POST": (
            "project",
            lambda w: {"email": w["outsider"].email, "role": VIEWER},
            api([OWNER], 202),
        ),
    },
    "api:invitation-list": {"GET": ("project", None, api([OWNER]))},
    "api:invitation-detail": {"DELETE": ("invitation", None, api([OWNER], 204))},
    "api:member-detail": {
        "GET": ("member", None, api(MEMBERS)),
        "PATCH": ("member", lambda w: {"role": EDITOR}, api([OWNER])),
        "DELETE": ("member", None, api([OWNER], 204)),
    },
}


def _names(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            namespace = entry.namespace
            inner = f"{prefix}{namespace}:" if namespace else prefix
            yield from _names(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{prefix}{entry.name}"


def url_names() -> set[str]:
    return {name for name in _names(get_resolver()) if name.split(":")[0] in NAMESPACES}


def test_every_url_has_a_case():
    """A project or API URL added without an authorization case fails the suite."""
    names = url_names()
    assert names, "no project URLs found"
    assert names - CASES.keys() == set(), "URLs without authorization cases"
    assert CASES.keys() - names == set(), "cases for URLs that do not exist"


def test_every_api_method_has_a_case():
    """Each HTTP method an API view implements is covered for every actor."""
    from django.urls import resolve

    missing = []
    for name in (n for n in CASES if n.startswith("api:")):
        kwargs = {}
        pattern = resolve_pattern(name)
        for converter in pattern.converters:
            kwargs[converter] = (
                1
                if converter in ("membership_id", "invitation_id")
                else "00000000-0000-0000-0000-000000000000"
            )
        view = resolve(reverse(name, kwargs=kwargs)).func.view_class
        methods = {
            m.upper()
            for m in view.http_method_names
            if hasattr(view, m) and m not in {"options", "head"}
        }
        missing += [f"{name} {m}" for m in methods - CASES[name].keys()]
    assert missing == []


def resolve_pattern(name):
    namespace, short = name.split(":")
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == namespace:
            for inner in entry.url_patterns:
                if getattr(inner, "name", None) == short:
                    return inner.pattern
    raise LookupError(name)


@pytest.fixture
def world(db):
    project = ProjectFactory()
    users = {role: UserFactory() for role in MEMBERS}
    memberships = {
        role: MembershipFactory(project=project, user=user, role=role)
        for role, user in users.items()
    }
    users[NONMEMBER] = UserFactory()
    users[STAFF] = UserFactory(is_staff=True, is_superuser=True)
    # Another project the non-member belongs to, so "member of another
    # project" is what the non-member is.
    MembershipFactory(user=users[NONMEMBER], role=OWNER)
    return {
        "project": project,
        "file": stored_file(project, uploaded_by=users[EDITOR]),
        "image": _image_with_thumbnail(project, users[EDITOR]),
        "member": memberships[VIEWER],
        "users": users,
        "outsider": UserFactory(),
        "invitation": Invitation.objects.create(
            project=project,
            email="invited@example.test",
            role=VIEWER,
            invited_by=users[OWNER],
            expires_at=timezone.now() + timedelta(days=7),
        ),
    }


def _image_with_thumbnail(project, uploaded_by):
    """A PNG of the project whose thumbnail the task has made."""
    import io

    from PIL import Image

    from projects import thumbnails

    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), (40, 90, 160)).save(buffer, "PNG")
    item = stored_file(
        project,
        name="site.png",
        content=buffer.getvalue(),
        uploaded_by=uploaded_by,
        kind="png",
        content_type="image/png",
    )
    assert thumbnails.thumbnail_make(file_id=item.pk)
    item.refresh_from_db()
    return item


def _kwargs(target, w):
    if target is None:
        return {}
    if target == "token":
        return {"token": "not-a-token"}
    kwargs = {"project_id": w["project"].pk}
    if target == "file":
        kwargs["file_id"] = w["file"].pk
    if target == "image":
        kwargs["file_id"] = w["image"].pk
    if target == "member":
        kwargs["membership_id"] = w["member"].pk
    if target == "invitation":
        kwargs["invitation_id"] = w["invitation"].pk
    return kwargs


def _snapshot(w):
    project = Project.objects.filter(pk=w["project"].pk).first()
    return {
        "projects": Project.objects.count(),
        "name": project and project.name,
        "files": sorted(project.files.values_list("name", flat=True))
        if project
        else [],
        "members": sorted(
            Membership.objects.filter(project=w["project"].pk).values_list(
                "user__email", "role"
            )
        ),
        "invitations": sorted(
            Invitation.objects.filter(
                project=w["project"].pk, revoked_at=None, accepted_at=None
            ).values_list("email", "role")
        ),
    }


CASE_IDS = [
    (name, method, actor)
    for name, methods in CASES.items()
    for method in methods
    for actor in ACTORS
]


@pytest.mark.parametrize(("name", "method", "actor"), CASE_IDS)
def test_authorization(client, world, otp_login, name, method, actor):
    """Only the roles the matrix allows get through; everyone else changes nothing."""
    target, payload, statuses = CASES[name][method]
    if actor == STAFF:
        # Staff must sign in with two factors (accounts policy).
        otp_login(client, world["users"][actor])
    elif actor != ANON:
        client.force_login(world["users"][actor])
    url = reverse(name, kwargs=_kwargs(target, world))
    data = payload(world) if payload else None
    before = _snapshot(world)
    response = _request(client, method, url, data, name.startswith("api:"))
    expected = statuses[actor]
    assert response.status_code == expected, (
        f"{actor} {method} {name}: {response.status_code}, expected {expected}"
    )
    if expected >= 400 or (actor == ANON and expected == 302):
        assert _snapshot(world) == before, "a refused request changed data"
    if actor == ANON and not name.startswith("api:") and expected == 302:
        assert response["Location"].startswith(reverse("accounts:login"))


def _request(client, method, url, data, is_api):
    if method == "GET":
        return client.get(url)
    if method == "DELETE":
        return client.delete(url)
    if not is_api or (data and "file" in data):
        return client.post(url, data or {})
    send = getattr(client, method.lower())
    return send(url, data or {}, content_type="application/json")


def test_staff_outside_the_project_see_it_only_in_the_admin(client, world, otp_login):
    """Staff manage every project in the admin, but project pages stay members-only."""
    otp_login(client, world["users"][STAFF])
    project = world["project"]
    assert client.get(reverse("projects:detail", args=[project.pk])).status_code == 404
    change = reverse("admin:projects_project_change", args=[project.pk])
    response = client.get(change)
    assert response.status_code == 200
    assert project.name.encode() in response.content


def test_page_urls_refuse_other_methods(client, world):
    """Pages answer only the methods they declare: DELETE on a page is 405."""
    client.force_login(world["users"][OWNER])
    url = reverse("projects:detail", args=[world["project"].pk])
    assert client.delete(url).status_code == 405
    assert Project.objects.filter(pk=world["project"].pk).exists()
