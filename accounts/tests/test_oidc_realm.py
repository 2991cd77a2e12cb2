"""The Keycloak realm export matches what the app expects of its provider."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
REALM = json.loads((ROOT / "deploy" / "keycloak" / "kreo-realm.json").read_text())


def _client() -> dict:
    return next(c for c in REALM["clients"] if c["clientId"] == "kreo")


def test_realm_has_the_roles_the_mapping_allows():
    """Every role of the default mapping exists as a realm role."""
    names = {r["name"] for r in REALM["roles"]["realm"]}
    assert set(settings.KREO_OIDC_ROLE_GROUPS) <= names
    assert set(settings.KREO_OIDC_STAFF_ROLES) <= names


def test_client_is_confidential_code_flow_with_pkce():
    """The kreo client: secret from the environment, code flow only, PKCE
    S256, our callback and post-logout URLs, roles in the ID token."""
    client = _client()
    assert client["publicClient"] is False
    assert client["secret"] == "${KREO_OIDC_CLIENT_SECRET}"  # noqa: S105
    assert client["standardFlowEnabled"] is True
    assert client["implicitFlowEnabled"] is False
    assert client["directAccessGrantsEnabled"] is False
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    callback = reverse("oidc_authentication_callback")
    assert client["redirectUris"] == ["${KREO_PUBLIC_URL}" + callback]
    logout = client["attributes"]["post.logout.redirect.uris"]
    assert logout == "${KREO_PUBLIC_URL}" + reverse("accounts:login")
    claims = {
        m["config"].get("claim.name"): m["config"]
        for m in client["protocolMappers"]
        if "claim.name" in m["config"]
    }
    for claim in ("realm_access.roles", "resource_access.${client_id}.roles"):
        assert claims[claim]["id.token.claim"] == "true"
    assert any(
        m["protocolMapper"] == "oidc-amr-mapper" for m in client["protocolMappers"]
    )


def test_brokers_exist_for_every_login_button():
    """Google, LinkedIn and Microsoft brokers carry the aliases the buttons
    send as kc_idp_hint; their credentials are placeholders."""
    brokers = {b["alias"]: b for b in REALM["identityProviders"]}
    for key in ("google", "linkedin", "microsoft", "company"):
        assert settings.KREO_OIDC_IDP_HINTS[key] in brokers
    for alias in ("google", "linkedin-openid-connect", "microsoft"):
        assert brokers[alias]["enabled"] is True
        assert brokers[alias]["config"]["clientSecret"] == "replace-me"  # noqa: S105


def test_production_refuses_sso_without_the_client_secret():
    """With KREO_OIDC_ISSUER set, production settings need the secret."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "KREO_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="kreo.settings.production",
        KREO_OIDC_ISSUER="https://sso.example.com/realms/kreo",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import kreo.settings.production"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "KREO_OIDC_CLIENT_SECRET" in result.stderr
