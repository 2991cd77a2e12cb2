"""File previews: PDFs and images shown in the browser, recognised from the
bytes, sandboxed; anything else goes to its download; members only."""

import pytest
from django.urls import reverse

from accounts.tests.factories import PASSWORD, UserFactory
from audit.models import AuditEvent
from projects.models import Role
from projects.tests.factories import PDF, PNG, MembershipFactory, stored_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client):
    membership = MembershipFactory(role=Role.VIEWER)
    client.login(username=membership.user.email, password=PASSWORD)
    return membership


def _preview(client, item):
    return client.get(reverse("projects:file-preview", args=[item.project_id, item.pk]))


def test_an_image_opens_inline_sandboxed_and_the_view_is_audited(client, member):
    item = stored_file(member.project, name="site.png", content=PNG)
    response = _preview(client, item)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline")
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    event = AuditEvent.objects.get(event_type="file.download", target_id=str(item.pk))
    assert event.details["inline"] is True
    assert event.actor_id == member.user_id


def test_a_pdf_opens_inline_as_a_pdf(client, member):
    item = stored_file(member.project, name="plan.pdf", content=PDF)
    response = _preview(client, item)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("inline")


def test_html_stored_under_a_pdf_name_is_downloaded_not_shown(client, member):
    """The type comes from the bytes: a page disguised as a PDF (or any file
    that is not a PDF or an image) is sent to its download, never inline."""
    disguised = stored_file(
        member.project, name="plan.pdf", content=b"<html><script>alert(1)</script>"
    )
    response = _preview(client, disguised)
    download = reverse("projects:file-download", args=[member.project_id, disguised.pk])
    assert response.status_code == 302 and response["Location"] == download
    assert not AuditEvent.objects.filter(
        event_type="file.download", details__inline=True
    ).exists()
    sheet = stored_file(member.project, name="costs.csv", content=b"a,b\n1,2\n")
    assert _preview(client, sheet)["Location"].endswith("/download/")


def test_outsiders_get_no_preview(client):
    item = stored_file(MembershipFactory(role=Role.OWNER).project, content=PNG)
    outsider = UserFactory()
    client.login(username=outsider.email, password=PASSWORD)
    assert _preview(client, item).status_code == 404
    client.logout()
    assert _preview(client, item).status_code == 302  # to sign in
    assert not AuditEvent.objects.filter(event_type="file.download").exists()


def test_the_project_page_offers_a_preview_only_where_there_is_one(client, member):
    stored_file(member.project, name="plan.pdf", content=PDF)
    item = stored_file(member.project, name="costs.csv", content=b"a,b\n")
    item.kind = "csv"
    item.save()
    page = client.get(member.project.get_absolute_url()).content.decode()
    assert page.count("/preview/") == 1
