import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_authentication(client):
    """A load balancer gets 200 "ok" with no session and no detail."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Cache-Control"].startswith("max-age=0")


def test_pages_carry_security_headers(client):
    """Every page forbids framing and sniffing and sets a strict CSP."""
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp


def test_unknown_page_is_a_friendly_404(client):
    """A missing page renders the site's 404, not a bare error."""
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"There is nothing here" in response.content


def test_unknown_api_path_answers_json_404(client):
    response = client.get("/api/nothing/")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "There is nothing here, or you do not have access to it."
    }
