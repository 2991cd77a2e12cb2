"""Projects and files can be searched, sorted and paged; odd parameters
fall back to the defaults instead of failing."""

import re

import pytest
from django.urls import reverse

from accounts.tests.factories import UserFactory
from projects import views
from projects.models import Role
from projects.tests.factories import MembershipFactory, stored_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(client):
    user = UserFactory()
    client.force_login(user)
    return user


def _names(page):
    return re.findall(r'<td><a href="/projects/[^"]+/">([^<]+)</a>', page)


def test_projects_are_searched_sorted_and_paged(client, user, settings):
    for name in ("Bridge deck", "Airport apron", "Car park levels", "Bridge piers"):
        membership = MembershipFactory(user=user, role=Role.OWNER)
        membership.project.name = name
        membership.project.save()
    other = MembershipFactory(role=Role.OWNER)  # someone else's "Bridge" project
    other.project.name = "Bridge of someone else"
    other.project.save()
    url = reverse("projects:list")
    found = client.get(url, {"q": "bridge"}).content.decode()
    assert _names(found) == ["Bridge deck", "Bridge piers"]
    assert _names(client.get(url).content.decode())[0] == "Airport apron"
    none = client.get(url, {"q": "<b>tunnel</b>"}).content.decode()
    assert "No project name contains “&lt;b&gt;tunnel&lt;/b&gt;”." in none
    views.PROJECTS_PER_PAGE = 3
    try:
        first = client.get(url, {"sort": "nonsense"}).content.decode()
        assert _names(first) == ["Airport apron", "Bridge deck", "Bridge piers"]
        assert "Page 1 of 2" in first
        second = client.get(url, {"page": "2"}).content.decode()
        assert _names(second) == ["Car park levels"]
        assert client.get(url, {"page": "abc"}).status_code == 200
        assert "Page 2 of 2" in client.get(url, {"page": "99"}).content.decode()
    finally:
        views.PROJECTS_PER_PAGE = 20


def test_files_are_searched_and_sorted(client, user):
    membership = MembershipFactory(user=user, role=Role.VIEWER)
    stored_file(membership.project, name="b-section.pdf", content=b"%PDF-1.7\n" * 10)
    stored_file(membership.project, name="a-plan.pdf")
    stored_file(membership.project, name="c-costs-plan.pdf", content=b"%PDF-1.7\n" * 99)
    url = membership.project.get_absolute_url()

    def names(**params):
        page = client.get(url, params).content.decode()
        return re.findall(r'/download/">([^<]+)</a>', page)

    assert names() == ["a-plan.pdf", "b-section.pdf", "c-costs-plan.pdf"]
    assert names(q="plan") == ["a-plan.pdf", "c-costs-plan.pdf"]
    assert names(sort="size") == ["c-costs-plan.pdf", "b-section.pdf", "a-plan.pdf"]
    empty = client.get(url, {"q": "survey"}).content.decode()
    assert "No file name contains “survey”." in empty
