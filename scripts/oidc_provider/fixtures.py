"""pytest fixtures: a real OpenID Provider (npm ``oidc-provider``) on loopback.

``provider.mjs`` issues Keycloak-shaped tokens (RS256, JWKS, PKCE S256
required, client_secret_basic). Test modules import the fixtures they use::

    from scripts.oidc_provider import fixtures as op

    oidc_provider, sso = op.oidc_provider, op.sso
"""

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("provider.mjs")
CLIENT_ID = "kreo"
CLIENT_SECRET = "kreo-test-client-secret"  # noqa: S105  # nosec B105


def ensure_node_modules() -> None:
    """Install the pinned npm packages (package-lock.json) if any is missing."""
    wanted = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    if all((ROOT / "node_modules" / name).exists() for name in wanted):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("node and npm are needed for the OpenID Provider tests")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, check=True)  # noqa: S603


@dataclass
class Provider:
    """A running provider and its test-only debug routes."""

    url: str
    process: subprocess.Popen
    http: requests.Session = field(default_factory=requests.Session)

    def account(self, sub: str, **fields) -> dict:
        """Create or replace the IdP account ``sub`` (login, email, roles...)."""
        fields.setdefault("login", sub)
        response = self.http.put(f"{self.url}/__debug/accounts/{sub}", json=fields)
        response.raise_for_status()
        return fields

    def seen(self) -> dict:
        """The authorization and end-session requests the provider received."""
        return self.http.get(f"{self.url}/__debug/requests").json()

    def next_id_token(self, **fault) -> None:
        """Make the next ID token go wrong: audience=..., clockOffset=secs."""
        response = self.http.post(f"{self.url}/__debug/next-id-token", json=fault)
        response.raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_provider(*, redirect_uris, logout_uris, issuer: str = "") -> Provider:
    ensure_node_modules()
    from scripts.services import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "PATH": str(Path(shutil.which("node")).parent),
        "PORT": str(port),
        "ISSUER": issuer or url,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URIS": ",".join(redirect_uris),
        "POST_LOGOUT_URIS": ",".join(logout_uris),
    }
    process = subprocess.Popen(  # noqa: S603
        [shutil.which("node"), str(SCRIPT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("listening"):
        process.kill()
        raise RuntimeError(f"OpenID Provider did not start: {line!r}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/.well-known/openid-configuration", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    return Provider(url=url, process=process)


def _uris(live_server) -> tuple[list, list]:
    return [f"{live_server.url}/oidc/callback/"], [f"{live_server.url}/accounts/login/"]


@pytest.fixture(scope="session")
def oidc_provider(live_server):
    """The test realm's OpenID Provider, for the whole session."""
    redirect, logout = _uris(live_server)
    provider = start_provider(redirect_uris=redirect, logout_uris=logout)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def oidc_impostor(live_server, oidc_provider):
    """A second provider claiming the first one's issuer, with its own keys
    (same key id): what a hijacked or spoofed token endpoint would return."""
    redirect, logout = _uris(live_server)
    provider = start_provider(
        redirect_uris=redirect, logout_uris=logout, issuer=oidc_provider.url
    )
    yield provider
    provider.stop()


def point_at(settings, provider: Provider, *, issuer: str = "") -> None:
    base = f"{provider.url}/protocol/openid-connect"
    settings.KREO_OIDC_ENABLED = True
    settings.KREO_OIDC_ISSUER = issuer or provider.url
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{base}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{base}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{base}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{base}/certs"
    settings.OIDC_OP_LOGOUT_ENDPOINT = f"{base}/logout"
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET


@pytest.fixture
def sso(settings, oidc_provider, transactional_db):
    """SSO switched on and pointed at the test provider."""
    point_at(settings, oidc_provider)
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 300
    return oidc_provider


def follow_to_callback(session: requests.Session, url: str, callback_prefix: str):
    """Follow redirects until one points at our callback; return that URL,
    or the last response if the chain ends elsewhere (a page to fill in)."""
    for _ in range(20):
        if url.startswith(callback_prefix):
            return url
        response = session.get(url, allow_redirects=False)
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        url = urljoin(url, response.headers["Location"])
    raise AssertionError("too many redirects")


def idp_login(session, live_server, login: str, *, start: str = "/oidc/authenticate/"):
    """Start SSO at ``start``, sign in at the IdP as ``login``; return the
    callback URL the IdP sends the browser to (not yet followed)."""
    callback = f"{live_server.url}/oidc/callback/"
    page = follow_to_callback(session, f"{live_server.url}{start}", callback)
    if isinstance(page, str):
        return page  # the IdP session was still there: no form
    if page.status_code != 200:
        raise AssertionError(page.text)
    action = page.text.split('action="', 1)[1].split('"', 1)[0]
    response = session.post(
        urljoin(page.url, action), data={"login": login}, allow_redirects=False
    )
    if response.status_code not in (302, 303):
        raise AssertionError(response.text)
    result = follow_to_callback(
        session, urljoin(page.url, response.headers["Location"]), callback
    )
    if not isinstance(result, str):
        raise AssertionError(result.text)
    return result


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def as_json(response) -> dict:
    return json.loads(response.text)
