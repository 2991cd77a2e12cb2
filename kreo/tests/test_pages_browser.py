"""Every page a person can open, in Chromium: WCAG 2.1 AA by axe-core, phone
width without sideways scrolling, a skip link and a visible focus ring, in
the light and the dark colour scheme.

The staff side is checked the same way (axe-core, no sideways scrolling):
the admin index, every app's index, and for every registered model its
list, its add page where a superuser may add, and the change page of one
row, plus the admin's own extra pages that take an object.

The list of pages is built from the URL configuration, as the authorization
matrix is: each named URL of the site's pages is opened as a project owner or
as a visitor; whatever answers a page is checked, and a URL that answers
neither a page nor a refusal of GET must be listed in ``NOT_PAGES`` with the
reason, so a new page cannot go unchecked.
"""

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core import mail
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from accounts.models import SessionRecord
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.test_e2e import chromium
from audit import services as audit_services
from projects import invitations
from projects.models import Invitation, ProjectFile, Role
from projects.tests.factories import PNG, MembershipFactory, stored_file
from scripts.oidc_provider.fixtures import ensure_node_modules

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": 1280, "phone": 390}
SCHEMES = ("light", "dark")
NAMESPACES = ("accounts", "projects", "privacy")
# Named page URLs that answer no page to a GET without a one-time secret.
NOT_PAGES = {
    "home": "a redirect to the user's projects or to the sign-in page",
    "accounts:verify": "needs the token of a confirmation mail (test_signup)",
    "accounts:password-reset-confirm": "needs a reset token (test_password_reset)",
    "accounts:login-otp": "needs a half-finished sign-in (test_e2e opens it; "
    "test_passkeys_browser checks it with axe)",
    "accounts:captcha-challenge": "JSON for the CAPTCHA widget, not a page",
    "projects:file-download": "the file itself, not a page",
    "projects:file-preview": "the file itself, shown by the browser",
    "projects:file-thumbnail": "an image shown in the file list, not a page",
    "projects:invitation-accept": "needs the signed link of an invitation mail "
    "(added below from a mailed link, signed out and as another address)",
    "privacy:export-download": "the export archive itself, not a page",
}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
LONG_NAME = "Riverside Logistics Hub phase 2 structural steel and concrete takeoff"


def _named(resolver=None, prefix=""):
    """(name, pattern) of every named URL under the site's page namespaces."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in NAMESPACES:
                yield from _named(entry, f"{entry.namespace}:")
        elif isinstance(entry, URLPattern) and entry.name:
            if prefix or entry.name == "home":
                yield prefix + entry.name, entry


def _args(pattern, world):
    return {key: world[key] for key in pattern.pattern.converters}


@pytest.fixture
def world():
    """An owner with a long-named project, files, a colleague and a token."""
    owner = UserFactory(email="owner.with.a.rather.long.address@example.test")
    membership = MembershipFactory(role=Role.OWNER, user=owner)
    project = membership.project
    project.name = LONG_NAME
    project.save()
    colleague = MembershipFactory(project=project, role=Role.EDITOR)
    item = stored_file(project, name="ground-floor-general-arrangement-rev-C.pdf")
    stored_file(project, name="site photo.png", content=PNG, uploaded_by=owner)
    token_row, _ = AuthToken.objects.create(owner)
    invitation = Invitation.objects.create(
        project=project,
        email="invited.person.with.a.long.address@example.test",
        role=Role.VIEWER,
        invited_by=owner,
        expires_at=timezone.now() + timedelta(days=7),
    )
    # Its link, as mailed (the secret exists only in the mail).
    invitations.invitation_mail(
        invitation_id=invitation.pk, protocol="http", domain="testserver"
    )
    invitation_link = re.search(r"http://testserver(\S+)", mail.outbox[-1].body)[1]
    return {
        "owner": owner,
        "invitation_link": invitation_link,
        "project_id": project.pk,
        "file_id": item.pk,
        "membership_id": colleague.pk,
        "invitation_id": invitation.pk,
        "token_id": token_row.token_key,
    }


def _pages(world):
    """The path of every page, and whether it is a signed-in page."""
    owner = Client()
    owner.force_login(world["owner"])
    visitor = Client()
    world = {**world, "record_id": 0}
    pages, unexplained = {}, []
    for name, pattern in _named():
        if name in NOT_PAGES:
            continue
        path = reverse(name, kwargs=_args(pattern, world))
        answers = []
        for signed_in, client in ((True, owner), (False, visitor)):
            response = client.get(path)
            answers.append(response.status_code)
            if response.status_code == 200 and "text/html" in response["Content-Type"]:
                pages[name] = (path, signed_in)
                break
        else:
            if answers[0] != 405:  # a form's target, refused to GET
                unexplained.append(f"{name} {path} -> {answers}")
    assert unexplained == [], f"neither checked nor listed: {unexplained}"
    # The error page, in the layout of the site.
    pages["error 404"] = ("/projects/00000000-0000-0000-0000-000000000000/", True)
    # An invitation's link as its (signed-out) recipient sees it, and a link
    # that cannot be used (signed in as another address).
    pages["invitation"] = (world["invitation_link"], False)
    pages["invitation refused"] = (world["invitation_link"], True)
    return pages


def _sign_in(page, base, email):
    page.goto(base + reverse("accounts:login"))
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/projects/"))


def _check(page, width):
    """axe-core's violations, sideways overflow and keyboard basics of a page."""
    problems = []
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    for violation in result["violations"]:
        targets = [n["target"] for n in violation["nodes"]][:3]
        problems.append(f"axe {violation['id']}: {targets}")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    if overflow > width:
        wide = page.evaluate(
            "w => [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > w)"
            ".filter(e => !e.closest('.table-wrap'))"
            ".map(e => e.tagName + '.' + e.className).slice(-3)",
            width,
        )
        problems.append(f"{overflow} px wide at {width} px: {wide}")
    first = page.evaluate(
        "() => document.querySelector("
        "'a[href], button, input:not([type=hidden]), select, textarea').textContent"
    )
    if first.strip() != "Skip to content":
        problems.append(
            f"first focusable element is {first.strip()!r}, not the skip link"
        )
    page.locator(".skip-link").focus()
    ring = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [parseFloat(s.outlineWidth), s.outlineStyle]; }"
    )
    if ring[0] < 2 or ring[1] == "none":
        problems.append(f"focus ring {ring[0]} px {ring[1]}")
    return problems


def test_every_page_passes_axe_and_fits_a_phone(live_server, world):
    """Zero axe-core violations (WCAG 2.1 A and AA), no sideways scrolling at
    390 px, a skip link first and a focus ring of at least 2 px: on every page,
    at desktop and phone width, in light and dark mode."""
    ensure_node_modules()  # axe-core, pinned in package.json
    pages = _pages(world)
    assert {"projects:detail", "accounts:security", "accounts:login"} <= set(pages)
    email = world["owner"].email
    shots = Path(os.environ.get("KREO_SCREENSHOTS", settings.VAR_DIR / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    report, checked = {}, 0
    with chromium() as browser:
        for width_name, width in WIDTHS.items():
            for scheme in SCHEMES:
                contexts = {}
                for signed_in in (True, False):
                    context = browser.new_context(
                        viewport={"width": width, "height": 800},
                        color_scheme=scheme,
                        bypass_csp=True,  # to inject axe (the CSP has its own tests)
                    )
                    page = context.new_page()
                    if signed_in:
                        _sign_in(page, live_server.url, email)
                    contexts[signed_in] = page
                for name, (path, signed_in) in sorted(pages.items()):
                    page = contexts[signed_in]
                    page.goto(live_server.url + path)
                    if name in (
                        "projects:detail",
                        "projects:list",
                        "accounts:security",
                    ):
                        label = name.replace(":", "-")
                        page.screenshot(
                            path=str(shots / f"{label}-{width_name}-{scheme}.png"),
                            full_page=True,
                        )
                    problems = _check(page, width)
                    checked += 1
                    if problems:
                        report[f"{name} {width_name} {scheme}"] = problems
                for page in contexts.values():
                    page.context.close()
    assert report == {}, json.dumps(report, indent=1)
    assert checked == len(pages) * len(WIDTHS) * len(SCHEMES)
    assert SessionRecord.objects.filter(user=world["owner"]).exists()


def test_upload_checks_the_limit_first_and_shows_progress(live_server, world, settings):
    """A file over the limit is refused in the browser before any byte is sent
    (the form shows the limit); a file within it uploads with a progress bar
    and lands in the project's list."""
    settings.KREO_MAX_UPLOAD_BYTES = 200 * 1024
    detail = reverse("projects:detail", kwargs={"project_id": world["project_id"]})
    posts = []
    image = ProjectFile.objects.get(
        project_id=world["project_id"], name="site photo.png"
    )
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 800})
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else 0)
        _sign_in(page, live_server.url, world["owner"].email)
        page.goto(live_server.url + detail)
        assert "Up to 204800 bytes." in page.inner_text("#id_file_helptext")
        posts.clear()
        page.set_input_files(
            "input[type=file]",
            {
                "name": "huge.pdf",
                "mimeType": "application/pdf",
                "buffer": b"0" * 300_000,
            },
        )
        page.click("button:has-text('Upload')")
        assert "larger than the" in page.inner_text(".upload-error")
        assert posts == []
        body = b"%PDF-1.7\n" + b"%" * 150_000 + b"\n%%EOF\n"
        page.set_input_files(
            "input[type=file]",
            {"name": "section-A.pdf", "mimeType": "application/pdf", "buffer": body},
        )
        assert page.inner_text(".upload-error") == ""
        # A slow uplink (about 3 s for the file), so the bar is seen moving.
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": 50_000,
            },
        )
        page.click("button:has-text('Upload')")
        # (The page's CSP forbids string evaluation: poll the bar from here.)
        bar = page.locator(".upload-progress progress")
        for _ in range(200):
            value, top = bar.get_attribute("value"), bar.get_attribute("max")
            if value and top and 0 < float(value) < float(top):
                break
            page.wait_for_timeout(25)
        else:
            raise AssertionError("the progress bar never showed a partial upload")
        shots = Path(
            os.environ.get("KREO_SCREENSHOTS", settings.VAR_DIR / "screenshots")
        )
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "upload-progress-phone.png"), full_page=True)
        page.wait_for_selector("text=section-A.pdf", timeout=60_000)
        assert page.url.endswith(detail)
        assert len(posts) == 1
        assert "Uploaded “section-A.pdf”." in page.content()
        # The preview of an image, inline in the browser.
        preview = reverse(
            "projects:file-preview",
            kwargs={"project_id": world["project_id"], "file_id": image.pk},
        )
        page.set_viewport_size({"width": 1280, "height": 800})
        answer = page.goto(live_server.url + preview)
        assert answer.status == 200
        assert answer.headers["content-disposition"].startswith("inline")
        page.screenshot(path=str(shots / "file-preview-desktop.png"))


# Admin URLs with an object that answer no page to GET, with the reason.
ADMIN_NOT_PAGES = {
    "backups_backupset_backup_now": "a POST that starts a backup",
    "projects_erasurecertificate_download": "the certificate as JSON",
    "otp_totp_totpdevice_qrcode": "an SVG image",
    "otp_totp_totpdevice_config": "refused (403): the admin shows no TOTP "
    "secret (OTP_ADMIN_HIDE_SENSITIVE_DATA)",
}
# Nodes of Django's own script-built widgets that axe flags, with the reason
# (rule id, a piece of the node's selector). Everything else, including
# Django's server-rendered markup, is fixed (templates/admin/,
# static/css/admin.css, static/js/admin-a11y.js).
ADMIN_AXE_SKIPS = {
    (
        "aria-prohibited-attr",
        ".help-tooltip.search-label-icon",
    ): "SelectFilter2.js (filter_horizontal) builds a span with aria-label and "
    "no role beside a label that already names the search box; its inputs "
    "are named",
    (
        "aria-input-field-name",
        "select2",
    ): "the select2 copy vendored in django.contrib.admin (autocomplete "
    "fields) builds a combobox span named by a hidden container; the real "
    "select behind it is labelled",
}


def _admin_pages(staff) -> dict[str, str]:
    """Name -> path of every admin page a superuser reaches, from the registry."""
    request = RequestFactory().get("/admin/")
    request.user = staff
    pages = {"admin index": reverse("admin:index")}
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        info = f"{opts.app_label}_{opts.model_name}"
        pages[f"app {opts.app_label}"] = reverse(
            "admin:app_list", kwargs={"app_label": opts.app_label}
        )
        pages[f"{info} list"] = reverse(f"admin:{info}_changelist")
        if model_admin.has_add_permission(request):
            pages[f"{info} add"] = reverse(f"admin:{info}_add")
        row = model_admin.get_queryset(request).order_by("pk").first()
        if row is None:
            continue
        pages[f"{info} change"] = reverse(f"admin:{info}_change", args=[row.pk])
        for url in model_admin.get_urls():
            name = getattr(url, "name", None) or ""
            own = name.startswith(info) and not name.endswith(
                ("_changelist", "_add", "_change", "_delete", "_history")
            )
            if own and name not in ADMIN_NOT_PAGES and url.pattern.converters:
                pages[f"{name}"] = reverse(f"admin:{name}", args=[row.pk])
    return pages


@pytest.fixture
def staff_world(world):
    """A superuser with an authenticator app, and a row in every admin list
    the world does not fill itself (an audit review, a group)."""
    from django.contrib.auth.models import Group

    staff = UserFactory(is_staff=True, is_superuser=True, email="ops@example.test")
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    Group.objects.get_or_create(name="Auditor")
    audit_services.review_create(actor_label="test")
    return {"staff": staff, "device": device, **world}


def _admin_sign_in(page, base, email, code):
    page.goto(base + reverse("accounts:login"))
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.fill("input[name=token]", code)
    page.click("button:has-text('Verify')")
    page.wait_for_url(re.compile(r"/projects/"))
    page.goto(base + reverse("admin:index"))
    assert page.title().endswith("admin"), page.title()


def _admin_check(page, width):
    """axe-core's violations (less the written skips) and sideways overflow."""
    problems = []
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})",
        AXE_TAGS,
    )
    for violation in result["violations"]:
        skips = [piece for rule, piece in ADMIN_AXE_SKIPS if rule == violation["id"]]
        targets = [
            n["target"]
            for n in violation["nodes"]
            if not any(piece in str(n["target"]) for piece in skips)
        ]
        if targets:
            problems.append(f"axe {violation['id']}: {targets[:3]}")
    overflow = page.evaluate("document.documentElement.scrollWidth")
    if overflow > width:
        wide = page.evaluate(
            "w => [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > w)"
            ".filter(e => !e.closest('.results'))"
            ".map(e => e.tagName + '.' + e.className).slice(-3)",
            width,
        )
        problems.append(f"{overflow} px wide at {width} px: {wide}")
    return problems


@pytest.mark.timeout(1200)
def test_every_admin_page_passes_axe(live_server, staff_world):
    """Zero axe-core violations and no sideways scrolling on every admin page
    a staff member reaches (index, app indexes, each model's list, add and
    one change page, the audit review), at desktop and phone width, light
    and dark; signed in through the real password and TOTP steps."""
    ensure_node_modules()
    staff, device = staff_world["staff"], staff_world["device"]
    pages = _admin_pages(staff)
    assert {
        "admin index",
        "audit_auditreview list",
        "audit_auditreview change",
        "audit_auditevent change",
        "projects_invitation list",
        "projects_invitation change",
    } <= set(pages), sorted(pages)
    code = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=6):06d}"
    report, checked = {}, 0
    with chromium() as browser:
        first = browser.new_context(bypass_csp=True)
        _admin_sign_in(first.new_page(), live_server.url, staff.email, code)
        state = first.storage_state()
        first.close()
        for width_name, width in WIDTHS.items():
            for scheme in SCHEMES:
                context = browser.new_context(
                    viewport={"width": width, "height": 800},
                    color_scheme=scheme,
                    bypass_csp=True,
                    storage_state=state,
                )
                page = context.new_page()
                for name, path in sorted(pages.items()):
                    response = page.goto(live_server.url + path)
                    if response.status != 200:
                        report[f"{name} {width_name} {scheme}"] = [
                            f"{path} answered {response.status}"
                        ]
                        continue
                    problems = _admin_check(page, width)
                    checked += 1
                    if problems:
                        report[f"{name} {width_name} {scheme}"] = problems
                context.close()
    assert report == {}, json.dumps(report, indent=1)
    assert checked == len(pages) * len(WIDTHS) * len(SCHEMES)
