"""Request limits on every endpoint, built from the URL configuration.

Every URL pattern must have a scope in ``kreo.limits.SCOPES`` or a written
reason in ``kreo.limits.EXEMPT``: a URL added without one fails
``test_every_url_has_a_limit_or_a_written_exemption``. Then one attack per
kind of scope: past the rate the answer is 429 with ``Retry-After``; a forged
``X-Forwarded-For`` does not start a new count; two clients (two browsers,
or two addresses of one signed-in user) share one count on the shared cache.
Rates are lowered per test; periods are hours, so no window ends mid-test.
"""

import time

import pytest
from django.contrib import admin
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.tests.factories import UserFactory
from audit.bounded import SUPPRESSED
from audit.models import AuditEvent
from kreo import limits
from kreo.counters import window
from kreo.tests.apiworld import make_world
from kreo.throttles import ScopeThrottle, UserThrottle
from projects.tests.factories import PDF

pytestmark = pytest.mark.django_db

DRF_SCOPES = {limits.API, limits.UPLOAD, limits.DOWNLOAD, limits.TOKEN}


def _patterns(patterns=None, namespaces=()):
    """(view name as ``request.resolver_match.view_name`` has it, pattern)."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found = (pattern.namespace,) if pattern.namespace else ()
            yield from _patterns(pattern.url_patterns, namespaces + found)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or pattern.lookup_str
            yield ":".join((*namespaces, name)), pattern


def _entry(view_name: str):
    if view_name in limits.SCOPES:
        return limits.SCOPES[view_name]
    return limits.SCOPES.get(view_name.split(":", 1)[0] + ":*")


def _scopes(entry) -> set[str]:
    return set(entry.values()) if isinstance(entry, dict) else {entry}


def _rates(settings, **rates):
    settings.KREO_REQUEST_RATES = {
        **settings.KREO_REQUEST_RATES,
        **{name.replace("_", "-"): rate for name, rate in rates.items()},
    }


def _assert_limited(response, *, json=False):
    assert response.status_code == 429, response.status_code
    wait = int(response["Retry-After"])
    assert 0 < wait <= 3600
    if json:
        # The pages' JSON (kreo.limits) or DRF's own (a throttle's wait).
        assert response["Content-Type"] == "application/json"
        assert isinstance(response.json()["detail"], str)
    else:
        page = response.content.decode()
        assert limits.TOO_MANY in page
        assert 'class="topbar"' in page  # the site's layout, not a bare text


# The URL-built test --------------------------------------------------------


def test_the_walk_reaches_every_kind_of_url():
    """The walk sees probes, sign-in, OIDC, pages, API, status and the admin."""
    names = {name for name, _ in _patterns()}
    assert {"healthz", "accounts:login", "oidc_authentication_callback"} <= names
    assert {"projects:file-download", "api:file-list", "status:index"} <= names
    assert any(name.startswith(f"{admin.site.name}:") for name in names)


def test_every_url_has_a_limit_or_a_written_exemption(settings):
    """Each URL pattern maps to a limit scope, or is exempt with a reason."""
    known = {limits.API, *settings.KREO_REQUEST_RATES}
    missing, bad = [], []
    for name, _ in _patterns():
        if name in limits.EXEMPT:
            if len(limits.EXEMPT[name]) < 40:
                bad.append(f"{name}: the exemption needs a written reason")
            continue
        entry = _entry(name)
        if entry is None:
            missing.append(name)
        elif not _scopes(entry) <= known:
            bad.append(f"{name}: unknown scope in {entry!r}")
    assert not missing, "URLs with no limit: " + ", ".join(missing)
    assert not bad, "\n".join(bad)


def test_the_tables_name_only_routed_urls():
    """No stale rows: every name in the tables is routed (wildcards aside)."""
    names = {name for name, _ in _patterns()}
    stale = [
        name
        for name in [*limits.SCOPES, *limits.EXEMPT]
        if not name.endswith(":*") and name not in names
    ]
    assert not stale, stale


def test_api_views_keep_their_throttles_and_pages_have_no_api_scope():
    """A DRF view that dropped the throttles, or a page scoped as the API
    (which only the throttles count), would be a URL with no limit."""
    wrong = []
    for name, pattern in _patterns():
        entry = _entry(name)
        if entry is None:
            continue
        cls = getattr(pattern.callback, "cls", None)
        if cls is not None and issubclass(cls, APIView):
            throttles = set(cls.throttle_classes)
            if not {UserThrottle, ScopeThrottle} <= throttles:
                wrong.append(f"{name}: throttles {throttles}")
            if not _scopes(entry) <= DRF_SCOPES:
                wrong.append(f"{name}: {entry!r} is not counted by a throttle")
        elif limits.API in _scopes(entry):
            wrong.append(f"{name}: a page scoped as the API")
    assert not wrong, "\n".join(wrong)
    assert set(api_settings.DEFAULT_THROTTLE_CLASSES) == {UserThrottle, ScopeThrottle}


def test_an_unknown_url_name_is_limited_as_a_page():
    """Fail closed at run time: a name in neither table counts as a page."""
    assert limits.scope_for("no-such:view", "GET") == limits.PAGE
    assert limits.scope_for("healthz", "GET") is None


# Behaviour, one attack per kind of scope -----------------------------------


def test_pages_past_the_rate_get_429_whatever_x_forwarded_for_says(settings):
    """An anonymous address is refused at the rate; forged X-Forwarded-For
    values, a second client and a JSON Accept header change nothing."""
    _rates(settings, page="3/hour")
    client = Client()
    for _ in range(3):
        assert client.get("/accounts/login/").status_code == 200
    _assert_limited(client.get("/accounts/login/", HTTP_X_FORWARDED_FOR="203.0.113.9"))
    other = Client()  # a new browser on the same address
    _assert_limited(other.get("/status/", HTTP_X_FORWARDED_FOR="198.51.100.1"))
    _assert_limited(other.get("/status/", HTTP_ACCEPT="application/json"), json=True)
    # Another address has its own count.
    assert Client(REMOTE_ADDR="192.0.2.10").get("/accounts/login/").status_code == 200


def test_behind_a_proxy_only_the_proxys_entry_counts(settings):
    """With one trusted proxy, the entries a client prepends are ignored."""
    settings.KREO_TRUSTED_PROXY_COUNT = 1
    _rates(settings, page="2/hour")
    client = Client()
    for i in range(2):
        forwarded = f"10.9.9.{i}, 198.51.100.7"
        assert client.get("/status/", HTTP_X_FORWARDED_FOR=forwarded).status_code == 200
    _assert_limited(
        client.get("/status/", HTTP_X_FORWARDED_FOR="1.1.1.1, 198.51.100.7")
    )
    fresh = client.get("/status/", HTTP_X_FORWARDED_FOR="198.51.100.8")
    assert fresh.status_code == 200


def test_a_signed_in_user_is_counted_from_every_address(settings):
    """Two clients of one user on two addresses share a count; others don't."""
    _rates(settings, page="3/hour")
    user = UserFactory()
    first, second = Client(REMOTE_ADDR="192.0.2.1"), Client(REMOTE_ADDR="192.0.2.2")
    first.force_login(user)
    second.force_login(user)
    for client in (first, second, first):
        assert client.get("/accounts/security/").status_code == 200
    _assert_limited(second.get("/accounts/security/"))
    stranger = Client(REMOTE_ADDR="192.0.2.2")
    stranger.force_login(UserFactory())
    assert stranger.get("/accounts/security/").status_code == 200


def _download_urls(world):
    kwargs = {"project_id": world.project.pk, "file_id": world.file.pk}
    return (
        reverse("projects:file-download", kwargs=kwargs),
        reverse("api:file-download", kwargs=kwargs),
    )


def _fetch(client, url):
    response = client.get(url)
    if response.streaming:
        b"".join(response.streaming_content)
    return response


def test_downloads_are_one_count_for_pages_and_api(settings):
    """The download count is per user across the pages and the API."""
    _rates(settings, download="2/hour")
    world = make_world()
    page_url, api_url = _download_urls(world)
    client = world.client()
    assert _fetch(client, page_url).status_code == 200
    assert _fetch(client, api_url).status_code == 200
    _assert_limited(_fetch(client, page_url))
    _assert_limited(_fetch(client, api_url), json=True)
    # A page that is no download is still served.
    assert client.get(f"/projects/{world.project.pk}/").status_code == 200


def test_downloads_stop_at_the_byte_budget(settings):
    """Bytes sent count per user per hour: past the budget, 429."""
    world = make_world()
    _rates(settings, download="100/hour", download_bytes=f"{world.file.size + 1}/hour")
    page_url, api_url = _download_urls(world)
    client = world.client()
    assert _fetch(client, page_url).status_code == 200
    # HEAD sends no bytes and is counted as a request only.
    assert client.head(api_url).status_code == 200
    assert _fetch(client, api_url).status_code == 200
    _assert_limited(_fetch(client, page_url))


def test_uploads_are_limited_on_the_api_and_the_pages(settings):
    """One upload budget per user, whichever way the file comes."""
    _rates(settings, upload="1/hour")
    world = make_world()
    client = world.client()
    api_url = reverse("api:file-list", kwargs={"project_id": world.project.pk})
    page_url = reverse("projects:file-upload", kwargs={"project_id": world.project.pk})

    def upload():
        return {"file": SimpleUploadedFile("new.pdf", PDF, "application/pdf")}

    assert client.post(api_url, upload()).status_code == 201
    _assert_limited(client.post(api_url, upload()), json=True)
    _assert_limited(client.post(page_url, upload()))
    # Listing files is not an upload.
    assert client.get(api_url).status_code == 200


def test_token_creation_is_limited(settings):
    """A signed-in user cannot mint tokens past the rate."""
    _rates(settings, token="2/hour")
    client = Client()
    client.force_login(UserFactory())
    url = reverse("api:token-create")
    assert client.post(url).status_code == 201
    assert client.post(url).status_code == 201
    _assert_limited(client.post(url), json=True)


def test_api_calls_per_token_user(settings):
    """The per-user API rate holds for a token from any address."""
    settings.KREO_API_RATE = "2/hour"
    world = make_world()
    header = {"HTTP_AUTHORIZATION": f"Token {world.token}"}
    assert (
        Client(REMOTE_ADDR="192.0.2.1", **header).get("/api/projects/").status_code
        == 200
    )
    assert (
        Client(REMOTE_ADDR="192.0.2.2", **header).get("/api/projects/").status_code
        == 200
    )
    refused = Client(REMOTE_ADDR="192.0.2.3", **header).get("/api/projects/")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0


def test_anonymous_api_calls_per_address(settings):
    """Anonymous and bad-token calls, refused 401 before DRF's throttles,
    are still counted per address; a forged X-Forwarded-For changes nothing."""
    _rates(settings, api_anon="3/hour")
    client = Client()
    assert client.get("/api/projects/").status_code == 401
    bad = {"HTTP_AUTHORIZATION": "Token " + "0" * 64}
    assert client.get("/api/projects/", **bad).status_code == 401
    assert client.post("/api/auth/token/").status_code == 403
    refused = client.get("/api/projects/", HTTP_X_FORWARDED_FOR="203.0.113.5")
    _assert_limited(refused, json=True)
    _assert_limited(Client().get("/api/schema/", **bad), json=True)


def test_oidc_is_limited_per_address(settings):
    """/oidc/* counts per address whatever the provider answers."""
    _rates(settings, oidc="2/hour")
    client = Client(raise_request_exception=False)
    for path in ("/oidc/authenticate/", "/oidc/callback/"):
        assert client.get(path).status_code != 429
    _assert_limited(client.get("/oidc/authenticate/", HTTP_X_FORWARDED_FOR="10.0.0.1"))


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/accounts/password/change/", {"old_password": "wrong-guess-1"}),
        (
            "/privacy/delete-account/",
            {"password": "wrong-guess-1", "confirm": "DELETE"},
        ),
    ],
    ids=["password-change", "delete-account-check"],
)
def test_password_checks_are_limited_per_user(settings, path, data):
    """Guessing the password through a signed-in session stops at the rate;
    the form itself (GET) stays a page view."""
    _rates(settings, password="2/hour", account_delete="2/hour")
    user = UserFactory()
    client = Client()
    client.force_login(user)
    for _ in range(2):
        assert client.post(path, data).status_code in (200, 400)
    _assert_limited(client.post(path, data))
    # From another address too: it is the user that is counted.
    other = Client(REMOTE_ADDR="192.0.2.77")
    other.force_login(user)
    _assert_limited(other.post(path, data))
    assert client.get(path).status_code == 200


def test_limits_off_counts_nothing(settings):
    """KREO_LIMITS_ENABLED=false (the bench's baseline) switches them off."""
    settings.KREO_LIMITS_ENABLED = False
    settings.KREO_API_RATE = "1/hour"
    _rates(settings, page="1/hour")
    world = make_world()
    client = world.client()
    for _ in range(3):
        assert client.get("/accounts/security/").status_code == 200
        assert client.get("/api/projects/").status_code == 200


# Audit writes bounded ------------------------------------------------------


def _fresh_minute():
    """Wait for a new minute when this one is nearly over (the bound is per
    minute: a flood across the boundary is two floods)."""
    _, left = window(60)
    if left < 20:
        time.sleep(left + 0.1)


def test_a_404_flood_writes_at_most_n_plus_one_rows(settings):
    """300 anonymous 404s from one address: N request events, then one
    summary event, and nothing more in that minute; another address is
    still recorded."""
    settings.AUDIT_FLOOD_PER_MINUTE = 10
    _fresh_minute()
    before = AuditEvent.objects.count()
    client = Client()
    for i in range(300):
        assert client.get(f"/no-such-page-{i}/").status_code == 404
    rows = AuditEvent.objects.order_by("pk")[before:]
    assert len(rows) == 11
    assert [e.event_type for e in rows[:10]] == ["http.client_error"] * 10
    summary = rows[10]
    assert summary.event_type == SUPPRESSED
    assert summary.details["bucket"] == "anon4xx:127.0.0.1"
    assert summary.details["per_minute"] == 10
    Client(REMOTE_ADDR="192.0.2.50").get("/no-such-page/")
    assert AuditEvent.objects.count() == before + 12


def test_a_429_flood_is_audited_bounded(settings):
    """Refusals are audited as http.ratelimit.hit, bounded per subject, and
    never as a second generic request event."""
    settings.AUDIT_FLOOD_PER_MINUTE = 5
    _rates(settings, page="1/hour")
    _fresh_minute()
    before = AuditEvent.objects.count()
    client = Client()
    client.get("/status/")
    for _ in range(60):
        assert client.get("/status/").status_code == 429
    types = list(
        AuditEvent.objects.order_by("pk")[before:].values_list("event_type", flat=True)
    )
    assert types == [limits.RATE_LIMITED_EVENT] * 5 + [SUPPRESSED]
    hit = AuditEvent.objects.filter(event_type=limits.RATE_LIMITED_EVENT).last()
    assert hit.details == {"scope": "page", "retry_after": hit.details["retry_after"]}
    assert hit.status_code == 429
    assert hit.source_ip == "127.0.0.1"


def test_signed_in_4xx_are_still_recorded_one_by_one(settings):
    """The bound is for anonymous floods: a user's 404s all reach the trail."""
    settings.AUDIT_FLOOD_PER_MINUTE = 2
    user = UserFactory()
    client = Client()
    client.force_login(user)
    before = AuditEvent.objects.count()
    for i in range(5):
        assert client.get(f"/no-such-page-{i}/").status_code == 404
    assert AuditEvent.objects.count() == before + 5
