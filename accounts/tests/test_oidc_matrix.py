"""Who may open which URL, for global roles from Keycloak and project roles.

Built from the URL configuration: every named URL of the site (pages, API,
admin, audit admin, accounts, SSO) has an expected answer for each actor; a
URL added without one fails ``test_every_url_has_an_entry``. Actors sign in
through the real OpenID Provider (roles as Keycloak claims, MFA via amr for
staff); the requests go over HTTP to the live server, redirects not followed.

Cells: a status code, or where a redirect leads: "login" (our sign-in page),
"admin-login", "idp" (the OpenID Provider), or "302:<path>".
State-changing POSTs per project role are exercised in
projects/tests/test_authz.py; here every URL is asked with GET.
"""

import os
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from django.apps import apps
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.tests.factories import UserFactory
from projects.models import Role
from projects.permissions import ADMIN_GROUP_PERMISSIONS
from projects.tests.factories import MembershipFactory, ProjectFactory, stored_file
from scripts.oidc_provider import fixtures as op
from scripts.oidc_provider.fixtures import idp_login

pytestmark = pytest.mark.django_db(transaction=True)
oidc_provider, sso = op.oidc_provider, op.sso

ANON, NOROLE, USER, AUDITOR, ADMIN = (
    "anonymous",
    "sso-no-role",
    "user",
    "auditor",
    "admin",
)
VIEWER, EDITOR, OWNER = Role.VIEWER.value, Role.EDITOR.value, Role.OWNER.value
OTHER = "other-project"
ACTORS = [ANON, NOROLE, USER, AUDITOR, ADMIN, VIEWER, EDITOR, OWNER, OTHER]
SIGNED_OUT = {ANON, NOROLE}
MEMBERS = [VIEWER, EDITOR, OWNER]
ADMIN_NS = "otpadmin"
AUDIT_APPS = {"audit", "auditlog"}


def everyone(cell):
    return dict.fromkeys(ACTORS, cell)


def signed_in(out_cell, in_cell):
    return {a: out_cell if a in SIGNED_OUT else in_cell for a in ACTORS}


def project(ok_roles, *, out="login", ok=200):
    cells = {a: out if a in SIGNED_OUT else 404 for a in ACTORS}
    cells.update({r: ok if r in ok_roles else 403 for r in MEMBERS})
    return cells


def api(ok_roles):
    return project(ok_roles, out=401)


PAGES = {
    "home": signed_in("login", "302:/projects/"),
    "healthz": everyone(200),
    "readyz": everyone(200),
    "metrics": everyone(401),
    "api-schema": signed_in(401, 200),
    "accounts:login": signed_in(200, "302:/projects/"),
    "accounts:login-otp": everyone("login"),
    "accounts:logout": everyone(405),
    "accounts:signup": signed_in(200, "302:/projects/"),
    "accounts:signup-done": everyone(200),
    "accounts:captcha-challenge": everyone(200),  # ALTCHA: a signed challenge
    "accounts:resend": everyone(200),
    "accounts:verify": everyone(400),  # a made-up link: "not valid", offer a new one
    "accounts:password-reset": everyone(200),
    "accounts:password-reset-done": everyone(200),
    "accounts:password-reset-confirm": everyone(200),
    "accounts:password-change": signed_in("login", 200),
    "accounts:security": signed_in("login", 200),
    "accounts:session-revoke": signed_in("login", 405),
    "accounts:sessions-revoke-others": signed_in("login", 405),
    "accounts:api-token-revoke": signed_in("login", 405),
    "accounts:otp-enrol": signed_in("login", 200),
    "accounts:otp-disable": signed_in("login", 405),
    "accounts:otp-recovery": signed_in("login", 405),
    "accounts:time-zone": signed_in("login", 405),
    # Passkeys: JSON endpoints taking POST only.
    "accounts:passkey-login-options": everyone(405),
    "accounts:passkey-login": everyone(405),
    "accounts:passkey-register-options": signed_in("login", 405),
    "accounts:passkey-add": signed_in("login", 405),
    "accounts:passkey-remove": signed_in("login", 405),
    "oidc_authentication_init": everyone("idp"),
    "oidc_authentication_callback": everyone(400),
    "oidc_logout": everyone(405),
    "oidc_link": signed_in("login", 405),
    "oidc_reauth": signed_in("login", 405),
    "privacy:export": signed_in("login", 200),
    "privacy:export-download": signed_in("login", 404),  # unknown link
    "privacy:account-delete": signed_in("login", 200),
    "projects:list": signed_in("login", 200),
    "projects:create": signed_in("login", 200),
    "projects:detail": project(MEMBERS),
    "projects:edit": project([OWNER]),
    "projects:delete": project([OWNER]),
    "projects:file-upload": signed_in("login", 405),
    "projects:file-download": project(MEMBERS),
    "projects:file-preview": project(MEMBERS),
    # The world's file is a PDF, with no thumbnail: members get 404 as well
    # (projects/tests/test_authz.py checks an image that has one).
    "projects:file-thumbnail": project(MEMBERS, ok=404),
    "projects:file-rename": project([EDITOR, OWNER]),
    "projects:file-delete": project([OWNER]),
    "projects:members": project([OWNER]),
    "projects:member-role": signed_in("login", 405),
    "projects:member-remove": signed_in("login", 405),
    "projects:invitation-revoke": signed_in("login", 405),
    # A made-up link: "not valid" for everyone, nothing joined (audited).
    "projects:invitation-accept": everyone(400),
    "api:token-create": signed_in(403, 405),
    "api:token-revoke": signed_in(401, 405),
    "api:project-list": signed_in(401, 200),
    "api:project-detail": api(MEMBERS),
    "api:file-list": api(MEMBERS),
    "api:file-detail": api(MEMBERS),
    "api:file-download": api(MEMBERS),
    "api:member-list": api(MEMBERS),
    "api:member-detail": api(MEMBERS),
    "api:invitation-list": api([OWNER]),
    "api:invitation-detail": signed_in(401, 405),  # DELETE only
    # The public status page: the same for everyone, signed in or not.
    "status:index": everyone(200),
    "status:history": everyone(200),
    "status:incident": everyone(404),  # an unknown incident
    "status:feed-atom": everyone(200),
    "status:feed-rss": everyone(200),
    "status:api-summary": everyone(200),
    "status:api-status": everyone(200),
    "status:api-components": everyone(200),
    "status:api-incidents": everyone(200),
    "status:api-incidents-unresolved": everyone(200),
    "status:api-scheduled-maintenances": everyone(200),
    "status:subscribe": everyone(200),
    "status:subscribe-confirm": everyone(400),  # a made-up link
    "status:unsubscribe": everyone(400),  # a made-up link
}

# Admin pages that are not a model's: what signed-in staff get.
ADMIN_SITE_PAGES = {
    "index": 200,
    "login": 403,  # already signed in: the admin's login page refuses
    "logout": 405,
    "password_change": 200,
    "password_change_done": 200,
    "jsi18n": 200,
    "autocomplete": 403,
    "view_on_site": 404,
}
READ = ("changelist", "change", "history")
# The compliance cockpit beside its read-only runs and results: staff of the
# Admin and Auditor groups read them, nobody edits (compliance/admin.py).
COMPLIANCE_PAGES = {
    "compliance_cockpit": 200,
    "compliance_control": 200,
    "compliance_checkrun_run_now": 405,  # POST only
    "compliance_pack": 200,  # the evidence pack's form
}
# "refused": 403, or the admin's not-found redirect (it may look the object
# up before the permission), never the page. "any": the model admin's own
# rules decide (its app's tests), only never a server error.
REFUSED = "refused"
ANY = "any"
REFUSALS = {403, 404, 405, "302:/admin/"}


def admin_staff_cell(actor, name) -> object:
    """The admin policy: auditors read the audit trail only; admins manage
    what ADMIN_GROUP_PERMISSIONS grants and never see the audit trail; users
    are only viewed, so no admin can raise anyone's rights."""
    short = name.split(":", 1)[1]
    if short in ADMIN_SITE_PAGES:
        return ADMIN_SITE_PAGES[short]
    if short == "backups_backupset_backup_now":
        return "302:/admin/backups/backupset/"  # GET only redirects back
    if short == "app_list":  # asked for the audit app
        return 200 if actor == AUDITOR else 404
    if short in COMPLIANCE_PAGES:
        return COMPLIANCE_PAGES[short]
    model, action = _admin_model(short)
    app = model._meta.app_label
    if app == "compliance":
        return 200 if action in READ else REFUSED
    if app in AUDIT_APPS:
        if actor == ADMIN:
            return REFUSED
        return 200 if action in READ else REFUSED
    if actor == AUDITOR:
        return REFUSED
    granted = ADMIN_GROUP_PERMISSIONS.get(app, ())
    if granted == "*":
        return 200 if action == "changelist" else ANY
    if "view" in granted and action in READ:
        return 200
    return 403 if granted else REFUSED


def _admin_model(short: str):
    if short == "auth_user_password_change":
        # The user admin's password form keeps Django's own URL name.
        return User, "password_change"
    for model in apps.get_models():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        if short.startswith(prefix):
            return model, short[len(prefix) :]
    raise LookupError(short)


def admin_cells(name) -> dict:
    short = name.split(":", 1)[1]
    signed_out = "login" if short == "login" else "admin-login"
    if short == "logout":
        signed_out = "302:/admin/"
    cells = {a: signed_out for a in SIGNED_OUT}
    # Signed in but not staff: the admin sends them to its login page, which
    # refuses them.
    not_staff = "admin-login" if short not in ("login", "logout") else 403
    if short == "logout":
        not_staff = "302:/admin/"
    cells.update({a: not_staff for a in (USER, VIEWER, EDITOR, OWNER, OTHER)})
    for actor in (AUDITOR, ADMIN):
        cells[actor] = admin_staff_cell(actor, name)
    return cells


def _names(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            namespace = entry.namespace
            yield from _names(entry, f"{prefix}{namespace}:" if namespace else prefix)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{prefix}{entry.name}", entry


def url_names() -> dict:
    return dict(_names(get_resolver()))


def expected(name) -> dict:
    if name.startswith(f"{ADMIN_NS}:"):
        return admin_cells(name)
    return PAGES[name]


def test_every_url_has_an_entry():
    """A URL added without an expected answer per actor fails the suite."""
    missing = []
    for name in url_names():
        try:
            cells = expected(name)
        except (KeyError, LookupError):
            missing.append(name)
            continue
        assert set(cells) == set(ACTORS), name
    assert missing == []
    assert set(PAGES) <= set(url_names()), "entries for URLs that do not exist"


# The world -----------------------------------------------------------------


def _sso_session(provider, live_server, login, roles, amr=("pwd",)):
    provider.account(
        f"sub-{login}",
        login=login,
        email=f"{login}@example.com",
        email_verified=True,
        realm_roles=list(roles),
        amr=list(amr),
    )
    session = requests.Session()
    session.get(idp_login(session, live_server, login))
    return session


@pytest.fixture
def world(sso, live_server, settings):
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 3600
    staff_amr = ("pwd", "otp")
    sessions = {
        ANON: requests.Session(),
        NOROLE: _sso_session(sso, live_server, "nobody", []),
        USER: _sso_session(sso, live_server, "uma", ["kreo-user"]),
        AUDITOR: _sso_session(sso, live_server, "aud", ["kreo-auditor"], staff_amr),
        ADMIN: _sso_session(sso, live_server, "adm", ["kreo-admin"], staff_amr),
    }
    for role in MEMBERS + [OTHER]:
        sessions[role] = _sso_session(sso, live_server, role, ["kreo-user"])
    users = {u.email.split("@")[0]: u for u in User.objects.all()}
    target = ProjectFactory()
    memberships = {
        role: MembershipFactory(project=target, user=users[role], role=role)
        for role in MEMBERS
    }
    MembershipFactory(user=users[OTHER], role=OWNER)
    # A user's authenticator, so its admin pages have an object. (With none,
    # django-otp's config/qrcode admin views answer an unknown id with a 500.)
    TOTPDevice.objects.create(user=UserFactory(), name="phone", confirmed=True)
    return {
        "sessions": sessions,
        "project": target,
        "file": stored_file(target, uploaded_by=users[EDITOR]),
        "member": memberships[VIEWER],
        "users": users,
        "no_row": set(),
    }


def _kwargs(name, pattern, w) -> dict:
    kwargs = {}
    for key in pattern.pattern.converters:
        if key == "project_id":
            kwargs[key] = w["project"].pk
        elif key == "file_id":
            kwargs[key] = w["file"].pk
        elif key == "membership_id":
            kwargs[key] = w["member"].pk
        elif key == "invitation_id":
            kwargs[key] = 1
        elif key in ("record_id", "content_type_id"):
            kwargs[key] = 1
        elif key == "uidb64":
            kwargs[key] = "MQ"
        elif key == "export_id":
            kwargs[key] = uuid.UUID(int=1)
        elif key in ("token",):
            kwargs[key] = "not-a-token"
        elif key == "token_id":
            kwargs[key] = "0" * 16
        elif key == "page":
            kwargs[key] = 1
        elif key == "public_id":
            kwargs[key] = "nosuch"
        elif key == "control_id":
            kwargs[key] = "backup-age"
        elif key == "app_label":
            kwargs[key] = "projects"
        elif key in ("object_id", "id", "pk", "certificate_id"):
            kwargs[key] = _admin_object(name, w)
    if "(?P<app_label>" in str(pattern.pattern):
        kwargs["app_label"] = "audit"
    return kwargs


def _admin_object(name, w):
    short = name.split(":", 1)[1]
    if short == "view_on_site":
        return w["project"].pk
    model, _ = _admin_model(short)
    row = model._default_manager.order_by("pk").first()
    if row is not None:
        return row.pk
    w["no_row"].add(name)
    return uuid.UUID(int=0) if model._meta.pk.get_internal_type() == "UUIDField" else 0


def _outcome(response, provider_url) -> object:
    if response.status_code in (301, 302, 303):
        location = response.headers["Location"]
        if location.startswith(provider_url):
            return "idp"
        path = urlsplit(location).path
        if path == "/accounts/login/":
            return "login"
        if path == "/admin/login/":
            return "admin-login"
        return f"302:{path}"
    return response.status_code


def _matches(got, cell) -> bool:
    if cell == REFUSED:
        return got in REFUSALS
    if cell == ANY:
        return not (isinstance(got, int) and got >= 500)
    return got == cell


def test_authorization_matrix(world, live_server, sso):
    """Every URL, every actor: the answer the policy above says."""
    # The SSO user without a role was refused: no account, no session.
    assert not User.objects.filter(email="nobody@example.com").exists()
    wrong, table, paths = [], [], {}
    # Every URL is built (database reads included) before the first request,
    # so no query of this thread meets the live server's writes (SQLite).
    for name, pattern in sorted(url_names().items()):
        try:
            paths[name] = reverse(name, kwargs=_kwargs(name, pattern, world))
        except Exception as exc:  # noqa: BLE001 - reported as a row
            wrong.append(f"{name}: cannot build URL ({exc})")
    for name, path in paths.items():
        cells = expected(name)
        if name in world["no_row"]:
            # No such object in the database: where the page would open,
            # the admin's not-found redirect comes instead.
            cells = {a: "302:/admin/" if c == 200 else c for a, c in cells.items()}
        row = []
        for actor in ACTORS:
            response = world["sessions"][actor].get(
                f"{live_server.url}{path}", allow_redirects=False, timeout=30
            )
            got = _outcome(response, sso.url)
            if got == 500 and connection.vendor == "sqlite":
                # The live server's threads share one in-memory SQLite
                # connection and now and then trip over each other; a real
                # server error answers the same way twice.
                response = world["sessions"][actor].get(
                    f"{live_server.url}{path}", allow_redirects=False, timeout=30
                )
                got = _outcome(response, sso.url)
            row.append(str(got))
            if not _matches(got, cells[actor]):
                wrong.append(
                    f"{name} {path} as {actor}: {got}, expected {cells[actor]}"
                )
        table.append(f"| {name} | " + " | ".join(row) + " |")
    out = os.environ.get("KREO_MATRIX_OUT")
    if out:
        with open(out, "w") as handle:
            handle.write("| URL name | " + " | ".join(ACTORS) + " |\n")
            handle.write("|---" * (len(ACTORS) + 1) + "|\n")
            handle.write("\n".join(table) + "\n")
    assert wrong == [], "\n".join(wrong)
