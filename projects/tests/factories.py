import hashlib

import factory
from django.core.files.base import ContentFile

from accounts.tests.factories import UserFactory
from projects.models import Membership, Project, ProjectFile, Role
from projects.storage import blob_store

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06"
    b"\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01"
    b"\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Estimate {n}")
    description = "Warehouse extension, ground floor takeoff."


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


def stored_file(
    project,
    *,
    name="plan.pdf",
    content=PDF,
    uploaded_by=None,
    kind="pdf",
    content_type="application/pdf",
):
    """A file row with its bytes encrypted in the configured storage, as uploads
    are (bypasses the upload checks: ``kind`` and ``content_type`` are taken
    as given)."""
    item = ProjectFile(
        project=project,
        name=name,
        kind=kind,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        uploaded_by=uploaded_by,
    )
    blob_store(item, ContentFile(content).chunks())
    item.save()
    return item
