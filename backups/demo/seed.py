"""Seed users, projects with members and files, and audit events."""

import os

import django

django.setup()

from accounts.tests.factories import UserFactory  # noqa: E402
from audit.services import audit_record  # noqa: E402
from projects.tests.factories import (  # noqa: E402
    MembershipFactory,
    ProjectFactory,
    stored_file,
)

owner = UserFactory(email="owner@example.test", is_staff=True)
for i in range(20):
    project = ProjectFactory(name=f"Tower {i}", created_by=owner)
    for _ in range(3):
        MembershipFactory(project=project, user=UserFactory())
    for j in range(3):
        content = b"%PDF-1.7\n" + os.urandom(20000 + 5000 * j)
        stored_file(project, name=f"d{i}-{j}.pdf", content=content, uploaded_by=owner)
    audit_record(event_type="project.create", actor=owner, target=project)
