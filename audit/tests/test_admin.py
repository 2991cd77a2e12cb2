"""Audit data in the admin: auditors and superusers only, read-only, watched."""

import re

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.tests.factories import UserFactory
from audit.apps import AUDITOR_GROUP
from audit.models import AuditEvent, AuditReview
from audit.services import audit_record, review_create

pytestmark = pytest.mark.django_db


def staff_client(client, *, auditor=False, superuser=False):
    """A client signed in as staff with a verified second factor."""
    user = UserFactory(is_staff=True, is_superuser=superuser)
    if auditor:
        user.groups.add(Group.objects.get(name=AUDITOR_GROUP))
    client.force_login(user)
    if apps.is_installed("django_otp"):
        from django_otp.plugins.otp_static.models import StaticDevice

        device = StaticDevice.objects.create(user=user, name="test")
        session = client.session
        session["otp_device_id"] = device.persistent_id
        session.save()
    return user


def test_auditor_sees_events_and_the_look_is_recorded(client):
    """An auditor's list and detail views each record an audit.view event."""
    user = staff_client(client, auditor=True)
    event = audit_record(event_type="file.download", actor_label="a@x.test")
    listing = client.get(reverse("admin:audit_auditevent_changelist"))
    assert listing.status_code == 200
    assert b"file.download" in listing.content
    detail = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200
    views = AuditEvent.objects.filter(event_type="audit.view", actor_id=user.pk)
    assert {v.target_type for v in views} == {"audit.event.list", "audit.event.detail"}
    assert views.get(target_type="audit.event.detail").target_id == str(event.pk)


def test_staff_without_auditor_group_is_refused(client):
    """Staff outside the Auditor group get no audit pages, even with the
    model permission."""
    from django.contrib.auth.models import Permission

    user = staff_client(client)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    response = client.get(reverse("admin:audit_auditevent_changelist"))
    assert response.status_code == 403
    index = client.get(reverse("admin:index"))
    assert b"Audit trail" not in index.content


def test_nobody_changes_or_deletes_events_in_the_admin(client):
    """Even a superuser gets no change form, delete page or delete action."""
    staff_client(client, superuser=True)
    event = audit_record(event_type="file.download")
    delete = client.post(
        reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    change = client.post(
        reverse("admin:audit_auditevent_change", args=[event.pk]),
        {"event_type": "forged"},
    )
    assert change.status_code == 403
    bulk = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert AuditEvent.objects.filter(pk=event.pk, event_type="file.download").exists()
    assert bulk.status_code in (200, 302)


def test_export_action_records_audit_export(client):
    user = staff_client(client, auditor=True)
    event = audit_record(event_type="file.download", actor_label="a@x.test")
    response = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_jsonl", "_selected_action": [event.pk]},
    )
    assert response.status_code == 200
    assert b'"actor_label":"a@x.test"' in response.content
    export = AuditEvent.objects.get(event_type="audit.export", actor_id=user.pk)
    assert export.details["count"] == 1


def test_auditor_signs_off_a_review_and_the_sign_off_is_audited(client, settings):
    """A review lists notable events; signing it off records who and why."""
    user = staff_client(client, auditor=True)
    audit_record(event_type="auth.login.failure", outcome="failure")
    audit_record(event_type="project.member.role", details={"to": "owner"})
    audit_record(event_type="file.download")
    review = review_create()
    assert review.notable_count == 2
    assert review.summary == {
        "auth.login.failure failure": 1,
        "project.member.role success": 1,
    }
    url = reverse("admin:audit_auditreview_change", args=[review.pk])
    page = client.get(url)
    link = re.search(rb'href="([^"]*notable=yes[^"]*)"', page.content)
    listing = client.get(link.group(1).decode().replace("&amp;", "&"))
    assert listing.status_code == 200
    shown = re.findall(rb'<td class="field-event_type">([^<]*)</td>', listing.content)
    assert sorted(shown) == [b"auth.login.failure", b"project.member.role"]
    response = client.post(url, {"comment": "Checked both; expected."})
    assert response.status_code == 302
    review.refresh_from_db()
    assert review.signed_off_label == user.email
    assert review.comment == "Checked both; expected."
    event = AuditEvent.objects.get(event_type="audit.review.signoff")
    assert event.actor_id == user.pk
    assert event.target_id == str(review.pk)
    again = client.post(url, {"comment": "again"})
    assert again.status_code == 403
    assert AuditReview.objects.get().comment == "Checked both; expected."


def test_review_sign_off_needs_a_comment(client):
    staff_client(client, auditor=True)
    review = review_create()
    url = reverse("admin:audit_auditreview_change", args=[review.pk])
    response = client.post(url, {"comment": "  "})
    assert response.status_code == 200
    assert b"A sign-off needs a comment." in response.content
    review.refresh_from_db()
    assert not review.signed_off


def test_review_page_shows_a_table_and_sign_off_says_what_it_did(client):
    """The summary reads as a table (type, outcome, count; most first) and the
    sign-off message names the period and the signer, not Django's generic
    "changed successfully"."""
    user = staff_client(client, auditor=True)
    for _ in range(3):
        audit_record(event_type="auth.login.failure", outcome="failure")
    audit_record(event_type="project.member.role", details={"to": "owner"})
    review = review_create()
    url = reverse("admin:audit_auditreview_change", args=[review.pk])
    page = client.get(url).content.decode()
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>(\d+)</td></tr>", page)
    assert rows == [
        ("auth.login.failure", "failure", "3"),
        ("project.member.role", "success", "1"),
    ]
    assert "{&quot;" not in page and '{"auth' not in page
    response = client.post(url, {"comment": "Looked at all four."}, follow=True)
    text = response.content.decode()
    assert f"signed off by {user.email}" in text
    assert f"{review.period_end:%d %b %Y}" in text
    assert "was changed successfully" not in text


def test_field_changes_sit_beside_the_audit_trail_under_their_own_name(client):
    """The admin index names django-auditlog's entries "Field changes" in the
    Audit section; no "Log entries" caption to confuse with the trail."""
    staff_client(client, auditor=True)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Field changes" in page
    assert "Log entries" not in page
    listing = client.get(reverse("admin:audit_fieldchange_changelist"))
    assert listing.status_code == 200


def test_a_period_holding_the_signers_own_events_needs_another_auditor_or_a_reason(
    client,
):
    """Audit views and exports are in the review; the auditor whose own views
    are in the period cannot sign it off silently: another auditor signs, or
    the signer states why, and the reason is kept and audited."""
    from django.test import Client

    signer = staff_client(client, auditor=True)
    event = audit_record(event_type="file.download")
    client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "export_jsonl", "_selected_action": [event.pk]},
    )
    review = review_create()
    # The detail view, the list view the action posts to, the export.
    assert review.summary == {"audit.view success": 2, "audit.export success": 1}
    url = reverse("admin:audit_auditreview_change", args=[review.pk])

    refused = client.post(url, {"comment": "Fine.", "own_events_reason": " "})
    assert refused.status_code == 200
    assert b"3 notable event(s) of your own" in refused.content
    review.refresh_from_db()
    assert not review.signed_off

    other_client = Client()
    other = staff_client(other_client, auditor=True)
    signed = other_client.post(url, {"comment": "Checked the views and export."})
    assert signed.status_code == 302
    review.refresh_from_db()
    assert review.signed_off_label == other.email
    assert review.own_events_reason == ""
    assert signer.pk != other.pk


def test_a_lone_auditor_signs_their_own_period_with_a_reason_on_record(client):
    signer = staff_client(client, auditor=True)
    audit_record(event_type="audit.export", actor=signer, details={"count": 3})
    review = review_create()
    url = reverse("admin:audit_auditreview_change", args=[review.pk])
    response = client.post(
        url,
        {"comment": "Export for the insurer.", "own_events_reason": "Sole auditor."},
    )
    assert response.status_code == 302
    review.refresh_from_db()
    assert review.own_events_reason == "Sole auditor."
    event = AuditEvent.objects.get(event_type="audit.review.signoff")
    assert event.details["own_events"] == 1
    assert event.details["own_events_reason"] == "Sole auditor."
